#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests.
#
#   scripts/postgres.sh start DIR   initdb in DIR/data and start the server;
#                                   prints its DSN (the only line on stdout)
#   scripts/postgres.sh stop DIR    stop the server started in DIR (a no-op
#                                   when none runs); DIR itself is left for
#                                   the caller to remove
#
# start installs the Debian `postgresql` package when no initdb is found
# (apt-get update once, then install; needs root or sudo). The server:
#   - runs as an unprivileged user (PostgreSQL refuses to run as root): as
#     root, the system user dcaas-pg, created when missing; otherwise the
#     caller;
#   - listens on 127.0.0.1 only, on a free port (another is tried when the
#     chosen one was taken meanwhile), no Unix socket;
#   - trusts every connection (auth trust): for local tests only, never for
#     data that matters;
#   - keeps fsync, synchronous_commit and full_page_writes on, like
#     production.
#
# When DCAAS_PG_OWNER_PID is set, a detached watcher stops the server and
# removes DIR once that process is gone, so a test binary killed before it
# could run `stop` (a panic on -timeout, kill -9) leaves nothing behind.
#
# Logs go to DIR/postgres.log; progress and errors to stderr.
set -euo pipefail

pg_user=dcaas-pg
lock=/tmp/dcaas-postgres-install.lock

say() { echo "postgres.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# pg_bindir prints the directory holding initdb and pg_ctl: PATH first, then
# the newest Debian install under /usr/lib/postgresql.
pg_bindir() {
  local p
  if p=$(command -v initdb 2>/dev/null); then
    p=$(dirname "$(readlink -f "$p")")
    if [ -x "$p/pg_ctl" ]; then
      echo "$p"
      return 0
    fi
  fi
  for p in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -n -r); do
    if [ -x "$p/initdb" ] && [ -x "$p/pg_ctl" ]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "PostgreSQL is not installed and installing it needs root (or sudo): apt-get install postgresql"
  fi
}

install_postgres() {
  command -v apt-get >/dev/null 2>&1 ||
    die "PostgreSQL (initdb, pg_ctl) is not installed and there is no apt-get to install it"
  say "initdb not found: installing the Debian package postgresql"
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq)
  as_root "${apt[@]}" update >&2
  # As the official postgres image does: postgresql-common first, then tell
  # it not to create (and start) a "main" cluster, the tests bring their
  # own; then the server.
  as_root "${apt[@]}" install -y --no-install-recommends postgresql-common >&2
  local conf=/etc/postgresql-common/createcluster.conf
  if ! grep -q '^create_main_cluster' "$conf" 2>/dev/null; then
    echo "create_main_cluster = false" | as_root tee -a "$conf" >/dev/null
  fi
  as_root "${apt[@]}" install -y --no-install-recommends postgresql >&2
}

# run_as USER CMD... runs CMD as USER (the caller itself when not root).
run_as() {
  local user=$1
  shift
  if [ "$(id -u)" -ne 0 ]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u "$user" -- "$@"
  else
    su -s /bin/sh "$user" -c "$(printf '%q ' "$@")"
  fi
}

ensure_user() {
  id -u "$pg_user" >/dev/null 2>&1 && return 0
  say "creating the system user $pg_user"
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$pg_user" 2>/dev/null || id -u "$pg_user" >/dev/null
}

# port_free PORT succeeds when nothing accepts connections on 127.0.0.1:PORT.
port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  local dir=$1 bindir user port dsn
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)

  # Install and create the user under one lock: test binaries start
  # clusters in parallel.
  exec 9>>"$lock"
  flock 9
  if ! bindir=$(pg_bindir); then
    install_postgres
    bindir=$(pg_bindir) || die "installed postgresql, but still no initdb under /usr/lib/postgresql/*/bin"
  fi
  user=$(id -un)
  if [ "$(id -u)" -eq 0 ]; then
    ensure_user
    user=$pg_user
    chown "$pg_user:" "$dir"
  fi
  flock -u 9
  exec 9>&-

  [ -e "$dir/data/PG_VERSION" ] && die "$dir/data already holds a cluster"
  cd "$dir" # the server's user may not be able to enter the caller's cwd
  run_as "$user" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust \
    --encoding=UTF8 --no-locale --no-instructions >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  cat >>"$dir/data/postgresql.conf" <<'EOF'

# scripts/postgres.sh: a throwaway test cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 500
EOF

  local try
  for try in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 40000))
    port_free "$port" || continue
    if run_as "$user" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "-p $port" \
      -w -t 60 start >/dev/null 2>&1; then
      echo "$port" >"$dir/port"
      dsn="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
      if [ -n "${DCAAS_PG_OWNER_PID:-}" ]; then
        watch "$dir" "$bindir" "$user" "$DCAAS_PG_OWNER_PID"
      fi
      say "PostgreSQL $("$bindir/pg_ctl" --version | awk '{print $3}') running in $dir on 127.0.0.1:$port as $user"
      echo "$dsn"
      return 0
    fi
    say "start on port $port failed (try $try), retrying"
  done
  tail -n 20 "$dir/postgres.log" >&2 || true
  die "the server did not start; see $dir/postgres.log"
}

# watch starts a detached process that stops the cluster in dir, and
# removes dir, once the process pid has exited.
watch() {
  local dir=$1 bindir=$2 user=$3 pid=$4 self
  self=$(readlink -f "$0")
  setsid bash -c '
    while kill -0 "$1" 2>/dev/null; do sleep 1; done
    [ -e "$2/data/postmaster.pid" ] && "$3" stop "$2" >/dev/null 2>&1 && rm -rf "$2"
    exit 0
  ' dcaas-pg-watch "$pid" "$dir" "$self" </dev/null >/dev/null 2>&1 &
}

stop() {
  local dir=$1 bindir owner
  [ -e "$dir/data/postmaster.pid" ] || return 0
  bindir=$(pg_bindir) || die "no pg_ctl found to stop $dir"
  owner=$(stat -c %U "$dir/data")
  cd "$dir"
  # pg_ctl status exits 3 when no server runs (a stale pid file included).
  run_as "$owner" "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 || return 0
  run_as "$owner" "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 ||
    run_as "$owner" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null 2>&1 ||
    die "could not stop the server in $dir"
}

case "${1:-}" in
start) [ $# -eq 2 ] || die "usage: $0 start DIR"; start "$2" ;;
stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
*) die "usage: $0 start DIR | stop DIR" ;;
esac
