#!/usr/bin/env bash
# SoftHSM2, the software PKCS#11 token the PKCS#11 seal is tested against.
#
#   softhsm.sh install    installs the Debian package softhsm2 when missing
#                         (apt-get update once; as root, or through sudo)
#   softhsm.sh module     prints the path of the PKCS#11 module
#   softhsm.sh init DIR   installs when missing, then makes DIR a private
#                         SoftHSM2 home (DIR/softhsm2.conf, DIR/tokens/,
#                         DIR/user.pin) holding one freshly initialized
#                         token, and prints the environment to use it:
#
#     export SOFTHSM2_CONF=DIR/softhsm2.conf
#     export DCAAS_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so
#     export DCAAS_PKCS11_TOKEN=dcaas-test
#     export DCAAS_PKCS11_PIN_FILE=DIR/user.pin
#
# so `eval "$(scripts/softhsm.sh init /tmp/hsm)"` sets up a shell. The token
# label, user PIN and SO PIN come from SOFTHSM_LABEL (default dcaas-test),
# SOFTHSM_PIN and SOFTHSM_SO_PIN (default: random). This is a test token:
# its PIN sits in DIR/user.pin (mode 0600). init refuses a DIR that
# already holds a softhsm2.conf.
set -euo pipefail

die() { echo "softhsm.sh: $*" >&2; exit 1; }

module_path() {
  local p
  for p in /usr/lib/softhsm/libsofthsm2.so \
           /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/lib64/softhsm/libsofthsm2.so \
           /usr/local/lib/softhsm/libsofthsm2.so; do
    if [ -f "$p" ]; then echo "$p"; return 0; fi
  done
  if command -v dpkg-query >/dev/null 2>&1; then
    p=$(dpkg-query -L softhsm2 libsofthsm2 2>/dev/null | grep '/libsofthsm2\.so$' | head -n1 || true)
    if [ -n "$p" ] && [ -f "$p" ]; then echo "$p"; return 0; fi
  fi
  return 1
}

installed() { command -v softhsm2-util >/dev/null 2>&1 && module_path >/dev/null; }

install() {
  installed && return 0
  command -v apt-get >/dev/null 2>&1 || die "softhsm2 is missing and there is no apt-get to install it"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "softhsm2 is missing; run as root to install it"
    sudo=(sudo)
  fi
  # Several test binaries may ask at once: one installs, the others wait.
  exec 9>"${TMPDIR:-/tmp}/dcaas-softhsm-install.lock"
  flock 9
  installed && return 0
  echo "softhsm.sh: installing softhsm2" >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    -o DPkg::Lock::Timeout=300 --no-install-recommends softhsm2 >&2
  installed || die "softhsm2 installed, but its PKCS#11 module was not found"
}

random_pin() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }

init() {
  local dir=$1
  install
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -e "$dir/softhsm2.conf" ] && die "$dir already holds a softhsm2.conf"
  local label=${SOFTHSM_LABEL:-dcaas-test}
  local pin=${SOFTHSM_PIN:-$(random_pin)}
  local so_pin=${SOFTHSM_SO_PIN:-$(random_pin)}
  (umask 077 && mkdir -p "$dir/tokens")
  chmod 0700 "$dir" "$dir/tokens"
  cat >"$dir/softhsm2.conf" <<CONF
# SoftHSM2 home made by scripts/softhsm.sh
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
  (umask 077 && printf '%s' "$pin" >"$dir/user.pin")
  SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free \
    --label "$label" --pin "$pin" --so-pin "$so_pin" >&2
  printf 'export SOFTHSM2_CONF=%q\n' "$dir/softhsm2.conf"
  printf 'export DCAAS_PKCS11_MODULE=%q\n' "$(module_path)"
  printf 'export DCAAS_PKCS11_TOKEN=%q\n' "$label"
  printf 'export DCAAS_PKCS11_PIN_FILE=%q\n' "$dir/user.pin"
}

case "${1:-}" in
  install) install ;;
  module) install; module_path ;;
  init) [ $# -eq 2 ] || die "usage: softhsm.sh init DIR"; init "$2" ;;
  *) die "usage: softhsm.sh install | module | init DIR" ;;
esac
