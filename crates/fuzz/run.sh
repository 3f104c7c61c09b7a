#!/usr/bin/env bash
# Fuzzes every target for SECONDS each (default 60): `make soak-fuzz FUZZ_SECONDS=N`, or
# `crates/fuzz/run.sh N`; `crates/fuzz/run.sh N TARGET...` runs only those targets.
#
# Needs the nightly toolchain. Installs cargo-fuzz (pinned) into crates/fuzz/.tools when it
# is missing, writes the seed corpus (seeds.py), builds every target once, then runs each
# with the seeds in corpus/<target>/ and the inputs it found before in .work/corpus/<target>/
# (where new ones go). A crash, a timeout (one input over 30 s) or running out of memory
# (2 GiB) fails the run: the input is left in artifacts/<target>/ and this script exits 1.
set -euo pipefail

SECONDS_PER_TARGET=${1:-60}
shift || true
HERE=$(cd "$(dirname "$0")" && pwd)
CARGO_FUZZ_VERSION=0.13.2
TOOLS=$HERE/.tools
export PATH=$TOOLS/bin:$PATH
cd "$HERE"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "run.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 2
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --root "$TOOLS" --quiet
fi

python3 seeds.py
if [ $# -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo +nightly fuzz list --fuzz-dir "$HERE")
fi

echo "building the fuzz targets (release, debug assertions, AddressSanitizer)"
cargo +nightly fuzz build --fuzz-dir "$HERE" >/dev/null 2>"$HERE/.build.log" \
    || { cat "$HERE/.build.log" >&2; exit 1; }

failed=()
for target in "${TARGETS[@]}"; do
    work=$HERE/.work/corpus/$target
    log=$HERE/.work/$target.log
    mkdir -p "$work" "$HERE/artifacts/$target"
    extra=()
    case $target in
        chat_request | sqs_message) extra=(-dict="$HERE/dict/json.dict") ;;
        template_render) extra=(-dict="$HERE/dict/jinja.dict") ;;
        # It keeps the event types it has seen (see intern()): no per-input leak scan.
        eventstream_roundtrip) extra=(-detect_leaks=0) ;;
    esac
    echo "fuzzing $target for ${SECONDS_PER_TARGET}s (log: ${log#"$HERE"/})"
    status=0
    cargo +nightly fuzz run --fuzz-dir "$HERE" "$target" "$work" "$HERE/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=30 -rss_limit_mb=2048 \
        -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "$work" -type f | wc -l)
    grep -h '^KNOWN ISSUE' "$log" | sort -u | sed 's/^/  /' || true
    if [ "$status" -eq 0 ]; then
        printf '  ok: %s execs, %s exec/s, %s inputs in its corpus\n' "${execs:-?}" "${rate:-?}" "$corpus"
    else
        failed+=("$target")
        echo "  FAILED (exit $status):"
        grep -m1 -A3 'panicked at' "$log" | grep -v '^stack backtrace' | sed 's/^/    /' || true
        grep -m1 -E '^==[0-9]+== ?ERROR' "$log" | sed 's/^/    /' || true
        artifact=$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)
        echo "    input: ${artifact:-none, see the log}"
        echo "    reproduce: cargo +nightly fuzz run --fuzz-dir crates/fuzz $target ${artifact:-}"
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found problems in: ${failed[*]} (inputs in crates/fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzzing: no crash (${#TARGETS[@]} targets, ${SECONDS_PER_TARGET}s each)"
