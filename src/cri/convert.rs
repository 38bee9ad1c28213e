//! Small typed translations shared by the RPC groups: CRI enums, times,
//! namespace options, security profiles, resources, label maps. Each checks
//! what it reads and names the request field when it refuses it.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::SystemTime;

use k8s_cri::v1 as cri;
use tonic::Status;

use super::errors::invalid;
use crate::runtime as rt;

pub fn btree(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

pub fn hash(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Nanoseconds since the epoch (0 for before it).
pub fn nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

pub fn opt_nanos(t: Option<SystemTime>) -> i64 {
    t.map(nanos).unwrap_or(0)
}

pub fn namespace_mode(field: &str, v: i32) -> Result<rt::NamespaceMode, Status> {
    match cri::NamespaceMode::try_from(v) {
        Ok(cri::NamespaceMode::Pod) => Ok(rt::NamespaceMode::Pod),
        Ok(cri::NamespaceMode::Container) => Ok(rt::NamespaceMode::Container),
        Ok(cri::NamespaceMode::Node) => Ok(rt::NamespaceMode::Node),
        Ok(cri::NamespaceMode::Target) => Ok(rt::NamespaceMode::Target),
        Err(_) => Err(invalid(field, format!("unknown namespace mode {v}"))),
    }
}

fn mode_value(m: rt::NamespaceMode) -> i32 {
    (match m {
        rt::NamespaceMode::Pod => cri::NamespaceMode::Pod,
        rt::NamespaceMode::Container => cri::NamespaceMode::Container,
        rt::NamespaceMode::Node => cri::NamespaceMode::Node,
        rt::NamespaceMode::Target => cri::NamespaceMode::Target,
    }) as i32
}

/// CRI `NamespaceOption` (absent: the proto's zero values, POD for all).
pub fn namespace_options(field: &str, o: Option<cri::NamespaceOption>) -> Result<rt::NamespaceOptions, Status> {
    let o = o.unwrap_or_default();
    if let Some(u) = &o.userns_options {
        if u.mode != cri::NamespaceMode::Node as i32 || !u.uids.is_empty() || !u.gids.is_empty() {
            return Err(super::errors::unimplemented(format!("{field}.userns_options: user namespaces are not supported")));
        }
    }
    let pid = namespace_mode(&format!("{field}.pid"), o.pid)?;
    let target_id = if o.target_id.is_empty() {
        None
    } else {
        Some(rt::ContainerId::parse(&o.target_id).map_err(|e| invalid(&format!("{field}.target_id"), e))?)
    };
    if (pid == rt::NamespaceMode::Target) != target_id.is_some() {
        return Err(invalid(&format!("{field}.target_id"), "is set exactly when pid is TARGET"));
    }
    let ipc = namespace_mode(&format!("{field}.ipc"), o.ipc)?;
    let network = namespace_mode(&format!("{field}.network"), o.network)?;
    if ipc == rt::NamespaceMode::Target || network == rt::NamespaceMode::Target {
        return Err(invalid(field, "TARGET is only for the pid namespace"));
    }
    Ok(rt::NamespaceOptions { network, pid, ipc, target_id })
}

pub fn namespace_message(o: &rt::NamespaceOptions) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: mode_value(o.network),
        pid: mode_value(o.pid),
        ipc: mode_value(o.ipc),
        target_id: o.target_id.as_ref().map(|t| t.to_string()).unwrap_or_default(),
        userns_options: None,
    }
}

/// A seccomp profile: absent is Unconfined (the CRI's rule); RuntimeDefault
/// is the daemon's configured profile, else hull's built-in one.
pub fn seccomp(field: &str, p: Option<cri::SecurityProfile>, default_profile: Option<&PathBuf>) -> Result<rt::SecurityProfile, Status> {
    let Some(p) = p else {
        return Ok(rt::SecurityProfile::Unconfined);
    };
    use cri::security_profile::ProfileType;
    match ProfileType::try_from(p.profile_type) {
        Ok(ProfileType::RuntimeDefault) => Ok(match default_profile {
            Some(path) => rt::SecurityProfile::Localhost(path.clone()),
            None => rt::SecurityProfile::RuntimeDefault,
        }),
        Ok(ProfileType::Unconfined) => Ok(rt::SecurityProfile::Unconfined),
        Ok(ProfileType::Localhost) => {
            let path = PathBuf::from(&p.localhost_ref);
            if !path.is_absolute() {
                return Err(invalid(&format!("{field}.localhost_ref"), format!("{:?} is not an absolute path", p.localhost_ref)));
            }
            Ok(rt::SecurityProfile::Localhost(path))
        }
        Err(_) => Err(invalid(&format!("{field}.profile_type"), format!("unknown profile type {}", p.profile_type))),
    }
}

fn host_has_lsm(name: &str) -> bool {
    std::fs::read_to_string("/sys/kernel/security/lsm").is_ok_and(|l| l.trim().split(',').any(|m| m == name))
}

/// AppArmor: Unconfined (or absent) is fine; a profile is refused on a
/// host without AppArmor. Applying profiles is not wired through the
/// runtime layer's configs, so it is refused there too.
pub fn apparmor(field: &str, p: &Option<cri::SecurityProfile>, deprecated: &str) -> Result<(), Status> {
    use cri::security_profile::ProfileType;
    let asked = match p {
        Some(p) => p.profile_type != ProfileType::Unconfined as i32,
        None => !deprecated.is_empty() && deprecated != "unconfined",
    };
    if !asked {
        return Ok(());
    }
    if !host_has_lsm("apparmor") {
        return Err(invalid(field, "this host has no AppArmor; leave the profile unset or Unconfined"));
    }
    Err(super::errors::unimplemented(format!("{field}: AppArmor profiles through the CRI are not supported yet")))
}

/// SELinux options are refused on a host without SELinux (and, not being
/// wired through the runtime layer, on one with it too).
pub fn selinux(field: &str, o: &Option<cri::SeLinuxOption>) -> Result<(), Status> {
    let Some(o) = o else { return Ok(()) };
    if o.user.is_empty() && o.role.is_empty() && o.r#type.is_empty() && o.level.is_empty() {
        return Ok(());
    }
    if !std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        return Err(invalid(field, "this host has no SELinux; leave selinux_options unset"));
    }
    Err(super::errors::unimplemented(format!("{field}: SELinux labels through the CRI are not supported yet")))
}

/// CRI `LinuxContainerResources` with its numbers bounded. `own_oom`: the
/// daemon's oom_score_adj; a lower value needs CAP_SYS_RESOURCE and is
/// raised to it (containerd's restrict_oom_score_adj).
pub fn resources(field: &str, r: Option<cri::LinuxContainerResources>, own_oom: Option<i64>) -> Result<Option<rt::LinuxResources>, Status> {
    let Some(r) = r else { return Ok(None) };
    let nonneg = |name: &str, v: i64| -> Result<i64, Status> {
        if v < 0 {
            Err(invalid(&format!("{field}.{name}"), format!("{v} is negative")))
        } else {
            Ok(v)
        }
    };
    let cpu_period = nonneg("cpu_period", r.cpu_period)?;
    if cpu_period != 0 && !(1000..=1_000_000).contains(&cpu_period) {
        return Err(invalid(&format!("{field}.cpu_period"), format!("{cpu_period} is outside 1000..1000000 microseconds")));
    }
    // -1 is "no quota" in cgroup terms; the kubelet sends 0 for none.
    if r.cpu_quota < -1 {
        return Err(invalid(&format!("{field}.cpu_quota"), format!("{} is negative", r.cpu_quota)));
    }
    let cpu_shares = nonneg("cpu_shares", r.cpu_shares)?;
    if cpu_shares > 262_144 {
        return Err(invalid(&format!("{field}.cpu_shares"), format!("{cpu_shares} is more than 262144")));
    }
    let memory = nonneg("memory_limit_in_bytes", r.memory_limit_in_bytes)?;
    if r.memory_swap_limit_in_bytes < -1 {
        return Err(invalid(&format!("{field}.memory_swap_limit_in_bytes"), format!("{} is negative", r.memory_swap_limit_in_bytes)));
    }
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(invalid(&format!("{field}.oom_score_adj"), format!("{} is outside -1000..1000", r.oom_score_adj)));
    }
    let mut oom_score_adj = r.oom_score_adj;
    if let Some(own) = own_oom {
        if oom_score_adj < own {
            tracing::info!(
                requested = oom_score_adj,
                used = own,
                "oom_score_adj below the daemon's own needs CAP_SYS_RESOURCE; raised to the daemon's"
            );
            oom_score_adj = own;
        }
    }
    let hugepage_limits = r
        .hugepage_limits
        .into_iter()
        .map(|h| {
            if h.page_size.is_empty() {
                return Err(invalid(&format!("{field}.hugepage_limits.page_size"), "empty"));
            }
            Ok(rt::HugepageLimit { page_size: h.page_size, limit: h.limit })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(rt::LinuxResources {
        cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares,
        memory_limit_in_bytes: memory,
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
        oom_score_adj,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
        hugepage_limits,
        unified: btree(r.unified),
    }))
}

pub fn resources_message(r: &rt::LinuxResources) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|h| cri::HugepageLimit { page_size: h.page_size.clone(), limit: h.limit })
            .collect(),
        unified: hash(&r.unified),
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
    }
}

/// The daemon's own oom_score_adj (what its children may go down to
/// without CAP_SYS_RESOURCE).
pub fn own_oom_score_adj() -> Option<i64> {
    std::fs::read_to_string("/proc/self/oom_score_adj").ok()?.trim().parse().ok()
}

/// A uid or gid from the CRI's Int64Value, bounded to 32 bits.
pub fn id_value(field: &str, v: &Option<cri::Int64Value>) -> Result<Option<i64>, Status> {
    match v {
        None => Ok(None),
        Some(x) if (0..=u32::MAX as i64).contains(&x.value) => Ok(Some(x.value)),
        Some(x) => Err(invalid(field, format!("{} is not a valid id", x.value))),
    }
}

pub fn ids(field: &str, v: &[i64]) -> Result<Vec<i64>, Status> {
    if let Some(bad) = v.iter().find(|g| !(0..=u32::MAX as i64).contains(*g)) {
        return Err(invalid(field, format!("{bad} is not a valid group id")));
    }
    if v.len() > 65536 {
        return Err(invalid(field, "more than 65536 groups"));
    }
    Ok(v.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn namespace_options_are_checked() {
        let o = namespace_options("ns", None).unwrap();
        assert_eq!((o.network, o.pid, o.ipc), (rt::NamespaceMode::Pod, rt::NamespaceMode::Pod, rt::NamespaceMode::Pod));
        let e = namespace_options("ns", Some(cri::NamespaceOption { pid: 9, ..Default::default() })).unwrap_err();
        assert!(e.message().starts_with("ns.pid"), "{}", e.message());
        let e = namespace_options("ns", Some(cri::NamespaceOption { pid: 3, ..Default::default() })).unwrap_err();
        assert!(e.message().starts_with("ns.target_id"), "{}", e.message());
        let t = "a".repeat(64);
        let o = namespace_options("ns", Some(cri::NamespaceOption { pid: 3, target_id: t.clone(), ..Default::default() })).unwrap();
        assert_eq!(o.target_id.unwrap().as_str(), t);
        let m = namespace_message(&rt::NamespaceOptions::default());
        assert_eq!((m.network, m.pid), (0, 1));
    }

    #[test]
    fn seccomp_profiles() {
        use cri::security_profile::ProfileType;
        assert_eq!(seccomp("s", None, None).unwrap(), rt::SecurityProfile::Unconfined);
        let p = |t: ProfileType, r: &str| Some(cri::SecurityProfile { profile_type: t as i32, localhost_ref: r.into() });
        assert_eq!(seccomp("s", p(ProfileType::RuntimeDefault, ""), None).unwrap(), rt::SecurityProfile::RuntimeDefault);
        let own = PathBuf::from("/etc/hull/seccomp.json");
        assert_eq!(seccomp("s", p(ProfileType::RuntimeDefault, ""), Some(&own)).unwrap(), rt::SecurityProfile::Localhost(own));
        assert_eq!(seccomp("s", p(ProfileType::Localhost, "rel.json"), None).unwrap_err().code(), Code::InvalidArgument);
    }

    #[test]
    fn resources_bounded_and_oom_clamped() {
        let r = cri::LinuxContainerResources { oom_score_adj: -999, memory_limit_in_bytes: 1 << 20, ..Default::default() };
        let got = resources("r", Some(r.clone()), Some(0)).unwrap().unwrap();
        assert_eq!(got.oom_score_adj, 0, "raised to the daemon's own");
        assert_eq!(resources("r", Some(r), None).unwrap().unwrap().oom_score_adj, -999);
        let bad = cri::LinuxContainerResources { cpu_shares: -1, ..Default::default() };
        assert!(resources("r", Some(bad), None).unwrap_err().message().starts_with("r.cpu_shares"));
        let bad = cri::LinuxContainerResources { oom_score_adj: 5000, ..Default::default() };
        assert!(resources("r", Some(bad), None).is_err());
        let bad = cri::LinuxContainerResources { cpu_period: 5, ..Default::default() };
        assert!(resources("r", Some(bad), None).is_err());
    }
}
