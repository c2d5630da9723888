#!/usr/bin/env bash
# Installs what vkattn's tests and tools need on Debian bookworm: a C compiler for cgo, the Vulkan
# loader, the Khronos validation layer and Mesa 25's lavapipe from bookworm-backports. Idempotent.
# The backports sources file is derived from the machine's own debian.sources, so no mirror is
# named here.
set -euo pipefail

need=(gcc libc6-dev libvulkan1 vulkan-validationlayers mesa-vulkan-drivers)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

have_all() {
	for p in "${need[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
	done
	# lavapipe must be Mesa 25 (Vulkan 1.4, sparse residency), not bookworm's 22.3.
	dpkg-query -W -f='${Version}' mesa-vulkan-drivers | grep -qE '^(2[5-9]|[3-9][0-9])\.'
}

if have_all; then
	echo "deps: Vulkan runtime already installed"
	exit 0
fi

src=/etc/apt/sources.list.d/debian.sources
bp=/etc/apt/sources.list.d/vkattn-bookworm-backports.sources
if [ ! -f "$bp" ]; then
	[ -f "$src" ] || { echo "deps: $src not found; add bookworm-backports by hand" >&2; exit 1; }
	# Keep the first stanza (the main archive) and point it at bookworm-backports.
	awk 'BEGIN{RS="";ORS="\n\n"} NR==1' "$src" |
		sed -E 's/^Suites:.*/Suites: bookworm-backports/' | $sudo tee "$bp" >/dev/null
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq -t bookworm-backports "${need[@]}" >/dev/null
dpkg-query -W -f='deps: ${Package} ${Version}\n' "${need[@]}"
