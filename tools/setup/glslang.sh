#!/usr/bin/env bash
# Installs glslang 15 and spirv-val into .toolchain/ without touching the system: Debian
# trixie's glslang-tools and spirv-tools, with the trixie C and C++ runtimes they need, are
# downloaded with a private apt state, unpacked into .toolchain/prefix and run through that
# prefix's own dynamic loader by small wrappers in .toolchain/bin. Idempotent.
#
# The trixie sources file is derived from the machine's /etc/apt/sources.list.d/debian.sources
# (first stanza, Suites changed), so no mirror is named here.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD/.toolchain"
prefix="$root/prefix"
bin="$root/bin"
pkgs=(glslang-tools spirv-tools libc6 libstdc++6 libgcc-s1)

if [ -x "$bin/glslangValidator" ] && [ -x "$bin/spirv-val" ] &&
	"$bin/glslangValidator" --version >/dev/null 2>&1 && "$bin/spirv-val" --version >/dev/null 2>&1; then
	echo "toolchain: $("$bin/glslangValidator" --version | head -1 | tr -s ' ')"
	exit 0
fi

src=/etc/apt/sources.list.d/debian.sources
[ -f "$src" ] || { echo "toolchain: $src not found; cannot derive trixie sources" >&2; exit 1; }

apt="$root/apt"
rm -rf "$apt" "$prefix"
mkdir -p "$apt/state/lists/partial" "$apt/cache/archives/partial" "$apt/sources" "$apt/debs" "$prefix" "$bin"
awk 'BEGIN{RS="";ORS="\n\n"} NR==1' "$src" | sed -E 's/^Suites:.*/Suites: trixie/' >"$apt/sources/trixie.sources"

opts=(
	-o "Dir::State=$apt/state"
	-o "Dir::Cache=$apt/cache"
	-o "Dir::Etc::SourceList=/dev/null"
	-o "Dir::Etc::SourceParts=$apt/sources"
	-o "APT::Architecture=amd64"
	-o "Debug::NoLocking=1"
	-o "APT::Sandbox::User=root"
)
echo "toolchain: fetching trixie ${pkgs[*]}"
apt-get "${opts[@]}" -qq update
(cd "$apt/debs" && apt-get "${opts[@]}" -qq download "${pkgs[@]}")
for deb in "$apt/debs"/*.deb; do
	dpkg-deb -x "$deb" "$prefix"
done

ld="$prefix/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
[ -e "$ld" ] || ld="$prefix/lib64/ld-linux-x86-64.so.2"
libs="$prefix/usr/lib/x86_64-linux-gnu:$prefix/lib/x86_64-linux-gnu"
wrap() { # wrap NAME TARGET
	printf '#!/bin/sh\nexec "%s" --library-path "%s" "%s" "$@"\n' "$ld" "$libs" "$2" >"$bin/$1"
	chmod +x "$bin/$1"
}
wrap glslangValidator "$prefix/usr/bin/glslang"
wrap spirv-val "$prefix/usr/bin/spirv-val"
rm -rf "$apt"
echo "toolchain: $("$bin/glslangValidator" --version | head -1 | tr -s ' ')"
