//! `hull spec`: the default config.json, the same as runc's, so bundles
//! made for one runtime work with the other.
use serde_json::{json, Value};

pub fn default_spec(rootless: bool) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut spec = json!({
        "ociVersion": super::state::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "hull",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    });
    if rootless {
        let linux = &mut spec["linux"];
        linux["uidMappings"] = json!([{"containerID": 0, "hostID": nix::unistd::getuid().as_raw(), "size": 1}]);
        linux["gidMappings"] = json!([{"containerID": 0, "hostID": nix::unistd::getgid().as_raw(), "size": 1}]);
        linux["namespaces"] = json!([
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}, {"type": "user"}
        ]);
        linux.as_object_mut().expect("object").remove("resources");
        spec["mounts"][5] = json!({"destination": "/sys", "type": "none", "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
        spec["mounts"][6] = json!({"destination": "/sys/fs/cgroup", "type": "none", "source": "/sys/fs/cgroup",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
    }
    spec
}

/// Set `linux.seccomp` to hull's default profile for the config's bounding
/// capabilities (`hull spec --seccomp-default`).
pub fn add_default_seccomp(spec: &mut Value) {
    let caps: oci_spec::runtime::Capabilities = spec
        .pointer("/process/capabilities/bounding")
        .and_then(|b| serde_json::from_value(b.clone()).ok())
        .unwrap_or_default();
    let profile = crate::seccomp::runtime_default(&caps);
    spec["linux"]["seccomp"] = serde_json::to_value(profile).expect("a profile serializes");
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_spec_parses_and_validates() {
        for rootless in [false, true] {
            let v = super::default_spec(rootless);
            let spec = crate::oci::config::parse_spec(v.to_string().as_bytes()).unwrap();
            crate::oci::config::validate(&spec).unwrap();
        }
    }

    #[test]
    fn default_seccomp_is_added_on_request_only() {
        assert!(super::default_spec(false)["linux"].get("seccomp").is_none());
        let mut v = super::default_spec(false);
        super::add_default_seccomp(&mut v);
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        let spec = crate::oci::config::parse_spec(v.to_string().as_bytes()).unwrap();
        crate::oci::config::validate(&spec).unwrap();
    }
}
