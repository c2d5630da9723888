#!/usr/bin/env bash
# One run on a GPU machine without Go: runs binaries built beforehand and carried in bin/, with
# the Vulkan loader and validation layer unpacked from .deb files carried in .gl/. Results go to
# $OUT (default out/); a short table is printed last.
#
# Prepare with tools/gpu/fetch.sh on a machine with Go and apt. STEPS picks what runs (default:
# tests conformance run bench; also tune, tools/gpu/tune.sh; ab, tools/gpu/ab.sh; decode, vkattn
# decode-bench; cache, vkattn cache-bench); TEST_ARGS (one word, e.g. -test.run=NaN), CONF_ARGS, BENCH_ARGS,
# DECODE_ARGS and CACHE_ARGS pass options to the test binaries, the conformance suite and the
# benchmarks.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out}
mkdir -p "$OUT"
. tools/gpu/setup.sh
LOGS=/tmp/vkattn-logs # logs kept outside $OUT
mkdir -p "$LOGS"
step() { # step DIR NAME CMD...: runs CMD, output to DIR/NAME.log, records the status
	local dir=$1 name=$2; shift 2
	local t0=$SECONDS
	"$@" >"$dir/$name.log" 2>&1
	local rc=$?
	printf '%-14s rc=%-3d %4ds  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$*" >>"$OUT/steps.txt"
}
: >"$OUT/steps.txt"
{
	date -u
	nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1
	echo "driver manifest: ${VK_DRIVER_FILES:-default}"
	bin/vkattn devices 2>&1
	echo
} >>"$OUT/steps.txt"
STEPS=${STEPS:-tests conformance run bench}
has() { [[ " $STEPS " == *" $1 "* ]]; }
has tests && step "$OUT" tests timeout 200 env VKATTN_REQUIRE_DEVICE=1 sh -c 'for t in bin/*.test; do echo "== $t"; $t -test.count=1 $0 || exit 1; done' "${TEST_ARGS:-}"
has run && step "$OUT" run bin/vkattn run -stats
has tune && step "$OUT" tune timeout 420 env OUT="$OUT" tools/gpu/tune.sh
has ab && step "$OUT" ab timeout "${AB_STEP_TIMEOUT:-540}" env OUT="$OUT" tools/gpu/ab.sh
has bench && step "$OUT" bench timeout 330 bin/vkattn bench -torch python3 -json "$OUT/bench.json" ${BENCH_ARGS:-}
has decode && step "$OUT" decode timeout "${DECODE_TIMEOUT:-240}" bin/vkattn decode-bench -torch python3 -json "$OUT/decode.json" ${DECODE_ARGS:-}
has cache && step "$OUT" cache timeout "${CACHE_TIMEOUT:-240}" bin/vkattn cache-bench -json "$OUT/cache.json" ${CACHE_ARGS:-}
has conformance && step "$LOGS" conformance timeout "${CONF_TIMEOUT:-120}" bin/vkattn conformance -validation -out "$OUT/conformance-h100" ${CONF_ARGS:-}
has run && { echo "== run"; tail -12 "$OUT/run.log"; }
has tests && { echo "== tests"; grep -E "^(ok|FAIL|PASS|---|==)" "$OUT/tests.log" | grep -v -- '--- PASS' | tail -15; }
has conformance && { echo "== conformance"; grep -E "FAIL|fail" "$LOGS/conformance.log" | head -20; tail -8 "$LOGS/conformance.log"; }
has tune && { echo "== tune"; cat "$OUT/tune.log"; for f in "$OUT"/bench-d*.log; do tail -16 "$f"; done; }
has ab && { echo "== ab"; cat "$OUT/ab.log"; }
has bench && { echo "== bench"; tail -40 "$OUT/bench.log"; }
has decode && { echo "== decode"; tail -30 "$OUT/decode.log"; }
has cache && { echo "== cache"; tail -16 "$OUT/cache.log"; }
echo "== steps"; cat "$OUT/steps.txt"
# PACK=1: everything under $OUT in one archive, as some transports bring back only a few files.
if [ -n "${PACK:-}" ]; then
	tar czf /tmp/results.tgz -C "$OUT" . && find "$OUT" -mindepth 1 -delete && mv /tmp/results.tgz "$OUT/"
fi
