#!/bin/sh
# Runs inside the cgroup v2 VM, in the host's read-only tree made its root
# (see tests/v2vm/init): the host-built test binaries named in the share's
# env file. HULL_TEST_REQUIRE_V2 turns a "skipped" of the v2 tests into a
# failure: in this VM every one of them must run.
. "$SHARE/env"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
export HULL_TEST_REQUIRE_V2=1 RUST_BACKTRACE=1
cd "$HULL_REPO" || exit 1
# The rootfs in the guest's tmpfs: the host's tree is read-only here, and
# runtimes create missing mount points in the rootfs.
rm -rf /tmp/hull-v2-rootfs /tmp/image-layout
cp -a "$HULL_TEST_ROOTFS" /tmp/hull-v2-rootfs || exit 1
# The CRI tests import the fixture image from beside the rootfs.
cp -a "$(dirname "$HULL_TEST_ROOTFS")/image-layout" /tmp/image-layout || exit 1
export HULL_TEST_ROOTFS=/tmp/hull-v2-rootfs
rc=0
# Each binary must end well and have run tests: a filter that matches
# nothing (a test renamed) is a failure, not a pass.
run() {
    echo "hull-v2vm: running $*"
    { "$@" --test-threads=4 2>&1; echo "hull-v2vm: exit $?"; } | tee /tmp/hull-v2vm.out
    if ! grep -q '^hull-v2vm: exit 0$' /tmp/hull-v2vm.out; then
        rc=1
    elif ! grep -Eq '^test result: .*ok.* [1-9][0-9]* passed' /tmp/hull-v2vm.out; then
        echo "hull-v2vm: no test ran in $1"
        rc=1
    fi
}
# The eBPF device filter loads into the 6.1 kernel (libhull unit tests).
run "$HULL_V2_LIB_TESTS" cgroups::v2::devices
# The v2 suite.
run "$HULL_V2_TESTS"
# The tests of tests/resources.rs that are not v1-only.
run "$HULL_V2_RESOURCE_TESTS" pause_freezes events_ends events_on_a_missing v2_
# One CRI pod's life through hull daemon on v2: sandbox, container, ExecSync
# with its timeout, CRI logs and their reopening, stop, remove. It must run,
# not skip.
run "$HULL_V2_CRI_TESTS" exec_sync_timeout_logs_and_reopen
if grep -qi 'skipped' /tmp/hull-v2vm.out; then echo "hull-v2vm: the CRI pod test skipped"; rc=1; fi
# The systemd cgroup driver's slices and scopes on the unified hierarchy.
run "$HULL_V2_CRI_TESTS" systemd_cgroup_driver_places_pods_in_slices
if grep -qi 'skipped' /tmp/hull-v2vm.out; then echo "hull-v2vm: the CRI slice test skipped"; rc=1; fi
# Nothing of any test is left: no cgroup, no mount of a test's dirs, no
# process but this shell's.
left=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d -name '*hull*')
if [ -n "$left" ]; then echo "hull-v2vm: cgroups left behind: $left"; rc=1; fi
left=$(grep -E ' /tmp/hull-(root|bundle|v2pod|pod)' /proc/self/mountinfo || true)
if [ -n "$left" ]; then echo "hull-v2vm: mounts left behind: $left"; rc=1; fi
left=$(ps -eo pid=,args= | awk '$1 != 1 && $1 != '"$$"' && /sleep|target\/debug|hull-pause/ && !/awk/' || true)
if [ -n "$left" ]; then echo "hull-v2vm: processes left behind: $left"; rc=1; fi
exit $rc
