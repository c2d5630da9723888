#!/usr/bin/env bash
# Prepares a run on a GPU machine that has no Go and no package registry: builds the command
# and the test binaries into bin/, and downloads into .gl/ the Vulkan loader (this machine's
# suite) and forky's Khronos validation layer, which knows the cooperative-matrix and bfloat16
# structures (it needs glibc 2.38 and GCC 14's libstdc++ on the GPU machine). tools/gpu/run.sh
# runs them.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p bin .gl
go build -o bin/vkattn ./tools/vkattn
for p in attention memory vk attention/conformance; do
	go test -c -o "bin/$(basename "$p").test" "./$p"
done
rm -f .gl/*.deb
(cd .gl && apt-get -qq download libvulkan1)
. tools/setup/debian.sh
debian_download forky .gl vulkan-validationlayers
ls bin .gl
