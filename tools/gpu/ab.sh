#!/usr/bin/env bash
# Compares builds of vkattn on a GPU machine: runs one vkattn command ($AB_ARGS, e.g.
# "decode-bench -stats -tiers coopmat -kv f16,int8 -lk 32768") with every build carried as
# bin/vkattn-* (build each here with `go build -o bin/vkattn-NAME ./tools/vkattn` from its
# source; run.sh needs bin/vkattn too, to find the GPU), in turn and then once more in reverse order, so that drift between the first and the
# last runs shows; $AB_ENVS, if set, is a list of VAR=value words, each run with every build
# too. Call it from tools/gpu/run.sh (STEPS=ab), which sets up the Vulkan loader; PACK=1 brings
# its many outputs back as one archive. Writes each run's output under $OUT/ab/ and prints the
# table rows and the driver's register and local memory statistics of each (NVIDIA's local
# memory statistic reads 2^36 plus the bytes).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out}
mkdir -p "$OUT/ab"
builds=$(ls bin/vkattn-* 2>/dev/null)
[ -n "$builds" ] || { echo "ab: no bin/vkattn-* builds"; exit 1; }
envs=${AB_ENVS:-"AB=default"}
n=0
for pass in forward reverse; do
	list=$builds
	[ $pass = reverse ] && list=$(echo "$builds" | tac)
	for b in $list; do
		for e in $envs; do
			n=$((n + 1))
			name="$n-$(basename "$b")-${e//[^A-Za-z0-9_]/_}"
			env "$e" timeout "${AB_TIMEOUT:-120}" "$b" $AB_ARGS >"$OUT/ab/$name.txt" 2>&1
			echo "== $name (rc $?)"
			grep -E '^ +(f16|bf16|f32) ' "$OUT/ab/$name.txt"
			grep -oE 'Register Count=[0-9]+|Local Memory Size=[0-9]+' "$OUT/ab/$name.txt" | sort | uniq -c | tr '\n' ' '
			echo
		done
	done
done
