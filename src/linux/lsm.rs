//! Linux security modules: the AppArmor profile and the SELinux labels a
//! config asks for. Both are applied through the process's own
//! `/proc/thread-self/attr` files and take effect at the next execve; the
//! SELinux mount label becomes a `context=` mount option.
use std::path::Path;

use oci_spec::runtime::{Process, Spec};

use crate::error::{Error, Result, SysContext};

/// What the running kernel offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub apparmor: bool,
    pub selinux: bool,
}

impl Host {
    pub fn detect() -> Host {
        Host { apparmor: apparmor_enabled(), selinux: selinux_enabled() }
    }
}

/// AppArmor is enabled when the module says so (what runc checks too).
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.starts_with('Y'))
}

/// SELinux is enabled when selinuxfs is mounted and the kernel gives
/// processes a real context (not the "kernel" placeholder of a disabled
/// policy), as go-selinux decides for runc.
pub fn selinux_enabled() -> bool {
    let fs_mounted = Path::new("/sys/fs/selinux/enforce").exists()
        || std::fs::read_to_string("/proc/self/mountinfo")
            .is_ok_and(|mi| mi.lines().any(|l| l.split(" - ").nth(1).is_some_and(|t| t.starts_with("selinuxfs "))));
    fs_mounted
        && std::fs::read_to_string("/proc/self/attr/current")
            .is_ok_and(|c| !c.trim_end_matches(['\0', '\n']).is_empty() && c.trim_end_matches(['\0', '\n']) != "kernel")
}

fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// Refuse labels the host cannot apply, with runc's wording, before
/// anything is created. `mount_label` is `linux.mountLabel` (None for exec).
/// `host` is called only when a profile or label is asked for: probing
/// reads mountinfo, which every create paid for nothing.
pub fn check(process: &Process, mount_label: Option<&String>, host: impl FnOnce() -> Host) -> Result<()> {
    let profile = set(process.apparmor_profile());
    let label = set(process.selinux_label());
    let mount_label = mount_label.filter(|l| !l.is_empty());
    if profile.is_none() && label.is_none() && mount_label.is_none() {
        return Ok(());
    }
    let host = host();
    if profile.is_some() && !host.apparmor {
        return Err(Error::Config("process.apparmorProfile: apparmor profile specified but AppArmor is not enabled on the host".into()));
    }
    // Without SELinux a label has no effect at all: crun and youki run the
    // container without it and say so (runc refuses); hull follows them.
    // AppArmor keeps runc's refusal above.
    if let Some(label) = label.filter(|_| !host.selinux) {
        log::warn!("process.selinuxLabel {label:?} ignored: SELinux is not enabled on this host");
    }
    if let Some(label) = mount_label.filter(|_| !host.selinux) {
        log::warn!("linux.mountLabel {label:?} ignored: SELinux is not enabled on this host");
    }
    Ok(())
}

/// Validate the LSM fields of a whole config on this host.
pub fn check_spec(spec: &Spec, process: &Process) -> Result<()> {
    check(process, spec.linux().as_ref().and_then(|l| l.mount_label().as_ref()), Host::detect)
}

/// Arrange for the next execve to run under the configured AppArmor profile
/// and SELinux label. Called while the process is still root and before
/// no_new_privs: once the process has switched users its /proc files belong
/// to root (it is not dumpable), and AppArmor refuses most profile changes
/// under no_new_privs.
pub fn apply_exec_labels(process: &Process) -> Result<()> {
    if let Some(profile) = set(process.apparmor_profile()) {
        // The stacking-aware file first (Linux 5.8+), then the legacy one.
        let value = format!("exec {profile}");
        write_attr(&["/proc/thread-self/attr/apparmor/exec", "/proc/thread-self/attr/exec"], &value)
            .map_err(|e| Error::Init(format!("process.apparmorProfile {profile:?}: {e}")))?;
    }
    if let Some(label) = set(process.selinux_label()).filter(|_| selinux_enabled()) {
        write_attr(&["/proc/thread-self/attr/exec"], label).map_err(|e| Error::Init(format!("process.selinuxLabel {label:?}: {e}")))?;
    }
    Ok(())
}

/// Write `value` in one write(2) to the first of `paths` that exists (the
/// kernel takes an attribute from a single write).
fn write_attr(paths: &[&str], value: &str) -> Result<()> {
    use std::io::Write;
    let path = paths.iter().find(|p| Path::new(p).exists()).copied().unwrap_or(paths[paths.len() - 1]);
    let mut f = std::fs::OpenOptions::new().write(true).open(path).sys_context(|| format!("open {path}"))?;
    let n = f.write(value.as_bytes()).sys_context(|| format!("write {path}"))?;
    if n != value.len() {
        return Err(Error::Init(format!("write {path}: short write")));
    }
    Ok(())
}

/// The data string of a mount with the SELinux mount label added as
/// `context="..."`, for the filesystems runc labels this way. proc, sysfs,
/// mqueue and cgroups keep their own labels; binds share their source's.
pub fn mount_data(typ: &str, bind: bool, data: Option<String>, mount_label: Option<&str>) -> Option<String> {
    let Some(label) = mount_label.filter(|l| !l.is_empty()) else { return data };
    if bind || matches!(typ, "proc" | "sysfs" | "mqueue" | "cgroup" | "cgroup2" | "bind" | "") {
        return data;
    }
    let context = format!("context=\"{label}\"");
    Some(match data {
        Some(d) if !d.is_empty() => format!("{d},{context}"),
        _ => context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(v: serde_json::Value) -> Process {
        let mut base = serde_json::json!({"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"});
        base.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    const NONE: Host = Host { apparmor: false, selinux: false };
    const BOTH: Host = Host { apparmor: true, selinux: true };

    #[test]
    fn labels_are_refused_by_name_when_the_host_lacks_the_module() {
        let p = process(serde_json::json!({"apparmorProfile": "docker-default"}));
        let e = check(&p, None, || NONE).unwrap_err().to_string();
        assert!(e.contains("process.apparmorProfile") && e.contains("AppArmor is not enabled"), "{e}");
        check(&p, None, || BOTH).unwrap();
        // SELinux labels without SELinux: accepted (a warning), as crun does.
        let p = process(serde_json::json!({"selinuxLabel": "system_u:system_r:container_t:s0"}));
        check(&p, None, || NONE).unwrap();
        check(&p, None, || BOTH).unwrap();
        let label = "system_u:object_r:container_file_t:s0".to_string();
        check(&process(serde_json::json!({})), Some(&label), || NONE).unwrap();
        // Empty strings mean "no label".
        let p = process(serde_json::json!({"apparmorProfile": "", "selinuxLabel": ""}));
        check(&p, Some(&String::new()), || NONE).unwrap();
        // Nothing asked: the host is not probed.
        check(&p, Some(&String::new()), || panic!("probed the host")).unwrap();
        check(&process(serde_json::json!({})), None, || panic!("probed the host")).unwrap();
    }

    #[test]
    fn mount_label_becomes_a_context_option() {
        let l = Some("system_u:object_r:container_file_t:s0:c1,c2");
        assert_eq!(
            mount_data("tmpfs", false, Some("mode=755".into()), l).as_deref(),
            Some("mode=755,context=\"system_u:object_r:container_file_t:s0:c1,c2\"")
        );
        assert_eq!(mount_data("devpts", false, None, l).as_deref(), Some("context=\"system_u:object_r:container_file_t:s0:c1,c2\""));
        assert_eq!(mount_data("proc", false, None, l), None);
        assert_eq!(mount_data("tmpfs", true, Some("x".into()), l).as_deref(), Some("x"));
        assert_eq!(mount_data("tmpfs", false, Some("mode=755".into()), None).as_deref(), Some("mode=755"));
    }

    #[test]
    fn host_detection_does_not_panic() {
        let h = Host::detect();
        eprintln!("this host: apparmor={} selinux={}", h.apparmor, h.selinux);
    }
}
