#!/usr/bin/env bash
# Runs every Lucent test: unit tests and the integration tests in tests/it (one binary),
# against real peers. Installs the Debian packages the tests need when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need, keyed by a command each provides (or, for a key starting
# with /, a file pattern it installs).
declare -A needs=(
  [storescu]=dcmtk      # DICOM peers: echoscu, storescu, dcmdump
  [cmake]=cmake         # builds the static JPEG-LS codec (charls)
  ['/usr/share/vulkan/icd.d/lvp_icd.*.json']=mesa-vulkan-drivers  # lavapipe: Vulkan on the CPU for the wgpu path
)
missing=()
for key in "${!needs[@]}"; do
  if [[ $key == /* ]]; then
    compgen -G "$key" >/dev/null || missing+=("${needs[$key]}")
  else
    command -v "$key" >/dev/null 2>&1 || missing+=("${needs[$key]}")
  fi
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
# The wgpu test must find a Vulkan adapter (lavapipe at least): a missing one fails the run.
export LUCENT_REQUIRE_WGPU=1

cargo test --locked "$@"
