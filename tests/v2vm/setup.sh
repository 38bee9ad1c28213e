#!/bin/bash
# Fetch what the cgroup v2 VM needs into DIR (default target/v2vm), without
# installing any of it on the host: a Debian 6.1 kernel and its modules, and
# qemu with its firmware (the qemu-system-x86 package conflicts with the
# newer qemu-utils some hosts carry, so it is unpacked, not installed; the
# shared libraries it links against are ordinary packages `make setup`
# installs). Idempotent: what is there already is kept.
#
#   tests/v2vm/setup.sh [DIR]
#
# Exits 0 with a warning when a package cannot be fetched: `make test-v2`
# then reports the VM tests as skipped, saying what is missing.
set -euo pipefail

dir=${1:-target/v2vm}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
ready="$dir/ready"

if [ -f "$ready" ] && [ -x "$dir/root/usr/bin/qemu-system-x86_64" ] && [ -f "$dir/vmlinux" ]; then
    echo "setup: cgroup v2 VM present ($(cat "$ready"))"
    exit 0
fi

warn() {
    echo "setup: warning: cgroup v2 VM: $*; \`make test-v2\` will report its tests as skipped" >&2
    exit 0
}

command -v apt-get >/dev/null || warn "no apt-get to fetch the kernel and qemu with"
command -v xz >/dev/null || warn "xz is missing (package xz-utils)"

# The kernel: whichever 6.1 ABI Debian's linux-image-amd64 stands for now,
# else the newest 6.1 kernel apt knows of.
find_kernel() {
    kernel=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-6\.1\.[0-9]*-[0-9]*-amd64\)$/\1/p' | head -1)
    [ -n "$kernel" ] || kernel=$(apt-cache pkgnames linux-image-6.1. 2>/dev/null | grep -E '^linux-image-6\.1\.[0-9]+-[0-9]+-amd64$' | sort -V | tail -1)
}
find_kernel
if [ -z "$kernel" ] && [ "$(id -u)" -eq 0 ]; then
    # A fresh machine may have no package lists yet.
    apt-get update -q </dev/null >/dev/null 2>&1 || true
    find_kernel
fi
[ -n "$kernel" ] || warn "apt knows no linux-image-6.1.*-amd64 package (apt-get update?)"

debs="$dir/debs"
mkdir -p "$debs"
pkgs=("$kernel" qemu-system-x86 qemu-system-common qemu-system-data seabios)
for p in "${pkgs[@]}"; do
    if ! compgen -G "$debs/${p}_*.deb" >/dev/null; then
        # apt's sandbox user may not write here; the download is only unpacked.
        (cd "$debs" && apt-get download -q "$p" </dev/null 2>&1 | grep -v 'Download is performed unsandboxed' >&2) || true
        compgen -G "$debs/${p}_*.deb" >/dev/null || warn "apt-get download $p failed"
    fi
done

rm -rf "$dir/root.new"
for p in "${pkgs[@]}"; do
    for d in "$debs/${p}"_*.deb; do
        dpkg -x "$d" "$dir/root.new"
    done
done
rm -rf "$dir/root"
mv "$dir/root.new" "$dir/root"

# qemu boots the uncompressed ELF kernel (its PVH entry) in half the time
# the bzImage takes: vmlinuz carries it as an xz stream after the setup code.
vmlinuz=$(ls "$dir"/root/boot/vmlinuz-* | head -1)
offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1)
[ -n "$offset" ] || warn "no xz stream in $vmlinuz"
tail -c +$((offset + 1)) "$vmlinuz" | xz -dc --single-stream >"$dir/vmlinux.new" 2>/dev/null || true
[ "$(head -c4 "$dir/vmlinux.new" | od -An -c | tr -d ' ')" = "177ELF" ] || warn "could not extract vmlinux from $vmlinuz"
mv "$dir/vmlinux.new" "$dir/vmlinux"

missing=$(ldd "$dir/root/usr/bin/qemu-system-x86_64" | sed -n 's/^\s*\(\S*\) => not found$/\1/p' | tr '\n' ' ')
[ -z "$missing" ] || warn "qemu needs libraries the host lacks: $missing(\`make setup\` as root installs them)"

echo "$kernel $(basename "$debs"/qemu-system-x86_*.deb .deb)" >"$ready"
echo "setup: cgroup v2 VM ready in $dir ($kernel)"
