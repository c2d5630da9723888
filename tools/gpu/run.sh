#!/usr/bin/env bash
# One run on a GPU machine without Go: runs binaries built beforehand and carried in bin/, with
# the Vulkan loader and validation layer unpacked from .deb files carried in .gl/. Results go to
# $OUT (default out/); a short table is printed last.
#
# Prepare with tools/gpu/fetch.sh on a machine with Go and apt.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-out}
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
# Find a driver manifest that gives a GPU. NVIDIA's GLX-based manifest fails on a headless
# machine ("Could not get 'vkCreateInstance' via 'vk_icdGetInstanceProcAddr'"); the same driver
# through libEGL_nvidia works there, so a manifest naming it is the last candidate.
gpu_found() { bin/vkattn devices 2>&1 | grep -qiE 'nvidia|amd|radeon|intel'; }
if ! gpu_found; then
	egl=/tmp/nvidia_egl_icd.json
	printf '{"file_format_version":"1.0.1","ICD":{"library_path":"libEGL_nvidia.so.0","api_version":"1.4.312"}}\n' >"$egl"
	for icd in $(find / -xdev -name 'nvidia_icd*.json' 2>/dev/null) "$egl"; do
		export VK_DRIVER_FILES=$icd
		gpu_found && break
		unset VK_DRIVER_FILES
	done
fi
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
step "$OUT" tests timeout 200 env VKATTN_REQUIRE_DEVICE=1 sh -c 'for t in bin/*.test; do echo "== $t"; $t -test.count=1 || exit 1; done'
step "$LOGS" conformance timeout 120 bin/vkattn conformance -validation -out "$OUT/conformance-h100"
step "$OUT" run bin/vkattn run
step "$OUT" bench timeout 330 bin/vkattn bench -torch python3 -json "$OUT/bench.json" ${BENCH_ARGS:-}
echo "== run"; tail -8 "$OUT/run.log"
echo "== tests"; grep -E "^(ok|FAIL|PASS|---|==)" "$OUT/tests.log" | grep -v -- '--- PASS' | tail -15
echo "== conformance"; tail -8 "$LOGS/conformance.log"
echo "== bench"; tail -40 "$OUT/bench.log"
echo "== steps"; cat "$OUT/steps.txt"
