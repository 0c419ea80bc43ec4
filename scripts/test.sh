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
  [chromium]=chromium   # the real-browser test of the web UI
  [chromedriver]=chromium-driver  # WebDriver for it (driven from Rust with fantoccini)
)
missing=()
for key in "${!needs[@]}"; do
  if [[ $key == /* ]]; then
    compgen -G "$key" >/dev/null || missing+=("${needs[$key]}")
  else
    command -v "$key" >/dev/null 2>&1 || missing+=("${needs[$key]}")
  fi
done
# The pydicom reference venv needs python3 with venv/ensurepip (Debian: python3-venv).
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Independent pixel reference: pydicom with the pylibjpeg codecs, in a venv outside the repo.
# Created on first use; later runs only check that it imports (well under a second).
VENV="${LUCENT_VENV:-$HOME/.cache/lucent-venv}"
PY_PKGS=(numpy "pydicom==3.0.2" "pylibjpeg==2.1.0" "pylibjpeg-libjpeg==2.5.0" "pylibjpeg-openjpeg==2.6.0" "pylibjpeg-rle==2.2.0")
if ! "$VENV/bin/python" -c 'import numpy, pydicom, pylibjpeg, libjpeg, openjpeg, rle' >/dev/null 2>&1; then
  echo "creating the pydicom reference venv in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PKGS[@]}"
fi
# The pixel tests compare Lucent's decoding with pydicom's through this interpreter; they fail
# when it is set but broken, and skip (saying so) only when it is not set.
export LUCENT_PYTHON="$VENV/bin/python"

# dcmtk tools stall ~50 ms per message on Nagle's algorithm unless told otherwise.
export TCP_NODELAY=1
# The wgpu test must find a Vulkan adapter (lavapipe at least): a missing one fails the run.
export LUCENT_REQUIRE_WGPU=1

cargo test --locked "$@"
