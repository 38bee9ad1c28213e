//! RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus,
//! ListPodSandbox: a `PodSandboxConfig` becomes hull's `SandboxConfig`, the
//! runtime layer's statuses become CRI messages.
use std::path::PathBuf;
use std::time::Duration;

use k8s_cri::v1 as cri;
use tonic::Status;

use super::config::CgroupDriver;
use super::convert::{btree, hash, id_value, ids, namespace_message, namespace_options, nanos, resources, seccomp};
use super::errors::{gone_is_ok, ignore_not_found, invalid, status as to_status};
use super::service::{blocking, Cri};
use crate::runtime as rt;

/// How long StopPodSandbox gives a container still running before
/// SIGKILL: none. The kubelet has stopped them with their grace periods
/// first, and the CRI says what is left "must be forcibly terminated".
const STOP_TIMEOUT: Duration = Duration::ZERO;

pub fn sandbox_id(field: &str, id: &str) -> Result<rt::SandboxId, Status> {
    if id.is_empty() {
        return Err(invalid(field, "empty"));
    }
    // What cannot be an id names no sandbox.
    rt::SandboxId::parse(id).map_err(|_| super::errors::not_found(format!("sandbox {:?} not found", shown(id))))
}

/// An id from a request, cut for messages.
pub fn shown(id: &str) -> String {
    id.chars().take(80).collect()
}

fn port_mapping(i: usize, p: &cri::PortMapping) -> Result<Option<rt::PortMapping>, Status> {
    let field = format!("config.port_mappings[{i}]");
    let protocol = match cri::Protocol::try_from(p.protocol) {
        Ok(cri::Protocol::Tcp) => rt::Protocol::Tcp,
        Ok(cri::Protocol::Udp) => rt::Protocol::Udp,
        Ok(cri::Protocol::Sctp) => rt::Protocol::Sctp,
        Err(_) => return Err(invalid(&format!("{field}.protocol"), format!("unknown protocol {}", p.protocol))),
    };
    let port = |name: &str, v: i32| -> Result<u16, Status> {
        u16::try_from(v).map_err(|_| invalid(&format!("{field}.{name}"), format!("{v} is not a port")))
    };
    let container_port = port("container_port", p.container_port)?;
    let host_port = port("host_port", p.host_port)?;
    // The kubelet lists every container port; only those with a host port
    // are forwarded.
    if host_port == 0 {
        return Ok(None);
    }
    if container_port == 0 {
        return Err(invalid(&format!("{field}.container_port"), "0 is not a port"));
    }
    if !p.host_ip.is_empty() && p.host_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid(&format!("{field}.host_ip"), format!("{:?} is not an IP address", p.host_ip)));
    }
    Ok(Some(rt::PortMapping { protocol, container_port, host_port, host_ip: p.host_ip.clone() }))
}

/// The CRI sandbox config as hull's.
pub fn sandbox_config(cri: &Cri, c: cri::PodSandboxConfig, runtime_handler: &str) -> Result<rt::SandboxConfig, Status> {
    if !runtime_handler.is_empty() {
        return Err(invalid("runtime_handler", format!("{runtime_handler:?}: hull has only the default handler (\"\")")));
    }
    let m = c.metadata.ok_or_else(|| invalid("config.metadata", "missing"))?;
    if m.name.is_empty() {
        return Err(invalid("config.metadata.name", "empty"));
    }
    if m.namespace.is_empty() {
        return Err(invalid("config.metadata.namespace", "empty"));
    }
    if c.windows.is_some() {
        return Err(invalid("config.windows", "hull runs Linux pods"));
    }
    let log_directory = if c.log_directory.is_empty() {
        None
    } else {
        let d = PathBuf::from(&c.log_directory);
        if !d.is_absolute() || d.components().any(|x| x == std::path::Component::ParentDir) {
            return Err(invalid("config.log_directory", format!("{:?} is not an absolute path without ..", c.log_directory)));
        }
        Some(d)
    };
    let dns = c.dns_config.map(|d| rt::DnsConfig { servers: d.servers, searches: d.searches, options: d.options });
    let mut port_mappings = Vec::new();
    for (i, p) in c.port_mappings.iter().enumerate() {
        port_mappings.extend(port_mapping(i, p)?);
    }
    let linux = c.linux.unwrap_or_default();
    let sc = linux.security_context.unwrap_or_default();
    super::convert::selinux("config.linux.security_context.selinux_options", &sc.selinux_options)?;
    super::convert::apparmor("config.linux.security_context.apparmor", &sc.apparmor, "")?;
    if !sc.seccomp_profile_path_is_empty() {
        return Err(invalid("config.linux.security_context.seccomp_profile_path", "deprecated; use seccomp"));
    }
    if sc.supplemental_groups_policy != 0 {
        return Err(super::errors::unimplemented("config.linux.security_context.supplemental_groups_policy: only Merge is supported"));
    }
    let security_context = rt::SandboxSecurityContext {
        namespace_options: namespace_options("config.linux.security_context.namespace_options", sc.namespace_options)?,
        privileged: sc.privileged,
        run_as_user: id_value("config.linux.security_context.run_as_user", &sc.run_as_user)?,
        run_as_group: id_value("config.linux.security_context.run_as_group", &sc.run_as_group)?,
        supplemental_groups: ids("config.linux.security_context.supplemental_groups", &sc.supplemental_groups)?,
        readonly_rootfs: sc.readonly_rootfs,
        seccomp: seccomp("config.linux.security_context.seccomp", sc.seccomp, cri.config.seccomp_profile.as_ref())?,
    };
    Ok(rt::SandboxConfig {
        metadata: rt::SandboxMetadata { name: m.name, namespace: m.namespace, uid: m.uid, attempt: m.attempt },
        hostname: c.hostname,
        log_directory,
        dns,
        port_mappings,
        host_aliases: Vec::new(),
        labels: btree(c.labels),
        annotations: btree(c.annotations),
        cgroup_parent: cgroup_parent(cri.config.cgroup_driver, &linux.cgroup_parent)?,
        cgroup_scopes: cri.config.cgroup_driver == CgroupDriver::Systemd,
        // The sum of the containers' resources and the RuntimeClass
        // overhead are the sandbox's size for runtimes that need one (VMs).
        // The pod cgroup is the kubelet's to size (limits only where every
        // container has one, plus the overhead): writing this sum there
        // would cap a pod whose other containers have no limit. Checked,
        // not applied, as containerd and CRI-O do.
        resources: {
            resources("config.linux.resources", linux.resources, None)?;
            resources("config.linux.overhead", linux.overhead, None)?;
            None
        },
        sysctls: btree(linux.sysctls),
        security_context,
    })
}

/// The pod cgroup as a cgroupfs path, from the kubelet's name for it: a
/// path with the cgroupfs driver (`/kubepods/burstable/pod<uid>`), a slice
/// with the systemd driver (`kubepods-burstable-pod<uid>.slice`, or the
/// kubelet's expanded `/kubepods.slice/kubepods-burstable.slice/...`),
/// placed where systemd nests it. Under cgroupfs an absolute path is a
/// path whatever its names (containerd joins it with the id too), also
/// the expanded form of a slice; a bare slice name is refused there, as
/// is a cgroupfs path under systemd: the kubelet and the daemon disagree
/// on the driver, and a relative name has no place in cgroupfs.
fn cgroup_parent(driver: CgroupDriver, parent: &str) -> Result<Option<String>, Status> {
    const FIELD: &str = "config.linux.cgroup_parent";
    if parent.is_empty() {
        return Ok(None);
    }
    let base = parent.rsplit('/').next().unwrap_or(parent);
    let slice = base.ends_with(".slice");
    match driver {
        CgroupDriver::Cgroupfs if slice && !parent.starts_with('/') => Err(invalid(
            FIELD,
            format!("{parent:?} is a systemd slice, and the daemon's cgroup_driver is cgroupfs (cgroup_driver = \"systemd\" takes slices)"),
        )),
        CgroupDriver::Cgroupfs => Ok(Some(parent.to_string())),
        CgroupDriver::Systemd if !slice => {
            Err(invalid(FIELD, format!("{parent:?} is not a systemd slice (NAME.slice), and the daemon's cgroup_driver is systemd")))
        }
        CgroupDriver::Systemd => {
            // systemd's unit name characters and length.
            if base.len() > 255 || !base.bytes().all(|b| b.is_ascii_alphanumeric() || b":_.-\\".contains(&b)) {
                return Err(invalid(FIELD, format!("{base:?} is not a valid slice name")));
            }
            let path = crate::cgroups::systemd::expand_slice(base).map_err(|e| invalid(FIELD, e))?;
            if path == std::path::Path::new("/") {
                return Err(invalid(FIELD, "the root slice cannot be a pod's cgroup"));
            }
            if parent.contains('/') && std::path::Path::new(parent) != path {
                return Err(invalid(FIELD, format!("{parent:?}: systemd nests {base} at {}", path.display())));
            }
            Ok(Some(path.to_string_lossy().into_owned()))
        }
    }
}

/// `seccomp_profile_path` is a deprecated field; generated code marks it so.
trait DeprecatedPath {
    fn seccomp_profile_path_is_empty(&self) -> bool;
}

impl DeprecatedPath for cri::LinuxSandboxSecurityContext {
    #[allow(deprecated)]
    fn seccomp_profile_path_is_empty(&self) -> bool {
        self.seccomp_profile_path.is_empty()
    }
}

pub async fn run(cri: &Cri, req: cri::RunPodSandboxRequest) -> Result<cri::RunPodSandboxResponse, Status> {
    let config = sandbox_config(cri, req.config.ok_or_else(|| invalid("config", "missing"))?, &req.runtime_handler)?;
    let runtime = cri.runtime.clone();
    let id = blocking(move || runtime.create_sandbox(&config).map_err(to_status)).await?;
    tracing::info!(sandbox = %id, "sandbox ready");
    Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id.to_string() })
}

/// Idempotent: a sandbox that does not exist (or an id that cannot be one)
/// is stopped already.
pub async fn stop(cri: &Cri, req: cri::StopPodSandboxRequest) -> Result<cri::StopPodSandboxResponse, Status> {
    let Some(id) = gone_is_ok(sandbox_id("pod_sandbox_id", &req.pod_sandbox_id))? else {
        return Ok(cri::StopPodSandboxResponse {});
    };
    let runtime = cri.runtime.clone();
    blocking(move || ignore_not_found(runtime.stop_sandbox(&id, STOP_TIMEOUT))).await?;
    Ok(cri::StopPodSandboxResponse {})
}

pub async fn remove(cri: &Cri, req: cri::RemovePodSandboxRequest) -> Result<cri::RemovePodSandboxResponse, Status> {
    let Some(id) = gone_is_ok(sandbox_id("pod_sandbox_id", &req.pod_sandbox_id))? else {
        return Ok(cri::RemovePodSandboxResponse {});
    };
    let runtime = cri.runtime.clone();
    blocking(move || ignore_not_found(runtime.remove_sandbox(&id))).await?;
    Ok(cri::RemovePodSandboxResponse {})
}

fn state_value(s: rt::SandboxState) -> i32 {
    (match s {
        rt::SandboxState::Ready => cri::PodSandboxState::SandboxReady,
        rt::SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
    }) as i32
}

fn metadata_message(m: &rt::SandboxMetadata) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata { name: m.name.clone(), uid: m.uid.clone(), namespace: m.namespace.clone(), attempt: m.attempt }
}

pub fn status_message(s: &rt::SandboxStatus) -> cri::PodSandboxStatus {
    let network = s.ips.split_first().map(|(ip, rest)| cri::PodSandboxNetworkStatus {
        ip: ip.clone(),
        additional_ips: rest.iter().map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
    });
    cri::PodSandboxStatus {
        id: s.id.to_string(),
        metadata: Some(metadata_message(&s.metadata)),
        state: state_value(s.state),
        created_at: nanos(s.created_at),
        network: Some(network.unwrap_or_default()),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace { options: Some(namespace_message(&s.namespace_options)) }),
        }),
        labels: hash(&s.labels),
        annotations: hash(&s.annotations),
        runtime_handler: String::new(),
    }
}

pub async fn status(cri: &Cri, req: cri::PodSandboxStatusRequest) -> Result<cri::PodSandboxStatusResponse, Status> {
    let id = sandbox_id("pod_sandbox_id", &req.pod_sandbox_id)?;
    let runtime = cri.runtime.clone();
    let verbose = req.verbose;
    blocking(move || {
        let s = runtime.sandbox_status(&id).map_err(to_status)?;
        let filter = rt::ContainerFilter { sandbox_id: Some(id.clone()), ..Default::default() };
        let containers = runtime.list_containers(&filter).map_err(to_status)?;
        let mut info = std::collections::HashMap::new();
        if verbose {
            let v = serde_json::json!({
                "pid": s.holder_pid,
                "cgroupParent": s.cgroup_parent,
                "logDirectory": s.log_directory,
                "ips": s.ips,
                "namespaceOptions": s.namespace_options,
            });
            info.insert("info".to_string(), v.to_string());
        }
        Ok(cri::PodSandboxStatusResponse {
            status: Some(status_message(&s)),
            info,
            containers_statuses: containers.iter().map(super::container::status_message).collect(),
            timestamp: nanos(std::time::SystemTime::now()),
        })
    })
    .await
}

/// An id filter shorter than a full id matches as a prefix (crictl's
/// truncated ids); one that cannot be an id matches nothing.
pub fn id_matches(filter: &str, id: &str) -> bool {
    filter.is_empty() || id.starts_with(filter)
}

pub async fn list(cri: &Cri, req: cri::ListPodSandboxRequest) -> Result<cri::ListPodSandboxResponse, Status> {
    let f = req.filter.unwrap_or_default();
    let mut filter = rt::SandboxFilter { label_selector: btree(f.label_selector), ..Default::default() };
    if let Some(s) = f.state {
        filter.state = Some(match cri::PodSandboxState::try_from(s.state) {
            Ok(cri::PodSandboxState::SandboxReady) => rt::SandboxState::Ready,
            Ok(cri::PodSandboxState::SandboxNotready) => rt::SandboxState::NotReady,
            Err(_) => return Err(invalid("filter.state.state", format!("unknown sandbox state {}", s.state))),
        });
    }
    if f.id.len() == rt::id::ID_LEN {
        match rt::SandboxId::parse(&f.id) {
            Ok(id) => filter.id = Some(id),
            Err(_) => return Ok(cri::ListPodSandboxResponse::default()),
        }
    }
    let prefix = f.id;
    let runtime = cri.runtime.clone();
    blocking(move || {
        let all = runtime.list_sandboxes(&filter).map_err(to_status)?;
        let items = all
            .iter()
            .filter(|s| id_matches(&prefix, s.id.as_str()))
            .map(|s| cri::PodSandbox {
                id: s.id.to_string(),
                metadata: Some(metadata_message(&s.metadata)),
                state: state_value(s.state),
                created_at: nanos(s.created_at),
                labels: hash(&s.labels),
                annotations: hash(&s.annotations),
                runtime_handler: String::new(),
            })
            .collect();
        Ok(cri::ListPodSandboxResponse { items })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_parents_by_driver() {
        let fs = |p: &str| cgroup_parent(CgroupDriver::Cgroupfs, p);
        let sd = |p: &str| cgroup_parent(CgroupDriver::Systemd, p);
        assert_eq!(fs("").unwrap(), None);
        assert_eq!(sd("").unwrap(), None);
        assert_eq!(fs("/kubepods/besteffort/pod1").unwrap().as_deref(), Some("/kubepods/besteffort/pod1"));
        let want = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1_2.slice";
        assert_eq!(sd("kubepods-besteffort-pod1_2.slice").unwrap().as_deref(), Some(want));
        assert_eq!(sd(want).unwrap().as_deref(), Some(want), "the kubelet's expanded form");
        assert_eq!(fs(want).unwrap().as_deref(), Some(want), "under cgroupfs a plain path");
        assert_eq!(fs("/a.slice/b").unwrap().as_deref(), Some("/a.slice/b"));
        for (r, needle) in [
            (fs("kubepods-besteffort-pod1.slice"), "cgroup_driver is cgroupfs"),
            (sd("/kubepods/besteffort/pod1"), "cgroup_driver is systemd"),
            (sd("/a.slice/kubepods-pod1.slice"), "systemd nests kubepods-pod1.slice at /kubepods.slice/kubepods-pod1.slice"),
            (sd("-.slice"), "root slice"),
            (sd("a--b.slice"), "not a valid slice name"),
            (sd("a b.slice"), "not a valid slice name"),
            (sd(&format!("{}.slice", "a".repeat(300))), "not a valid slice name"),
        ] {
            let e = r.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().starts_with("config.linux.cgroup_parent: ") && e.message().contains(needle), "{}", e.message());
        }
    }
}
