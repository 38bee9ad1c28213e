#!/bin/sh
# Runs inside the cgroup v2 VM, chrooted into the host's read-only tree
# (see tests/v2vm/init): the host-built test binaries named in the share's
# env file. HULL_TEST_REQUIRE_V2 turns a "skipped" of the v2 tests into a
# failure: in this VM every one of them must run.
. "$SHARE/env"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
export HULL_TEST_REQUIRE_V2=1 RUST_BACKTRACE=1
cd "$HULL_REPO" || exit 1
# The rootfs in the guest's tmpfs: the host's tree is read-only here, and
# runtimes create missing mount points in the rootfs.
rm -rf /tmp/hull-v2-rootfs
cp -a "$HULL_TEST_ROOTFS" /tmp/hull-v2-rootfs || exit 1
export HULL_TEST_ROOTFS=/tmp/hull-v2-rootfs
rc=0
run() {
    echo "hull-v2vm: running $*"
    "$@" --test-threads=4 || rc=1
}
# The eBPF device filter loads into the 6.1 kernel (libhull unit tests).
run "$HULL_V2_LIB_TESTS" cgroups::v2::devices
# The v2 suite.
run "$HULL_V2_TESTS"
# The tests of tests/resources.rs that are not v1-only.
run "$HULL_V2_RESOURCE_TESTS" pause_freezes events_ends events_on_a_missing v2_
# Nothing of any test is left: no cgroup, no mount of a test's dirs, no
# process but this shell's.
left=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d -name '*hull*')
if [ -n "$left" ]; then echo "hull-v2vm: cgroups left behind: $left"; rc=1; fi
left=$(grep -E ' /tmp/hull-(root|bundle|v2pod|pod)' /proc/self/mountinfo || true)
if [ -n "$left" ]; then echo "hull-v2vm: mounts left behind: $left"; rc=1; fi
left=$(ps -eo pid=,args= | awk '$1 != 1 && $1 != '"$$"' && /sleep|target\/debug|hull-pause/ && !/awk/' || true)
if [ -n "$left" ]; then echo "hull-v2vm: processes left behind: $left"; rc=1; fi
exit $rc
