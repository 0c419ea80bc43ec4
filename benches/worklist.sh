#!/usr/bin/env bash
# Worklist benchmark: 10 000 studies, then `wrk` with 50 connections against the worklist page
# of a signed-in radiologist, plus single-request server times for common views.
#
#   benches/worklist.sh            (release build; installs wrk with apt-get if missing)
#   STUDIES=2000 DURATION=10 benches/worklist.sh
#   PROFILE=debug benches/worklist.sh   (the binary `cargo test` built: dependencies at opt-level 2,
#                                        Lucent at 0; not rebuilt, so its features match the tests')
#
# Prints requests/s and latency percentiles (wrk --latency), and curl's time to first byte for
# the default view, priority sort, a modality filter, a date range and a text search.
set -euo pipefail
cd "$(dirname "$0")/.."
STUDIES="${STUDIES:-10000}"
DURATION="${DURATION:-20}"
VENV="${LUCENT_VENV:-$HOME/.cache/lucent-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lucent-target}"

command -v wrk >/dev/null || { sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo; $sudo apt-get install -y -qq wrk; }
command -v curl >/dev/null || { sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo; $sudo apt-get install -y -qq curl; }
if ! "$VENV/bin/python" -c 'import pydicom' 2>/dev/null; then
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q "pydicom==3.0.2" numpy
fi
PROFILE="${PROFILE:-release}"
if [[ $PROFILE == release ]]; then cargo build --release --locked --bin lucent; else cargo test --locked --no-run -q; fi
BIN="$CARGO_TARGET_DIR/$PROFILE/lucent"

SERVER=""
WORK="$(mktemp -d)"
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
DATA="$WORK/data"
echo "generating $STUDIES studies (one small instance each)..."
"$VENV/bin/python" - "$WORK/in" "$STUDIES" <<'PY'
import os, sys, random
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
out, n = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
rnd = random.Random(7)
mods = ["CT", "MR", "DX", "CR", "US", "MG"]
descs = ["Chest PA", "CT head without contrast", "MR knee", "Abdomen", "Mammography screening", "Pelvis"]
given = ["ANNA", "BEN", "CARLA", "DAVID", "EMMA", "FELIX", "GRETA", "HUGO"]
family = ["SMITH", "MÜLLER", "GARCIA", "NGUYEN", "KOWALSKI", "ROSSI", "DUBOIS", "OKAFOR"]
for i in range(n):
    m = FileMetaDataset()
    m.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    m.MediaStorageSOPInstanceUID = generate_uid()
    m.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset(); ds.file_meta = m
    ds.SOPClassUID = m.MediaStorageSOPClassUID; ds.SOPInstanceUID = m.MediaStorageSOPInstanceUID
    ds.PatientName = f"{rnd.choice(family)}^{rnd.choice(given)}"; ds.PatientID = f"P{i % 4000:06d}"
    ds.StudyInstanceUID = generate_uid(); ds.SeriesInstanceUID = generate_uid()
    ds.StudyDate = f"2026{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}"; ds.StudyTime = "101500"
    ds.AccessionNumber = f"A{i:08d}"; ds.StudyDescription = rnd.choice(descs); ds.Modality = rnd.choice(mods)
    ds.SeriesNumber = 1; ds.InstanceNumber = 1
    ds.save_as(os.path.join(out, f"{i:06d}.dcm"), enforce_file_format=True)
PY
"$BIN" init --data-dir "$DATA" >/dev/null
"$BIN" config set storage.min_free_mb 0 --data-dir "$DATA" >/dev/null
t0=$(date +%s.%N)
"$BIN" import --data-dir "$DATA" "$WORK/in" | tail -1
echo "import: $(echo "$(date +%s.%N) - $t0" | bc) s"
printf 'worklist load 2026 test\n' | "$BIN" user add bench --role radiologist --password-stdin --data-dir "$DATA" >/dev/null
printf 'worklist load 2026 test\n' | "$BIN" user passwd bench --password-stdin --no-change-required --data-dir "$DATA" >/dev/null
PORT=$((20000 + RANDOM % 20000))
"$BIN" serve --data-dir "$DATA" --http-port "$PORT" --dicom-port $((PORT + 1)) >"$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
# Sign in like a browser: the login form's token cookie, then the form post.
JAR="$WORK/jar"
TOKEN=$(curl -s -c "$JAR" "http://127.0.0.1:$PORT/login" | sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -1)
curl -s -b "$JAR" -c "$JAR" -o /dev/null --data-urlencode "username=bench" --data-urlencode "password=worklist load 2026 test" \
  --data-urlencode "csrf=$TOKEN" "http://127.0.0.1:$PORT/login"
SESSION=$(awk '$6 == "lucent_session" {print $7}' "$JAR")
[[ -n $SESSION ]] || { echo "login failed"; exit 1; }
COOKIE="Cookie: lucent_session=$SESSION"
sleep 3 # let the search indexer catch up with the import
curl -s -H "$COOKIE" "http://127.0.0.1:$PORT/api/worklist" | head -c 120; echo
echo
echo "server time per request (curl time to first byte, median of 5):"
for path in "/" "/?sort=priority" "/?modality=CT" "/?from=2026-03-01&to=2026-03-31" "/?q=smith" "/?q=chest&sort=date" "/?page=150"; do
  times=()
  for _ in 1 2 3 4 5; do times+=("$(curl -s -o /dev/null -w '%{time_starttransfer}' -H "$COOKIE" "http://127.0.0.1:$PORT$path")"); done
  med=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
  printf '  %-34s %6.1f ms\n' "$path" "$(echo "$med * 1000" | bc -l)"
done
echo
echo "wrk -t2 -c50 -d${DURATION}s --latency, GET / with $STUDIES studies:"
wrk -t2 -c50 -d"${DURATION}s" --latency -H "$COOKIE" "http://127.0.0.1:$PORT/" | sed -n '/Latency Distribution/,$p'
