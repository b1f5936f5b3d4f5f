#!/usr/bin/env bash
# Bounded fuzzing pass: builds every cargo-fuzz target in fuzz/ with debug assertions (dhcproto
# panics under them on some malformed options, docs/design.md, *dhcproto's decoder*), replays
# fuzz/regressions/<target>/, then fuzzes each target for SECONDS_PER_TARGET seconds from its seed
# corpus fuzz/corpus/<target>/ (new inputs go to fuzz/work/<target>/, not into the committed seeds).
# Prints runs, exec/s and coverage (cov: / ft:) per target from libFuzzer's stats; exits non-zero if
# any target crashed (the reproducer is in fuzz/artifacts/<target>/).
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
# cargo-fuzz needs nightly features: on the stable toolchain this runs with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
mkdir -p fuzz/logs
if ! cargo fuzz build --debug-assertions >fuzz/logs/build.log 2>&1; then
    tail -n 40 fuzz/logs/build.log >&2
    echo "fuzz: build failed (fuzz/logs/build.log)" >&2
    exit 1
fi
failed=()
printf '%-12s %10s %8s %7s %7s %6s  %s\n' target runs exec/s cov ft secs result
for t in "${targets[@]}"; do
    mkdir -p "fuzz/work/$t" "fuzz/corpus/$t"
    log="fuzz/logs/$t.log"
    result=ok
    regressions=()
    if [ -d "fuzz/regressions/$t" ]; then
        mapfile -t regressions < <(find "fuzz/regressions/$t" -type f | sort)
    fi
    if [ ${#regressions[@]} -gt 0 ] &&
        ! cargo fuzz run --debug-assertions "$t" "${regressions[@]}" -- -runs=1 >"$log.regressions" 2>&1; then
        result="REGRESSION (see $log.regressions)"
        failed+=("$t")
    fi
    if ! cargo fuzz run --debug-assertions "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -timeout=25 -print_final_stats=1 >"$log" 2>&1; then
        result="CRASH (see $log, fuzz/artifacts/$t/)"
        failed+=("$t")
    fi
    last=$(grep -E '^#[0-9]+.*cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(sed -nE 's/.* cov: ([0-9]+) .*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+) .*/\1/p' <<<"$last")
    printf '%-12s %10s %8s %7s %7s %6s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$secs" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failures in: ${failed[*]}" >&2
    exit 1
fi
