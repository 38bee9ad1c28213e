#!/bin/bash
# One timed plain shell loop of runtime commands (tests/bench/bench.sh runs
# these interleaved, hull / runc / crun, and bench.py shell-report prints
# them). Each command is started by this shell as a process of its own
# (fork + exec, stdio to /dev/null), the way containerd and podman call a
# runtime; nothing else runs inside the timed loop but shell builtins.
#
#   shell_loop.sh LOOP RUNTIME BINARY STATE BUNDLE LIMITS_BUNDLE ITERS PREFIX
#
# LOOP is one of:
#   run        RT run --bundle B ID                    (run removes it)
#   rundel     RT run --bundle B ID ; RT delete ID
#   lifecycle  RT create --bundle B --pid-file P ID ; RT start ID ;
#              wait for the init to be gone ; RT delete ID
#   limits     lifecycle with the bundle with memory/cpu/pids limits
# The wait: this shell is made a child subreaper before it starts (by
# bench.sh), so the container init, orphaned when `create` exits, becomes
# its child and is reaped by it; the loop spins on the builtin `kill -0`
# until the pid is gone (a /bin/true container is gone within a
# millisecond or so of `start`).
#
# Prints one line: LOOP RUNTIME ITERS TOTAL_NS FAILED (the loop alone,
# measured with bash's $EPOCHREALTIME around it; FAILED is 1 if any
# command failed). Leftovers are deleted after the
# clock stops. Exits non-zero if any command failed.
set -u
loop=$1 rt=$2 bin=$3 state=$4 bundle=$5 limits=$6 iters=$7 prefix=$8

ns() { local t=${EPOCHREALTIME/./}; echo "${t}000"; }

fail=0
run_loop() {
    local i id b=$bundle
    [ "$loop" = limits ] && b=$limits
    for ((i = 0; i < iters; i++)); do
        id=$prefix$i
        case $loop in
        run)
            "$bin" --root "$state" run --bundle "$b" "$id" </dev/null >/dev/null 2>&1 || fail=1
            ;;
        rundel)
            "$bin" --root "$state" run --bundle "$b" "$id" </dev/null >/dev/null 2>&1 || fail=1
            # runc, crun and hull remove the container when `run` returns:
            # the delete fails ("does not exist"), its cost is the point.
            "$bin" --root "$state" delete "$id" </dev/null >/dev/null 2>&1
            ;;
        lifecycle | limits)
            "$bin" --root "$state" create --bundle "$b" --pid-file "$pids/$id" "$id" \
                </dev/null >/dev/null 2>&1 || { fail=1; continue; }
            "$bin" --root "$state" start "$id" </dev/null >/dev/null 2>&1 || fail=1
            pid=$(<"$pids/$id")
            spins=0
            while kill -0 "$pid" 2>/dev/null && ((spins++ < 2000000)); do :; done
            "$bin" --root "$state" delete "$id" </dev/null >/dev/null 2>&1 || fail=1
            ;;
        *)
            echo "shell_loop: unknown loop $loop" >&2
            exit 2
            ;;
        esac
    done
}

pids=$state-pids
mkdir -p "$state" "$pids"
t0=$(ns)
run_loop
t1=$(ns)
# Untimed: whatever a failed iteration left.
for ((i = 0; i < iters; i++)); do
    "$bin" --root "$state" delete --force "$prefix$i" </dev/null >/dev/null 2>&1
    rm -f "$pids/$prefix$i"
done
echo "$loop $rt $iters $((t1 - t0)) $fail"
exit $fail
