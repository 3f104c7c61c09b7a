#!/usr/bin/env bash
# Quarry's chat path side by side with the LiteLLM proxy, same upstream (the Bedrock
# emulator), on loopback: `make bench-peer` (from the repository root).
#
# 1. Installs what it needs, pinned: bench/peer/.venv (litellm[proxy], matplotlib, from
#    bench/peer/requirements.txt) and oha in bench/peer/.tools (cargo install, skipped when
#    the pinned version is already there).
# 2. Builds the emulator and the bench binaries (release).
# 3. bench/peer/peer.py starts the emulator, Quarry's gateway-server and LiteLLM, verifies
#    both gateways reach the emulator with the same Converse call, measures (oha) and writes
#    bench/results/peer-comparison.{md,json,png}.
# 4. ./target/release/cache-hit (moto + the chat-handler router) appends its table.
#
# Cores (2): the gateway under test has core 1 to itself; the emulator and oha share core 0.
# Knobs (environment): PEER_SECONDS (per run, 4), PEER_ROUNDS (3), PEER_LATENCIES ("0,50" ms),
# PEER_SEARCH_SECONDS (per rate step, 4), CACHE_HIT_REQUESTS (1000).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
PEER=bench/peer
RESULTS=bench/results
OHA_VERSION=1.16.0
PYTHON=${PYTHON:-python3}
started=$(date +%s)

say() { printf '[bench-peer %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ "$(nproc)" -lt 2 ]; then
    echo "bench-peer needs 2 cores (gateway on one, emulator and load generator on the other)" >&2
    exit 1
fi
command -v taskset >/dev/null || { echo "taskset is missing (util-linux)" >&2; exit 1; }

# ---- 1. tools, pinned
stamp=$PEER/.venv/.installed
if [ ! -f "$stamp" ] || [ "$PEER/requirements.txt" -nt "$stamp" ]; then
    say "installing $PEER/.venv from $PEER/requirements.txt"
    "$PYTHON" -m venv "$PEER/.venv"
    "$PEER/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$PEER/requirements.txt"
    touch "$stamp"
fi
OHA=$ROOT/$PEER/.tools/bin/oha
if [ ! -x "$OHA" ] || [ "$("$OHA" --version 2>/dev/null | awk '{print $NF}')" != "$OHA_VERSION" ]; then
    say "installing oha $OHA_VERSION into $PEER/.tools (cargo install, a few minutes once)"
    cargo install oha --locked --version "$OHA_VERSION" --root "$PEER/.tools" --quiet
fi

# ---- 2. build
say "building the emulator and the bench binaries (release)"
cargo build --release --quiet -p bedrock-emulator -p quarry-bench

if [ ! -x .venv/bin/python ]; then
    echo ".venv (moto) is missing: run 'make venv' first (make bench-peer does)" >&2
    exit 1
fi

# ---- 3. gateways side by side
measure_started=$(date +%s)
"$PEER/.venv/bin/python" "$PEER/peer.py" \
    --oha "$OHA" \
    --litellm "$ROOT/$PEER/.venv/bin/litellm" \
    --seconds "${PEER_SECONDS:-4}" \
    --rounds "${PEER_ROUNDS:-3}" \
    --latencies "${PEER_LATENCIES:-0,50}" \
    --search-seconds "${PEER_SEARCH_SECONDS:-4}" \
    --results "$RESULTS" \
    --rundir "$PEER/.run"

# ---- 4. cache hit vs. GetItem (moto from the repository's .venv)
say "cache hit vs. DynamoDB GetItem (moto)"
QUARRY_PYTHON=$ROOT/.venv/bin/python ./target/release/cache-hit \
    --requests "${CACHE_HIT_REQUESTS:-1000}" \
    --json "$PEER/.run/cache-hit.json" > "$PEER/.run/cache-hit.md"
{
    echo "## Cache hit vs. DynamoDB GetItem"
    echo
    echo "\`QUARRY_PYTHON=.venv/bin/python ./target/release/cache-hit\` (run by \`make bench-peer\`; not pinned to cores)."
    echo
    sed '1,2d' "$PEER/.run/cache-hit.md"
} >> "$RESULTS/peer-comparison.md"
# Merge its figures into the JSON.
"$PEER/.venv/bin/python" - "$RESULTS/peer-comparison.json" "$PEER/.run/cache-hit.json" <<'EOF'
import json, sys
path, extra = sys.argv[1], sys.argv[2]
data = json.load(open(path))
data["cache_hit"] = json.load(open(extra))
json.dump(data, open(path, "w"), indent=2)
open(path, "a").write("\n")
EOF

now=$(date +%s)
{
    echo
    echo "Run time: $((now - started)) s for \`make bench-peer\` (of which $((now - measure_started)) s measuring; the rest installs and builds when needed)."
} >> "$RESULTS/peer-comparison.md"
say "done in $((now - started)) s: $RESULTS/peer-comparison.md, .json, .png"
