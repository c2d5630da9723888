#!/usr/bin/env bash
# Installs glslang 16.6.0 and spirv-val into .toolchain/ without touching the system: Debian
# forky's glslang-tools and spirv-tools, with the forky C and C++ runtimes they need, are
# downloaded with a private apt state, unpacked into .toolchain/prefix and run through that
# prefix's own dynamic loader by small wrappers in .toolchain/bin. glslang 16 is the first with
# GL_EXT_bfloat16, which the bf16 matrix kernels use. The compiler's versions are pinned, since
# CI compares the committed SPIR-V byte for byte: when the suite stops carrying them the download
# fails, and moving the pins means regenerating the SPIR-V (make shaders). Idempotent: a
# toolchain of another glslang version is replaced.
#
# Packages come through tools/setup/debian.sh, which names no mirror.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD/.toolchain"
prefix="$root/prefix"
bin="$root/bin"
suite=forky
version=16.6.0
pkgs=(glslang-tools=16.6.0-1 spirv-tools=2026.4~rc2-1 libc6 libstdc++6 libgcc-s1)
if [ -x "$bin/glslangValidator" ] && [ -x "$bin/spirv-val" ] &&
	"$bin/glslangValidator" --version 2>/dev/null | grep -Eq "Glslang Version: ([0-9]+:)?${version//./\\.}\$" &&
	"$bin/spirv-val" --version >/dev/null 2>&1; then
	echo "toolchain: $("$bin/glslangValidator" --version | head -1 | tr -s ' ')"
	exit 0
fi

. tools/setup/debian.sh
debs="$root/debs"
rm -rf "$debs" "$prefix"
mkdir -p "$debs" "$prefix" "$bin"
echo "toolchain: fetching $suite ${pkgs[*]}"
debian_download "$suite" "$debs" "${pkgs[@]}"
for deb in "$debs"/*.deb; do
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
rm -rf "$debs"
echo "toolchain: $("$bin/glslangValidator" --version | head -1 | tr -s ' ')"
