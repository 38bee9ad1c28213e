#!/bin/bash
# Container start-up benchmark: hull vs runc vs crun, in one run.
#
#   tests/bench/bench.sh            (or: make bench, which builds hull first)
#
# Environment:
#   BENCH_ITERS=100        timed iterations per workload and runtime
#   BENCH_WARMUP=3         untimed warm-up iterations
#   BENCH_TIMEOUT=30       seconds allowed per runtime invocation / container wait
#   BENCH_BUDGET=          seconds per runtime (default 60 + 4 * BENCH_ITERS)
#   BENCH_RUNTIMES="hull runc crun"
#   BENCH_UNHYBRID=crun    runtimes run in a private mount namespace with
#                          /sys/fs/cgroup/unified unmounted (Debian's crun 1.8
#                          refuses the cgroup v1/v2 "hybrid" layout)
#   BENCH_OUT=target/bench where results.json and the per-runtime JSON go
#   HULL, RUNC, CRUN       runtime binaries (default target/<host triple>/release/hull,
#                          runc and crun from PATH)
#   HULL_TEST_ROOTFS       rootfs (default target/fixtures/rootfs; built if absent)
# Must run as root. Every step is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD

ITERS=${BENCH_ITERS:-100}
WARMUP=${BENCH_WARMUP:-3}
TIMEOUT=${BENCH_TIMEOUT:-30}
BUDGET=${BENCH_BUDGET:-$((60 + 4 * ITERS))}
RUNTIMES=${BENCH_RUNTIMES:-hull runc crun}
UNHYBRID=${BENCH_UNHYBRID:-crun}
OUT=${BENCH_OUT:-$REPO/target/bench}
ROOTFS=${HULL_TEST_ROOTFS:-$REPO/target/fixtures/rootfs}
if [ -z "${PYTHON:-}" ]; then
    if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
BENCH_PY=$REPO/tests/bench/bench.py

if [ "$(id -u)" -ne 0 ]; then
    echo "bench: must run as root" >&2
    exit 1
fi

if [ ! -f "$ROOTFS/.complete" ]; then
    timeout 300 "$REPO/rootfs-fixtures/build-rootfs.sh" "$ROOTFS"
fi
ROOTFS=$(readlink -f "$ROOTFS")

# bench_binary, is_hybrid, bench_wrap, bench_cleanup.
. "$REPO/tests/bench/common.sh"

WORK=$(mktemp -d /tmp/hull-bench.XXXXXX)
cleanup() { bench_cleanup "$WORK" hullbench- $RUNTIMES; }
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT" "$WORK/bundle"
rm -f "$OUT"/*.json "$OUT"/*.log

# Bundle: `runc spec` (or crun/hull spec if runc is missing), edited by bench.py.
SPEC_FROM=""
for rt in runc crun hull; do
    b=$(bench_binary "$rt")
    if [ -x "$b" ] && (cd "$WORK/bundle" && timeout 30 "$b" spec </dev/null >/dev/null 2>&1); then
        SPEC_FROM=$b
        break
    fi
done
if [ -z "$SPEC_FROM" ]; then
    echo "bench: no runtime could generate a spec (need runc, crun or hull)" >&2
    exit 1
fi
timeout 60 "$PYTHON" "$BENCH_PY" prepare --rootfs "$ROOTFS" --bundle "$WORK/bundle" \
    --spec-from "$SPEC_FROM"

echo "bench: $ITERS iterations (+$WARMUP warm-up), runtimes: $RUNTIMES"
echo "bench: kernel $(uname -r), cgroups: $(is_hybrid && echo 'v1 hybrid' || stat -f -c %T /sys/fs/cgroup)"

results=()
for rt in $RUNTIMES; do
    bin=$(bench_binary "$rt")
    json="$OUT/$rt.json"
    results+=("$json")
    args=(run --runtime "$rt" --binary "$bin" --bundle "$WORK/bundle"
          --state "$WORK/state-$rt" --out "$json"
          --iters "$ITERS" --warmup "$WARMUP" --timeout "$TIMEOUT" --budget "$BUDGET")
    echo "bench: $rt ($bin)"
    bench_wrap "$rt" "$UNHYBRID"
    if [ ${#wrap[@]} -gt 0 ]; then
        echo "bench:   (in a private mount namespace without /sys/fs/cgroup/unified)"
    fi
    rc=0
    timeout --kill-after=20 $((BUDGET + 60)) \
        "${wrap[@]}" "$PYTHON" "$BENCH_PY" "${args[@]}" </dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "bench: $rt: benchmark process failed (exit $rc)" >&2
    fi
done

"$PYTHON" "$BENCH_PY" report --json-out "$OUT/results.json" "${results[@]}"

# The same workloads as plain shell loops (tests/bench/shell_loop.sh): each
# runtime command a process that bash forks and execs, as containerd and
# podman start a runtime. BENCH_SHELL_ROUNDS rounds, each loop of each
# runtime BENCH_SHELL_ITERS iterations, interleaved (round by round, runtime
# after runtime), so a change in the machine's load hits all of them alike;
# bench.py also prints hull's loop over the other's of the same round.
# 11 rounds by default (about 45 s on the 2-vCPU VM): with 5, one slow
# round of the VM moved the median `run` ratio by up to 0.1.
SHELL_ITERS=${BENCH_SHELL_ITERS:-20}
SHELL_ROUNDS=${BENCH_SHELL_ROUNDS:-11}
SHELL_OUT=$OUT/shell-loops.txt
: >"$SHELL_OUT"
echo
echo "bench: plain shell loops ($SHELL_ROUNDS rounds x $SHELL_ITERS iterations per loop and runtime)"
# bash as a child subreaper (kept across exec), so it reaps the container
# inits that `create` leaves behind.
SUBREAPER=("$PYTHON" -c 'import ctypes, os, sys
if ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) != 0: sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
os.execv("/bin/bash", ["bash"] + sys.argv[1:])')
for loop in run rundel lifecycle limits; do
    for round in $(seq "$SHELL_ROUNDS"); do
        for rt in $RUNTIMES; do
            bin=$(bench_binary "$rt")
            [ -x "$bin" ] || continue
            bench_wrap "$rt" "$UNHYBRID"
            timeout --kill-after=10 $((60 + SHELL_ITERS * TIMEOUT / 5)) \
                "${wrap[@]}" "${SUBREAPER[@]}" "$REPO/tests/bench/shell_loop.sh" "$loop" "$rt" "$bin" \
                "$WORK/state-$rt" "$WORK/bundle" "$WORK/bundle-limits" "$SHELL_ITERS" \
                "hullbench-sh-$rt-$round-" >>"$SHELL_OUT" </dev/null ||
                echo "bench: shell loop $loop of $rt failed (round $round)" >&2
        done
    done
done
"$PYTHON" "$BENCH_PY" shell-report "$SHELL_OUT"

# Pods: `hull pod run` / `pod rm` latency (no CNI and a CNI bridge of its
# own) and the memory of a running pod (holder, monitors, supervisor).
# BENCH_POD_ITERS (default 20) timed iterations per mode; pod_bench.py bounds
# every step and cleans up after itself (also on Ctrl-C, hence --foreground).
POD_ITERS=${BENCH_POD_ITERS:-20}
echo
echo "bench: pods ($POD_ITERS iterations per mode)"
rc=0
HULL=$(bench_binary hull) HULL_TEST_ROOTFS=$ROOTFS BENCH_POD_ITERS=$POD_ITERS \
    timeout --foreground --kill-after=30 $((180 + 10 * POD_ITERS)) \
    "$PYTHON" "$REPO/tests/bench/pod_bench.py" </dev/null || rc=$?
if [ "$rc" -ne 0 ]; then
    echo "bench: pods: benchmark process failed (exit $rc)" >&2
fi
