#!/usr/bin/env bash
# The design benchmark's reference half on this machine, seed by seed: seed 0 of every spec and
# of the two scaled presets, then seed 1, and so on to seed 5 (README section 2: the table's own
# seeds 0 and 1 said a 3-seed reading falls short of the 0.6 asked for, so every spec gets 6). Stopped at any point (Ctrl-C, `kill PID`, a closed terminal), it keeps
# every finished row; run it again to go on, each step training only the rows it does not find:
#
#   nohup bash experiments/cot_design_bench/reference.sh >> experiments/cot_design_bench/reference.log 2>&1 &
#
# Seed by seed, not spec by spec, so that a table stopped half-way still reads every spec.
set -euo pipefail
cd "$(dirname "$0")/../.."
COTSEARCH=${COTSEARCH:-.venv/bin/cotsearch}
OUT=experiments/cot_design_bench/reference
RECIPE=(--scaled-preset cotnet_tiny --scaled-preset resnet_tiny --epochs 8 --train-limit 16000 --val-size 1000 --no-proxies)

# A signal to this script reaches the sweep, which keeps its finished rows, releases the run
# directory and exits; the script waits for that and exits with its code. (Killed alone, bash
# would leave the sweep running and holding the directory.)
child=
trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT HUP

step() {
    if [ -f "$OUT/space.json" ]; then where=(--resume "$OUT"); else where=(--out "$OUT"); fi
    echo "$(date -u +%FT%TZ) cotsearch sweep spaces/cot_design.yaml $* ${RECIPE[*]} ${where[*]}"
    "$COTSEARCH" sweep spaces/cot_design.yaml "$@" "${RECIPE[@]}" "${where[@]}" &
    child=$!
    local code=0
    wait "$child" || code=$?
    if [ "$code" -gt 128 ] && kill -0 "$child" 2>/dev/null; then  # a signal came: wait for the sweep's end
        code=0
        wait "$child" || code=$?
    fi
    child=
    return "$code"
}

step --archs 96 --seeds 1
step --archs 96 --seeds 2
step --archs 96 --seeds 3
step --archs 96 --seeds 4
step --archs 96 --seeds 5
step --archs 96 --seeds 6
