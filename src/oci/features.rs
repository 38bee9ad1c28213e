//! `hull features`: what this build supports, in the runtime-spec's
//! features.json shape (the same keys runc prints). Only what hull really
//! implements is listed; AppArmor and SELinux show as enabled when this
//! host has them (hull applies them then).
use serde_json::{json, Value};

pub fn features() -> Value {
    let mount_options = [
        "async",
        "atime",
        "bind",
        "defaults",
        "dev",
        "diratime",
        "dirsync",
        "exec",
        "idmap",
        "lazytime",
        "loud",
        "mand",
        "noatime",
        "nodev",
        "nodiratime",
        "noexec",
        "nolazytime",
        "nomand",
        "norelatime",
        "nostrictatime",
        "nosuid",
        "private",
        "rbind",
        "relatime",
        "remount",
        "ridmap",
        "ro",
        "rprivate",
        "rshared",
        "rslave",
        "runbindable",
        "rw",
        "shared",
        "silent",
        "slave",
        "strictatime",
        "suid",
        "sync",
        "unbindable",
    ];
    let mut mount_options: Vec<&str> = mount_options.to_vec();
    mount_options.extend(crate::linux::mount_options::RECURSIVE_OPTIONS);
    mount_options.sort_unstable();
    let caps: Vec<String> = caps::all()
        .into_iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": super::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {
                "v1": true,
                "v2": true,
                // --systemd-cgroup only maps slice:prefix:name onto
                // cgroupfs; there is no systemd driver (see the annotation).
                "systemd": false,
                "systemdUser": false,
                "rdma": false
            },
            "seccomp": crate::seccomp::features(),
            "apparmor": {"enabled": crate::linux::lsm::apparmor_enabled()},
            "selinux": {"enabled": crate::linux::lsm::selinux_enabled()},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": true}},
            "netDevices": {"enabled": true},
            "memoryPolicy": {
                "modes": ["MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED", "MPOL_PREFERRED_MANY", "MPOL_LOCAL"],
                "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]
            }
        },
        "annotations": {
            "org.opencontainers.runtime-spec.features": "hull",
            "io.github.hull.cgroup.resources": "cpu, cpuset, memory, pids, blkio/io, hugetlb, net_cls/net_prio (v1), unified (v2), devices (v1 files, v2 eBPF); rdma and kernel memory refused",
            "io.github.hull.cgroup.systemd-path": "--systemd-cgroup maps slice:prefix:name onto cgroupfs; no systemd units",
            "io.github.hull.state.oomKilled": "state of a stopped container has oomKilled",
            "io.github.hull.process": "scheduler (sched_setattr), ioPriority (ioprio_set), execCPUAffinity (exec), rlimits, oomScoreAdj",
            "io.github.hull.linux": "personality (LINUX, LINUX32), timeOffsets (monotonic, boottime; new time namespace), memoryPolicy (set_mempolicy), no mount namespace (chroot, no mounts)"
        }
    })
}
