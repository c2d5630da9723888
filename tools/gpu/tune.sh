#!/usr/bin/env bash
# Tunes the coopmat2 forward's tiles on a GPU machine and measures the best beside the coopmat
# tier and PyTorch. Runs binaries carried in bin/ (tools/gpu/fetch.sh); call it from
# tools/gpu/run.sh (STEPS=tune), which sets up the Vulkan loader. For each head dim in $DIMS:
#   1. times each TILES entry (BR,BC,WG; VKATTN_COOPMAT2_TILES) at fp16, non-causal, L=4096, one
#      batch of hidden 2048, and keeps the fastest;
#   2. runs the conformance cases of that head dim at the fastest tiles (validation on);
#   3. benchmarks coopmat and coopmat2 (fastest tiles) with PyTorch SDPA at $BENCH_L, causal and
#      not, 16k tokens per batch (bench-d<dim>.json).
# Writes under $OUT; prints the sweep and the best tiles.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out}
DIMS=${DIMS:-"64 128"}
TILES=${TILES:-"64,64,128 64,32,128 128,64,128 128,32,128 64,64,256 128,64,256 128,128,256 64,128,256"}
BENCH_L=${BENCH_L:-"1024,4096,16384"}
for d in $DIMS; do
	best= bestRate=0
	for t in $TILES; do
		r=$(VKATTN_COOPMAT2_TILES=$t bin/vkattn bench -tiers coopmat2 -d "$d" -l 4096 -tokens 4096 -causal false 2>&1 |
			grep -oE '(flash_fwd_coopmat2 [0-9.]+ ms, [0-9.]+ TFLOP/s|error: .*)' | head -1)
		printf 'sweep d=%-4s tiles=%-12s %s\n' "$d" "$t" "${r:-no result}"
		rate=$(sed -nE 's/.* ([0-9.]+) TFLOP\/s/\1/p' <<<"$r")
		if [ -n "$rate" ] && awk -v a="$rate" -v b="$bestRate" 'BEGIN{exit !(a > b)}'; then
			best=$t bestRate=$rate
		fi
	done
	echo "best d=$d tiles=$best $bestRate TFLOP/s"
	[ -n "$best" ] || continue
	VKATTN_COOPMAT2_TILES=$best timeout 90 bin/vkattn conformance -validation -tiers coopmat2 -filter "/d$d/" \
		-out "$OUT/conformance-coopmat2-d$d" >"$OUT/conformance-coopmat2-d$d.log" 2>&1
	echo "conformance d=$d tiles=$best rc=$? $(tail -1 "$OUT/conformance-coopmat2-d$d.log")"
	VKATTN_COOPMAT2_TILES=$best timeout 150 bin/vkattn bench -torch python3 -tiers coopmat,coopmat2 -d "$d" -l "$BENCH_L" \
		-json "$OUT/bench-d$d.json" >"$OUT/bench-d$d.log" 2>&1
	echo "bench d=$d rc=$?"
done
