#!/usr/bin/env bash
# Fetch Debian 13's skopeo (1.18, sigstore enabled) and cosign (2.5) for the signing tests, into
# a cache directory, without installing anything system-wide: `apt-get download` with a private
# apt configuration pointing at trixie, `dpkg-deb -x`, and wrappers that run the binaries under
# Debian 13's own loader (Debian 12's glibc is too old for them; Debian 12's skopeo has
# sigstore patched out). On Debian 13 itself the wrappers still work the same way.
#
# Usage: tests/tools/debian13-sigstore.sh [DIR]   (default: .cache/debian13)
# Prints nothing and does nothing when DIR already holds working tools.
set -euo pipefail
dir=$(realpath -m "${1:-$(dirname "$0")/../../.cache/debian13}")
if "$dir/bin/skopeo" --version >/dev/null 2>&1 && "$dir/bin/cosign" version >/dev/null 2>&1; then
    exit 0
fi
arch=$(dpkg --print-architecture)
case "$arch" in
    amd64) loader=ld-linux-x86-64.so.2; triplet=x86_64-linux-gnu ;;
    arm64) loader=ld-linux-aarch64.so.1; triplet=aarch64-linux-gnu ;;
    *) echo "debian13-sigstore: unsupported architecture $arch" >&2; exit 1 ;;
esac
keyring=/usr/share/keyrings/debian-archive-trixie-stable.gpg
[ -r "$keyring" ] || keyring=/usr/share/keyrings/debian-archive-keyring.gpg
mirror=${DEBIAN13_MIRROR:-http://deb.debian.org/debian}

work=$(mktemp -d "${dir%/*}/.debian13.XXXXXX" 2>/dev/null || { mkdir -p "${dir%/*}"; mktemp -d "${dir%/*}/.debian13.XXXXXX"; })
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/debs" "$work/root/bin" \
    "$work/apt/etc/preferences.d" "$work/apt/etc/apt.conf.d"
echo "deb [signed-by=$keyring] $mirror trixie main" > "$work/apt/sources.list"
touch "$work/apt/status"
cat > "$work/apt/apt.conf" <<CONF
Dir::State "$work/apt";
Dir::State::Lists "$work/apt/lists";
Dir::State::status "$work/apt/status";
Dir::Cache "$work/apt/cache";
Dir::Etc::SourceList "$work/apt/sources.list";
Dir::Etc::SourceParts "/nonexistent";
Dir::Etc::Preferences "/nonexistent";
Dir::Etc::PreferencesParts "$work/apt/etc/preferences.d";
Dir::Etc::Parts "$work/apt/etc/apt.conf.d";
APT::Architecture "$arch";
APT::Sandbox::User "root";
CONF
export APT_CONFIG="$work/apt/apt.conf"
apt-get -qq update
packages="skopeo cosign libc6 libgpgme11t64 libassuan9 libgpg-error0 libsqlite3-0"
(cd "$work/debs" && apt-get -qq download $packages)
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
root=$dir/root
for tool in skopeo cosign; do
    cat > "$work/root/bin/$tool" <<WRAP
#!/bin/sh
exec "$root/usr/lib/$triplet/$loader" --library-path "$root/usr/lib/$triplet" "$root/usr/bin/$tool" "\$@"
WRAP
    chmod +x "$work/root/bin/$tool"
done
rm -rf "$dir"
mkdir -p "$dir"
mv "$work/root" "$root"
mkdir -p "$dir/bin"
for tool in skopeo cosign; do
    sed "s|$work/root|$root|g" "$root/bin/$tool" > "$dir/bin/$tool"
    chmod +x "$dir/bin/$tool"
done
"$dir/bin/skopeo" --version
"$dir/bin/cosign" version 2>&1 | grep -i gitversion || true
