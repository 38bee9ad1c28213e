# What tests/bench/bench.sh and tests/bench/profile.sh share: which binary
# a runtime name means, the cgroup "hybrid" layout and the private mount
# namespace crun needs on it, and the clean-up of what a run left behind.
# Sourced (bash), with REPO set to the repository's root.

# release_dir: where cargo puts the release binaries, target/<host triple>/
# release (.cargo/config.toml names the target, which the static link needs).
release_dir() {
    echo "$REPO/target/$(rustc -vV | sed -n 's/^host: //p')/release"
}

# bench_binary RUNTIME: the binary to run for hull, runc or crun ($HULL,
# $RUNC, $CRUN, else target/<host triple>/release/hull and PATH); the name itself when it
# is not found (callers check with [ -x ]).
bench_binary() {
    local b
    case "$1" in
        hull) echo "${HULL:-$(release_dir)/hull}"; return ;;
        runc) b=${RUNC:-runc} ;;
        crun) b=${CRUN:-crun} ;;
        *)    b=$1 ;;
    esac
    command -v "$b" 2>/dev/null || echo "$b"
}

# cgroup "hybrid" layout: v1 controllers plus a controller-less cgroup2 mount.
is_hybrid() {
    [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ] &&
        mountpoint -q /sys/fs/cgroup/unified 2>/dev/null
}

# bench_wrap RUNTIME "LIST": sets the array `wrap` to the command prefix that
# runs RUNTIME, when it is in LIST and the host is hybrid, in a private mount
# namespace (unshare -m defaults to private propagation, so the umount does
# not reach the host) without /sys/fs/cgroup/unified (Debian's crun 1.8
# refuses the hybrid layout); to nothing otherwise.
bench_wrap() {
    wrap=()
    if [[ " $2 " == *" $1 "* ]] && is_hybrid; then
        wrap=(unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec "$@"' sh)
    fi
}

# bench_cleanup WORK CGROUP_PREFIX RUNTIME...: force-delete every container
# left in WORK/state-RUNTIME, remove the empty cgroups named CGROUP_PREFIX*
# that a runtime failing half-way left, and WORK itself.
bench_cleanup() {
    local work=$1 prefix=$2 rt bin id
    shift 2
    for rt in "$@"; do
        [ -d "$work/state-$rt" ] || continue
        bin=$(bench_binary "$rt")
        [ -x "$bin" ] || continue
        for id in $(timeout 10 "$bin" --root "$work/state-$rt" list -q 2>/dev/null || true); do
            timeout 10 "$bin" --root "$work/state-$rt" delete --force "$id" >/dev/null 2>&1 || true
        done
    done
    find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d -name "$prefix*" -exec rmdir {} + 2>/dev/null || true
    rm -rf "$work"
}
