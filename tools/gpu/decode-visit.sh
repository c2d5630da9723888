#!/usr/bin/env bash
# One GPU visit for the decode kernels, in under 600 s, most important first: the quantized,
# tensor-core (imma) and merge-last decode tests; the subgroup tier's fp16 and INT8 decode with
# bin/vkattn-base against bin/vkattn-new, the latter with the merge dispatch and with the merge
# in the decode kernel (VKATTN_DECODE_MERGE_LAST), in turn and then in reverse; INT8 and INT4
# decode with the tensor-core kernels on and off; fp16 beside PyTorch. Prepare here with Go:
#   git worktree add /tmp/base REV && (cd /tmp/base && go build -o "$PWD/bin/vkattn-base" ./tools/vkattn)
#   go build -o bin/vkattn-new ./tools/vkattn && cp bin/vkattn-new bin/vkattn
#   go test -c -o bin/attention.test ./attention
# and .gl as GPU.md says; carry bin and .gl. Results under $OUT; the summary is printed last.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out}; mkdir -p "$OUT"
. tools/gpu/setup.sh
S=$OUT/summary.txt
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader; bin/vkattn devices 2>&1 | head -3; } >"$S"
left() { [ $SECONDS -lt "$1" ]; }
(cd attention && VKATTN_REQUIRE_DEVICE=1 timeout 170 ../bin/attention.test -test.count=1 -test.v \
	-test.run 'TestDecodeQuantized$|TestDecodeQuantizedAccuracy|IMMA|NonFinite|MergeLast|TestDecodeCache$') >"$OUT/tests.log" 2>&1
echo "tests rc=$?" >>"$S"
grep -E "^(--- FAIL|FAIL|ok|PASS)|Error Trace|Error:|imma.*cosine|rc=" "$OUT/tests.log" | head -30 >>"$S"
grep -cE "^\s*--- PASS" "$OUT/tests.log" >>"$S"
if left 230; then
	(cd attention && VKATTN_DECODE_IMMA=1 VKATTN_REQUIRE_DEVICE=1 timeout 50 ../bin/attention.test -test.count=1 -test.run 'TestDecodeQuantizedCache$') >"$OUT/tests-cache-imma.log" 2>&1
	echo "quantized cache with imma rc=$? $(tail -1 "$OUT/tests-cache-imma.log")" >>"$S"
fi
AB="decode-bench -tiers subgroup -kv f16,int8 -lk 4096,32768,131072"
for pass in 1 2; do
	runs="base:0 new:0 new:1"; [ $pass = 2 ] && runs="new:1 new:0 base:0"
	for r in $runs; do
		left 420 || break
		b=${r%:*} m=${r#*:}
		VKATTN_DECODE_MERGE_LAST=$m timeout 45 bin/vkattn-$b $AB -stats >"$OUT/ab-$pass-$b-ml$m.txt" 2>&1
		echo "== ab $pass $b merge_last=$m rc=$?" >>"$S"
		grep -E "^ +(f16|bf16|f32) " "$OUT/ab-$pass-$b-ml$m.txt" | awk '{print $2, $8, $11, $12, $13, $15}' >>"$S"
	done
done
for im in 1 0; do
	left 490 || break
	VKATTN_DECODE_IMMA=$im timeout 45 bin/vkattn decode-bench -stats -kv f16,int8,int4 -lk 4096,32768,131072 >"$OUT/imma$im.txt" 2>&1
	echo "== imma=$im rc=$?" >>"$S"
	grep -E "^ +(f16|bf16|f32) " "$OUT/imma$im.txt" | awk '{print $2, $8, $10, $11, $12, $13, $14, $15}' >>"$S"
	grep -oE "decode_int[48]_imma|Register Count=[0-9]+|Local Memory Size=[0-9]+" "$OUT/imma$im.txt" | sort | uniq -c | tr '\n' ' ' >>"$S"; echo >>"$S"
done
if left 500; then
	timeout 90 bin/vkattn decode-bench -torch python3 -tiers subgroup -kv f16 >"$OUT/torch.txt" 2>&1
	echo "== torch rc=$?" >>"$S"; tail -8 "$OUT/torch.txt" >>"$S"
fi
cat "$S"
