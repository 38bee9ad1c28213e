#!/bin/bash
# Regenerate link/hot-symbols.txt: the functions hull's hot processes run,
# which build.rs asks the linker to place together at the start of .text.
#
#   tests/bench/hot_symbols.sh        (or: make hot-symbols)
#
# Why: the kernel maps a binary's pages 64 KiB at a time around each page
# fault (fault-around), so how much of hull's 11 MiB of code a `hull state`
# or a container's monitor keeps resident depends less on how much code it
# runs than on how far apart that code lies. Measured on the release build
# (peak RSS): state 5.3 -> 4.2 MiB, create 7.4 -> 5.2 MiB, and a monitor's
# Pss 1.07 -> 0.82-0.90 MiB, once the functions they run are contiguous.
#
# How the list is made, exactly rather than by sampling:
# 1. an unstripped release binary with the same symbols as the stripped one
#    (cargo rustc ... -C strip=none: the symbol names do not change);
# 2. each command is run from a copy of it on a loop-mounted ext4 whose
#    device has readahead 0, with the copy's page cache dropped first, so
#    every page of it that the command touches is read alone and nothing
#    else is: mincore(2) on the file then lists exactly the pages touched
#    (create, run, start, state, exec, kill, delete, a monitor's set-up and
#    its idle loop, a sandbox holder's set-up and its idle loop);
# 3. tests/bench/hot_symbols.py maps the touched .text pages to the
#    functions on them and orders them: the monitor's and holder's idle
#    loops first, then grouped by which commands use them, the functions
#    of run first, within them create's, and so on (hot_symbols.py);
#    and the touched .rodata pages, through the link map, to the constants
#    on them, in the same order, as link/hot-rodata.ld (a linker script:
#    rustc's constants have no symbols an ordering file could name).
# A stale list only costs memory (the linker skips names it does not know),
# never correctness; regenerate it after large changes, and whenever
# Cargo.lock or the compiler changes: the names' hashes follow hull's
# dependency graph, so the list records the Cargo.lock and rustc it was
# made for and the build warns when they differ (build.rs; `make profile`
# prints the same check, `tests/bench/hot_symbols.py check` alone).
#
# Environment: HULL_TEST_ROOTFS (default target/fixtures/rootfs),
# HOT_WORK (default target/hot-symbols). Must run as root.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
. "$REPO/tests/bench/common.sh"
ROOTFS=$(readlink -f "${HULL_TEST_ROOTFS:-$REPO/target/fixtures/rootfs}")
WORK=$(realpath -m "${HOT_WORK:-$REPO/target/hot-symbols}")
PYTHON=${PYTHON:-/usr/bin/python3}
HOT_PY=$REPO/tests/bench/hot_symbols.py

if [ "$(id -u)" -ne 0 ]; then
    echo "hot-symbols: must run as root" >&2
    exit 1
fi
[ -d "$ROOTFS/bin" ] || { echo "hot-symbols: no rootfs at $ROOTFS (make fixtures)" >&2; exit 1; }

if [ -z "${HOT_IN_NS:-}" ]; then
    # A private mount namespace: the loop mount goes away with it.
    mkdir -p "$WORK"
    cargo rustc --release --bin hull -- -C strip=none -C link-arg=-Wl,-Map="$WORK/hull.map"
    cp "$(release_dir)/hull" "$WORK/hull-unstripped"
    # The next `cargo build --release` builds the stripped binary again.
    HOT_IN_NS=1 exec unshare -m "$0" "$@"
fi

mnt=$WORK/mnt
img=$WORK/ra0.img
state=$WORK/state
mkdir -p "$mnt" "$state" "$WORK/pages"
rm -f "$WORK"/pages/*
truncate -s 96M "$img"
mkfs.ext4 -q -F "$img"
mount -o loop "$img" "$mnt"
cleanup() {
    local id
    for id in $("$mnt/hull" --root "$state" list -q 2>/dev/null); do
        "$mnt/hull" --root "$state" delete --force "$id" >/dev/null 2>&1 || true
    done
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    rm -f "$img"
}
trap cleanup EXIT
blockdev --setra 0 "$(findmnt -n -o SOURCE "$mnt")"
cp "$WORK/hull-unstripped" "$mnt/hull"
sync # dirty pages cannot be dropped
H=$mnt/hull

# Bundles: /bin/true, and a sleeping one for the commands that need a
# running container.
for b in true sleep; do
    mkdir -p "$WORK/bundle-$b"
    rm -f "$WORK/bundle-$b/config.json"
    (cd "$WORK/bundle-$b" && "$H" spec)
    "$PYTHON" "$HOT_PY" bundle "$WORK/bundle-$b/config.json" "$ROOTFS" "$b"
done
"$PYTHON" "$HOT_PY" process "$WORK/bundle-true/config.json" "$WORK/process.json"

drop() { "$PYTHON" "$HOT_PY" drop "$H"; }
pages() { "$PYTHON" "$HOT_PY" pages "$H" >"$WORK/pages/$1"; }
each() {
    local name=$1
    shift
    drop
    if ! "$H" --root "$state" "$@" </dev/null >/dev/null 2>&1 && [[ $name != *-error ]]; then
        echo "hot-symbols: $name failed (its pages are still used)" >&2
    fi
    pages "$name"
}
each create create --bundle "$WORK/bundle-sleep" hot1
each state state hot1
each start start hot1
each exec exec --process "$WORK/process.json" hot1
each kill kill hot1 KILL
sleep 0.5
each delete delete hot1
each run run --bundle "$WORK/bundle-true" hot2
each lean-error state no-such-container

# A monitor and a sandbox holder: each one's set-up, then what it keeps
# mapped once it has trimmed itself and waits. Exactly: its madvise calls
# (the trim) are each held for 0.2 s after they return (strace's delay
# injection) while the page cache is dropped every 50 ms, so what it
# touches after dropping its pages is read alone and fault-around finds
# no cached neighbours to map with it (dropping the cache once afterwards
# would leave those, which it keeps mapped: that made a monitor's idle set
# 70 pages, the region placed first 1100 functions, and a monitor's code
# 364 KiB resident). trimmed NAME READY-FILE COMMAND...: the command
# reports "ok ..." on fd 3 once set up; its tracer's pid is left in $tracer.
trimmed() {
    local name=$1 ready=$2
    shift 2
    drop
    rm -f "$ready"
    strace -f -qq -o /dev/null -e trace=madvise -e inject=madvise:delay_exit=200000 \
        "$@" </dev/null >/dev/null 2>&1 3>"$ready" &
    tracer=$!
    for _ in $(seq 100); do
        grep -q '^ok' "$ready" 2>/dev/null && break
        sleep 0.1
    done
    grep -q '^ok' "$ready" 2>/dev/null || echo "hot-symbols: the $name did not report ready" >&2
    pages "$name-setup"
    for _ in $(seq 60); do
        drop
        sleep 0.05
    done
    pages "$name-idle"
}
# The tracer ends with its last tracee.
end_tracer() {
    for _ in $(seq 50); do
        kill -0 "$tracer" 2>/dev/null || break
        sleep 0.1
    done
    kill "$tracer" 2>/dev/null || true
    wait "$tracer" 2>/dev/null || true
}
trimmed monitor "$WORK/monitor-ready" "$H" --root "$state" monitor --bundle "$WORK/bundle-sleep" \
    --log-path "$WORK/hot3.log" --exit-file "$WORK/hot3.exit" --ready-fd 3 hot3
"$H" --root "$state" delete --force hot3 >/dev/null 2>&1 || true
end_tracer
trimmed holder "$WORK/holder-ready" "$H" sandbox-holder --ready-fd 3 --net --ipc --uts
holder=$(sed -n 's/^ok \([0-9]*\)$/\1/p' "$WORK/holder-ready")
[ -n "$holder" ] && kill -KILL "$holder" 2>/dev/null || true
end_tracer

"$PYTHON" "$HOT_PY" order "$WORK/hull-unstripped" "$REPO/link/hot-symbols.txt" \
    --map "$WORK/hull.map" --rodata-out "$REPO/link/hot-rodata.ld" \
    --first monitor-idle --first holder-idle "$WORK"/pages/*
