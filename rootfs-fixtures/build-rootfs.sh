#!/bin/bash
# Build a minimal busybox root filesystem for hull's tests, demo and benchmarks.
#
#   rootfs-fixtures/build-rootfs.sh OUT
#
# Uses the static busybox of Debian's busybox-static package (/bin/busybox).
# Idempotent: does nothing when OUT/.complete exists and is newer than this
# script. Atomic: the tree is built in OUT.tmp.$$ and renamed into place, so
# OUT is either absent, the previous complete tree, or the new complete tree.
# Override the busybox binary with BUSYBOX=/path/to/static/busybox.
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 OUT" >&2
    exit 2
fi

OUT=${1%/}
SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
BUSYBOX=${BUSYBOX:-/bin/busybox}

if [ -f "$OUT/.complete" ] && [ "$OUT/.complete" -nt "$SCRIPT" ]; then
    echo "rootfs $OUT is up to date"
    exit 0
fi

if [ ! -x "$BUSYBOX" ]; then
    echo "error: $BUSYBOX not found; install busybox-static (make setup)" >&2
    exit 1
fi
if ! "$BUSYBOX" true; then
    echo "error: $BUSYBOX does not run" >&2
    exit 1
fi

mkdir -p "$(dirname "$OUT")"
TMP="$OUT.tmp.$$"
OLD="$OUT.old.$$"
cleanup() { rm -rf "$TMP" "$OLD"; }
trap cleanup EXIT
rm -rf "$TMP"
mkdir "$TMP"

# Directory skeleton.
for d in bin sbin usr/bin usr/sbin etc proc sys dev tmp root home var var/tmp run mnt; do
    mkdir -p "$TMP/$d"
done
chmod 0755 "$TMP"
chmod 1777 "$TMP/tmp" "$TMP/var/tmp"
chmod 0700 "$TMP/root"

# busybox and one symlink per applet. `busybox --list-full` prints paths like
# "bin/ls", "usr/sbin/arping", "linuxrc"; links are relative, so they resolve
# both inside the container and when inspected from the host.
cp "$BUSYBOX" "$TMP/bin/busybox"
chmod 0755 "$TMP/bin/busybox"
n=0
while IFS= read -r applet; do
    case "$applet" in
        ""|bin/busybox|linuxrc) continue ;;
        */*) ;;
        *) continue ;;   # top-level entries (linuxrc) are not wanted
    esac
    dir=${applet%/*}
    mkdir -p "$TMP/$dir"
    # "usr/sbin" -> "../../bin/busybox"
    up=""
    IFS=/ read -ra parts <<< "$dir"
    for _ in "${parts[@]}"; do up="../$up"; done
    ln -sfn "${up}bin/busybox" "$TMP/$applet"
    n=$((n + 1))
done < <("$BUSYBOX" --list-full)
if [ "$n" -lt 50 ]; then
    echo "error: only $n applets from $BUSYBOX --list-full" >&2
    exit 1
fi

# Users and groups.
cat > "$TMP/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001:Bob:/home/bob:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > "$TMP/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
wheel:x:10:alice
staff:x:50:
alice:x:1000:
bob:x:1001:
nogroup:x:65534:
EOF
cat > "$TMP/etc/shadow" <<'EOF'
root:*:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
alice:*:19000:0:99999:7:::
bob:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
EOF
chmod 0644 "$TMP/etc/passwd" "$TMP/etc/group"
chmod 0640 "$TMP/etc/shadow"
mkdir -p "$TMP/home/alice" "$TMP/home/bob"
chown 1000:1000 "$TMP/home/alice" 2>/dev/null || true
chown 1001:1001 "$TMP/home/bob" 2>/dev/null || true

echo "hull-fixture" > "$TMP/etc/hostname"
cat > "$TMP/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
: > "$TMP/etc/resolv.conf"

# Stamp, then swap into place.
date -u +%Y-%m-%dT%H:%M:%SZ > "$TMP/.complete"
if [ -e "$OUT" ]; then
    mv -T "$OUT" "$OLD"
fi
if ! mv -T "$TMP" "$OUT" 2>/dev/null; then
    # A concurrent build won the race; accept its result if complete.
    if [ ! -f "$OUT/.complete" ]; then
        echo "error: could not move $TMP to $OUT" >&2
        exit 1
    fi
    rm -rf "$TMP"
fi
rm -rf "$OLD"
trap - EXIT
echo "built rootfs $OUT ($n applets)"
