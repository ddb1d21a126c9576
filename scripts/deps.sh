#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, if they are missing:
#   gcc, libssl-dev   cgo build of the TPM 2.0 simulator the TPM enclave's
#                     tests embed (github.com/google/go-tpm-tools/simulator)
#   haproxy           the TCP load balancer the end-to-end fixture
#                     (internal/e2e) puts in front of KMS replicas
#   curl, jq, openssl README.md's walkthrough (scripts/walkthrough.sh) and
#                     the import/export examples
#   chromium          the headless browser the web console's test drives
#                     (internal/console, through chromedp)
# Idempotent and silent when everything is installed; otherwise it runs
# apt-get update once and installs only what is missing (as root, or
# through sudo when available).
set -euo pipefail

packages=(gcc libssl-dev openssl haproxy curl jq chromium)

missing=()
for p in "${packages[@]}"; do
  # dpkg -s also lists removed-but-configured packages; require "installed".
  if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps.sh: missing ${missing[*]}, and there is no apt-get to install them" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "deps.sh: missing ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
fi

echo "deps.sh: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
