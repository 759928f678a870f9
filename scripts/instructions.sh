#!/usr/bin/env bash
# Instructions per iteration of one decision-path stage, from callgrind: repeatable where
# wall-clock figures on a shared machine are not. Only the measured loop of
# examples/bench_inputs.rs is counted (policy loading and fixtures are not).
#
# usage: scripts/instructions.sh STAGE BODY [POLICIES] [N]
#   STAGE: value | parse | decide | parse-decide | review | answer  (examples/bench_inputs.rs);
#          decide-first, parse-decide-first, review-first, answer-first: with the decision
#          cache off (a request seen for the first time), the others answer repeats from it
#   BODY:  a body name from benches/support/bodies.rs, e.g. app_sync_prod_denied
# env: BENCH_INPUTS=path to a built bench_inputs example (default: build it in release);
#      CALLGRIND_OUT=file to keep the profile in (for callgrind_annotate)
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$1 body=$2 policies=${3:-0} n=${4:-200}
if [[ -z "${BENCH_INPUTS:-}" ]]; then
  cargo build --release --example bench_inputs -q
  BENCH_INPUTS=target/release/examples/bench_inputs
fi
out=${CALLGRIND_OUT:-$(mktemp)}
total=$(valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='*measured_loop*' \
  "$BENCH_INPUTS" run "$stage" "$body" "$n" "$policies" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
[[ -n "${CALLGRIND_OUT:-}" ]] || rm -f "$out"
echo "$stage $body policies=$policies: $((total / n)) instructions/iteration"
