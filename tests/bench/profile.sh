#!/bin/bash
# Where the time and memory of one container go: hull vs crun (make profile).
#
#   tests/bench/profile.sh          (or: make profile, which builds hull first)
#
# Prints, for each runtime, one create/start/delete cut into phases (under
# strace), the kernel floor (time inside the syscalls every runtime makes),
# syscall counts, untraced median wall times, the peak RSS of each command
# and the user-space instructions of start, state and delete (callgrind). See
# tests/bench/profile.py for how each figure is taken.
#
# Environment:
#   PROFILE_ITERS=20        untraced iterations per command (wall time, RSS)
#   PROFILE_RUNTIMES="hull crun"
#   PROFILE_OUT=target/profile   where the JSON results go
#   HULL, CRUN, RUNC        runtime binaries (default target/<host triple>/release/hull, PATH)
#   HULL_TEST_ROOTFS        rootfs (default target/fixtures/rootfs; built if absent)
# Must run as root; installs strace, valgrind and time (Debian) if missing. crun
# 1.8 refuses the cgroup v1/v2 hybrid layout: on such a host it runs in a
# private mount namespace with /sys/fs/cgroup/unified unmounted.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
ITERS=${PROFILE_ITERS:-20}
RUNTIMES=${PROFILE_RUNTIMES:-hull crun}
OUT=${PROFILE_OUT:-$REPO/target/profile}
ROOTFS=${HULL_TEST_ROOTFS:-$REPO/target/fixtures/rootfs}
PYTHON=${PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=python3

if [ "$(id -u)" -ne 0 ]; then
    echo "profile: must run as root" >&2
    exit 1
fi
missing=""
for tool in strace valgrind time; do
    [ -x "/usr/bin/$tool" ] || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "profile: installing$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing </dev/null
fi
if [ ! -f "$ROOTFS/.complete" ]; then
    timeout 300 "$REPO/rootfs-fixtures/build-rootfs.sh" "$ROOTFS"
fi
ROOTFS=$(readlink -f "$ROOTFS")

# bench_binary, is_hybrid, bench_wrap, bench_cleanup.
. "$REPO/tests/bench/common.sh"
state_file_for() {
    case "$1" in
        hull) echo state.json ;;
        crun) echo status ;;
        *) echo state.json ;;
    esac
}

WORK=$(mktemp -d /tmp/hull-profile.XXXXXX)
cleanup() { bench_cleanup "$WORK" prof- $RUNTIMES; }
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT" "$WORK/bundle"
rm -f "$OUT"/*.json

spec_from=$(bench_binary runc)
[ -x "$spec_from" ] || spec_from=$(bench_binary hull)
(cd "$WORK/bundle" && timeout 30 "$spec_from" spec </dev/null)
timeout 60 "$PYTHON" "$REPO/tests/bench/bench.py" prepare --rootfs "$ROOTFS" --bundle "$WORK/bundle" \
    --spec-from "$spec_from" >/dev/null

echo "profile: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
# Peak RSS depends on the hot-function list matching the build (build.rs).
"$PYTHON" "$REPO/tests/bench/hot_symbols.py" check "$REPO/link/hot-symbols.txt" || true
results=()
for rt in $RUNTIMES; do
    bin=$(bench_binary "$rt")
    [ -x "$bin" ] || { echo "profile: $rt not found, skipped" >&2; continue; }
    json="$OUT/$rt.json"
    bench_wrap "$rt" crun
    echo "profile: $rt ($bin)"
    timeout --kill-after=20 $((600 + 10 * ITERS)) "${wrap[@]}" "$PYTHON" "$REPO/tests/bench/profile.py" measure \
        --runtime "$rt" --binary "$bin" --bundle "$WORK/bundle" --state "$WORK/state-$rt" \
        --work "$WORK" --out "$json" --iters "$ITERS" --state-file "$(state_file_for "$rt")" </dev/null \
        || echo "profile: $rt: measurement failed" >&2
    results+=("$json")
done
"$PYTHON" "$REPO/tests/bench/profile.py" report --json-out "$OUT/results.json" "${results[@]}"
# The raw traces, for a closer look.
cp "$WORK"/*.strace "$OUT"/ 2>/dev/null || true
