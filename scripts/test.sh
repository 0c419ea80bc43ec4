#!/usr/bin/env bash
# Runs every Lucent test: unit tests and the integration tests in tests/it (one binary),
# against real peers. Installs the Debian packages the tests need when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need, keyed by a command each provides.
declare -A needs=(
  [storescu]=dcmtk      # DICOM peers: echoscu, storescu, dcmdump
  [cmake]=cmake         # builds the static JPEG-LS codec (charls)
)
missing=()
for cmd in "${!needs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${needs[$cmd]}")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# dcmtk tools stall ~50 ms per message on Nagle's algorithm unless told otherwise.
export TCP_NODELAY=1

cargo test --locked "$@"
