# Sourced by scripts that need packages from a newer Debian suite than the machine's (bookworm).
# debian_download SUITE DEST PKG...: downloads the .deb files of PKG from SUITE into DEST with a
# private apt state (under DEST/.apt, removed afterwards), never touching the system's sources.
# The sources file is derived from the machine's /etc/apt/sources.list.d/debian.sources (its first
# stanza, with Suites changed), so no mirror is named here.
debian_download() {
	local suite=$1 dest
	dest=$(cd "$2" && pwd) || return 1
	shift 2
	local src=/etc/apt/sources.list.d/debian.sources
	[ -f "$src" ] || { echo "$src not found; cannot derive $suite sources" >&2; return 1; }
	local apt="$dest/.apt"
	rm -rf "$apt"
	mkdir -p "$apt/state/lists/partial" "$apt/cache/archives/partial" "$apt/sources"
	awk 'BEGIN{RS="";ORS="\n\n"} NR==1' "$src" | sed -E "s/^Suites:.*/Suites: $suite/" >"$apt/sources/$suite.sources"
	local opts=(
		-o "Dir::State=$apt/state"
		-o "Dir::Cache=$apt/cache"
		-o "Dir::Etc::SourceList=/dev/null"
		-o "Dir::Etc::SourceParts=$apt/sources"
		-o "APT::Architecture=amd64"
		-o "Debug::NoLocking=1"
	)
	[ "$(id -u)" -ne 0 ] || opts+=(-o "APT::Sandbox::User=root")
	apt-get "${opts[@]}" -qq update &&
		(cd "$dest" && apt-get "${opts[@]}" -qq download "$@")
	local rc=$?
	rm -rf "$apt"
	return $rc
}
