//! A Pod manifest as the runtime layer's configs: one [`SandboxConfig`]
//! for the pod and one [`ContainerConfig`] per container attempt, the way
//! the kubelet turns a Pod into CRI requests. Pure functions of the
//! (already validated) manifest: nothing here touches the host.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, VolumeMount};

use super::validate::parse_quantity;
use crate::error::{Error, Result};
use crate::runtime::{
    Capabilities, ContainerConfig, ContainerMetadata, ContainerSecurityContext, DnsConfig, HostAlias, ImageSpec, LinuxResources, Mount,
    MountPropagation, NamespaceMode, NamespaceOptions, PortMapping, Protocol, SandboxConfig, SandboxMetadata, SandboxSecurityContext,
    SourceType,
};

/// The kernel's (and the kubelet's) largest cpu.shares.
const MAX_SHARES: i64 = 262_144;
/// The CFS period hull (like the kubelet) uses for CPU limits.
const CPU_PERIOD: i64 = 100_000;

/// A pod volume as it is on the host (made by `volumes::prepare`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVolume {
    pub name: String,
    pub path: PathBuf,
    /// A hostPath's type ("" when unchecked); None for an emptyDir.
    pub host_type: Option<String>,
}

fn spec_of(pod: &Pod) -> &PodSpec {
    pod.spec.as_ref().expect("validated")
}

/// The pod's hostname: `spec.hostname`, else its name.
pub fn pod_hostname(pod: &Pod) -> String {
    spec_of(pod).hostname.clone().or_else(|| pod.metadata.name.clone()).unwrap_or_default()
}

/// Whose namespaces the pod's containers use (the kubelet's mapping of
/// hostNetwork, hostIPC, hostPID and shareProcessNamespace).
pub fn namespace_options(pod: &Pod) -> NamespaceOptions {
    let s = spec_of(pod);
    let node_or_pod = |host: Option<bool>| if host.unwrap_or(false) { NamespaceMode::Node } else { NamespaceMode::Pod };
    NamespaceOptions {
        network: node_or_pod(s.host_network),
        ipc: node_or_pod(s.host_ipc),
        pid: if s.host_pid.unwrap_or(false) {
            NamespaceMode::Node
        } else if s.share_process_namespace.unwrap_or(false) {
            NamespaceMode::Pod
        } else {
            NamespaceMode::Container
        },
        target_id: None,
    }
}

/// Container ports with a hostPort, as port mappings.
fn port_mappings(s: &PodSpec) -> Vec<PortMapping> {
    s.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|h| *h != 0)?;
            Some(PortMapping {
                host_port,
                container_port: u16::try_from(p.container_port).unwrap_or(0),
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => Protocol::Udp,
                    Some("SCTP") => Protocol::Sctp,
                    _ => Protocol::Tcp,
                },
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// `dnsPolicy: None` or a `dnsConfig`: the pod's own resolv.conf; else
/// (Default, ClusterFirst without a cluster DNS) the host's.
fn dns(s: &PodSpec) -> Option<DnsConfig> {
    if s.dns_config.is_none() && s.dns_policy.as_deref() != Some("None") {
        return None;
    }
    let dc = s.dns_config.clone().unwrap_or_default();
    Some(DnsConfig {
        servers: dc.nameservers.unwrap_or_default(),
        searches: dc.searches.unwrap_or_default(),
        options: dc
            .options
            .iter()
            .flatten()
            .map(|o| match &o.value {
                Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            })
            .collect(),
    })
}

/// The pod's sandbox. Its cgroup is `/hull-pod-<uid>`; its containers'
/// logs go to `log_dir` in the kubelet's layout (`<container>/<attempt>.log`).
pub fn sandbox_config(pod: &Pod, namespace: &str, uid: &str, log_dir: &Path) -> Result<SandboxConfig> {
    let s = spec_of(pod);
    let sysctls = s
        .security_context
        .as_ref()
        .and_then(|sc| sc.sysctls.as_ref())
        .map(|v| v.iter().map(|x| (x.name.clone(), x.value.clone())).collect())
        .unwrap_or_default();
    Ok(SandboxConfig {
        metadata: SandboxMetadata {
            name: pod.metadata.name.clone().unwrap_or_default(),
            namespace: namespace.to_string(),
            uid: uid.to_string(),
            attempt: 0,
        },
        hostname: pod_hostname(pod),
        log_directory: Some(log_dir.to_path_buf()),
        dns: dns(s),
        port_mappings: port_mappings(s),
        host_aliases: s
            .host_aliases
            .iter()
            .flatten()
            .map(|a| HostAlias { ip: a.ip.clone(), hostnames: a.hostnames.clone().unwrap_or_default() })
            .collect(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        annotations: pod.metadata.annotations.clone().unwrap_or_default(),
        cgroup_parent: Some(format!("/hull-pod-{uid}")),
        cgroup_scopes: false,
        resources: pod_resources(pod)?,
        sysctls,
        security_context: SandboxSecurityContext {
            namespace_options: namespace_options(pod),
            // As the kubelet: the sandbox is privileged when a container
            // (an init container too) is, which is what lets it be.
            privileged: s
                .containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .any(|c| c.security_context.as_ref().and_then(|sc| sc.privileged).unwrap_or(false)),
            ..Default::default()
        },
    })
}

/// limits.cpu → CFS quota over a 100 ms period; requests.cpu (else
/// limits.cpu) → shares; limits.memory → memory limit (requests.memory is
/// a scheduling hint).
pub fn container_resources(c: &Container, field: &str) -> Result<Option<LinuxResources>> {
    let Some(r) = c.resources.as_ref() else { return Ok(None) };
    for (which, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for key in map.iter().flat_map(|m| m.keys()) {
            if key != "cpu" && key != "memory" {
                return Err(Error::unsupported(format!("{field}.resources.{which}.{key}"), "only cpu and memory"));
            }
        }
    }
    let get = |map: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, key: &str, which: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .map(|q| parse_quantity(&q.0).map_err(|e| Error::InvalidArgument(format!("{field}.resources.{which}.{key}: {e}"))))
            .transpose()
    };
    let cpu_limit = get(&r.limits, "cpu", "limits")?;
    let cpu_request = get(&r.requests, "cpu", "requests")?.or(cpu_limit);
    let mem_limit = get(&r.limits, "memory", "limits")?;
    let mut out = LinuxResources::default();
    if let Some(l) = cpu_limit {
        // Within int64 millicores (checked when parsed); a limit beyond any
        // machine saturates, as f64 -> i64 does.
        out.cpu_quota = ((l * CPU_PERIOD as f64).round() as i64).max(1000);
        out.cpu_period = CPU_PERIOD;
    }
    if let Some(req) = cpu_request {
        out.cpu_shares = ((req * 1024.0).round() as i64).clamp(2, MAX_SHARES);
    }
    if let Some(m) = mem_limit {
        out.memory_limit_in_bytes = m as i64;
    }
    Ok((out != LinuxResources::default()).then_some(out))
}

/// The pod cgroup's limits, as the kubelet sets them: the sum of the
/// containers' memory limits and CPU quotas when every container has one,
/// and the sum of their CPU shares.
pub fn pod_resources(pod: &Pod) -> Result<Option<LinuxResources>> {
    let mut memory: Option<i64> = Some(0);
    let mut quota: Option<i64> = Some(0);
    let mut shares: i64 = 0;
    for (i, c) in spec_of(pod).containers.iter().enumerate() {
        let r = container_resources(c, &format!("spec.containers[{i}]"))?.unwrap_or_default();
        let total = |what: &str| {
            Error::InvalidArgument(format!("spec.containers[{i}].resources.limits.{what}: the pod's total limit is out of range"))
        };
        let set = |v: i64| (v != 0).then_some(v);
        memory = match memory.zip(set(r.memory_limit_in_bytes)) {
            Some((a, b)) => Some(a.checked_add(b).ok_or_else(|| total("memory"))?),
            None => None,
        };
        quota = match quota.zip(set(r.cpu_quota)) {
            Some((a, b)) => Some(a.checked_add(b).ok_or_else(|| total("cpu"))?),
            None => None,
        };
        shares = shares.saturating_add(if r.cpu_shares == 0 { 2 } else { r.cpu_shares });
    }
    let mut out = LinuxResources { cpu_shares: shares.clamp(2, MAX_SHARES), ..Default::default() };
    if let Some(m) = memory.filter(|m| *m > 0) {
        out.memory_limit_in_bytes = m;
    }
    if let Some(q) = quota.filter(|q| *q > 0) {
        out.cpu_quota = q;
        out.cpu_period = CPU_PERIOD;
    }
    Ok(Some(out))
}

fn source_type(host_type: Option<&str>) -> Result<SourceType> {
    Ok(match host_type.unwrap_or("") {
        "" => SourceType::Any,
        "Directory" | "DirectoryOrCreate" => SourceType::Directory,
        "File" | "FileOrCreate" => SourceType::File,
        "Socket" => SourceType::Socket,
        "CharDevice" => SourceType::CharDevice,
        "BlockDevice" => SourceType::BlockDevice,
        other => return Err(Error::InvalidArgument(format!("unknown hostPath type {other:?}"))),
    })
}

/// One volumeMount as a runtime mount: the volume's host path, the subPath
/// to resolve beneath it (by the runtime layer, from an fd), the hostPath
/// type to check on what it opens.
pub fn mount(vm: &VolumeMount, volumes: &[HostVolume], field: &str) -> Result<Mount> {
    let vol = volumes
        .iter()
        .find(|v| v.name == vm.name)
        .ok_or_else(|| Error::InvalidArgument(format!("{field}.name: no volume named {:?}", vm.name)))?;
    if !vm.mount_path.starts_with('/') {
        return Err(Error::InvalidArgument(format!("{field}.mountPath: {:?} is not absolute", vm.mount_path)));
    }
    let sub_path = vm.sub_path.clone().unwrap_or_default();
    if Path::new(&sub_path).is_absolute() {
        return Err(Error::InvalidArgument(format!("{field}.subPath: {sub_path:?} must be a relative path")));
    }
    let propagation = match vm.mount_propagation.as_deref().unwrap_or("None") {
        "None" => MountPropagation::Private,
        "HostToContainer" => MountPropagation::HostToContainer,
        "Bidirectional" => MountPropagation::Bidirectional,
        other => return Err(Error::InvalidArgument(format!("{field}.mountPropagation: unknown value {other:?}"))),
    };
    Ok(Mount {
        container_path: vm.mount_path.clone(),
        host_path: vol.path.clone(),
        readonly: vm.read_only.unwrap_or(false),
        propagation,
        tmpfs: false,
        recursive_readonly: false,
        sub_path,
        source_type: source_type(vol.host_type.as_deref()).map_err(|e| Error::InvalidArgument(format!("{field}: {e}")))?,
        image: None,
    })
}

/// One attempt of a container (`field` is its manifest path, e.g.
/// `spec.containers[0]`). The pod's securityContext is folded into the
/// container's, as the kubelet does before it calls the runtime.
pub fn container_config(pod: &Pod, c: &Container, field: &str, volumes: &[HostVolume], attempt: u32) -> Result<ContainerConfig> {
    let s = spec_of(pod);
    let mut envs = vec![("HOSTNAME".to_string(), pod_hostname(pod))];
    for (i, e) in c.env.iter().flatten().enumerate() {
        if e.value_from.is_some() {
            return Err(Error::unsupported(format!("{field}.env[{i}].valueFrom"), "there is no API server"));
        }
        envs.push((e.name.clone(), e.value.clone().unwrap_or_default()));
    }
    let mounts = c
        .volume_mounts
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, vm)| mount(vm, volumes, &format!("{field}.volumeMounts[{i}]")))
        .collect::<Result<Vec<_>>>()?;
    let sc = c.security_context.as_ref();
    let psc = s.security_context.as_ref();
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let mut annotations = BTreeMap::new();
    annotations.insert("io.kubernetes.container.restartCount".to_string(), attempt.to_string());
    Ok(ContainerConfig {
        metadata: ContainerMetadata { name: c.name.clone(), attempt },
        image: ImageSpec { image: c.image.clone().unwrap_or_default() },
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs,
        mounts,
        labels: BTreeMap::from([
            ("io.kubernetes.pod.name".to_string(), pod.metadata.name.clone().unwrap_or_default()),
            ("io.kubernetes.container.name".to_string(), c.name.clone()),
        ]),
        annotations,
        resources: container_resources(c, field)?,
        // Held by the container's monitor for `hull pod attach`.
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        security_context: ContainerSecurityContext {
            capabilities: Capabilities {
                add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
                drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
            },
            privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
            namespace_options: namespace_options(pod),
            run_as_user: sc.and_then(|s| s.run_as_user).or(psc.and_then(|s| s.run_as_user)),
            run_as_group: sc.and_then(|s| s.run_as_group).or(psc.and_then(|s| s.run_as_group)),
            supplemental_groups: psc.and_then(|s| s.supplemental_groups.clone()).unwrap_or_default(),
            readonly_rootfs: sc.and_then(|s| s.read_only_root_filesystem).unwrap_or(false),
            no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
            run_as_non_root: sc.and_then(|s| s.run_as_non_root).or(psc.and_then(|s| s.run_as_non_root)).unwrap_or(false),
            ..Default::default()
        },
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        super::super::manifest::parse(yaml).unwrap().pod
    }

    const POD: &str = "
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: w}}
spec:
  hostname: h1
  shareProcessNamespace: true
  securityContext: {runAsUser: 1000, supplementalGroups: [5], sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: '0'}]}
  dnsConfig: {nameservers: [1.1.1.1], searches: [x.local], options: [{name: ndots, value: '5'}, {name: edns0}]}
  hostAliases: [{ip: 10.1.1.1, hostnames: [a, b]}]
  volumes: [{name: data, emptyDir: {}}, {name: host, hostPath: {path: /srv, type: Directory}}]
  containers:
  - name: a
    image: /srv/rootfs
    command: [sh]
    args: [-c, 'echo hi']
    env: [{name: X, value: '1'}]
    ports: [{containerPort: 80, hostPort: 8080, protocol: UDP}]
    resources: {limits: {cpu: 500m, memory: 128Mi}}
    securityContext: {runAsGroup: 7, capabilities: {add: [NET_ADMIN], drop: [ALL]}, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true}
    volumeMounts: [{name: data, mountPath: /d, subPath: x/y}, {name: host, mountPath: /h, readOnly: true, mountPropagation: HostToContainer}]
  - name: b
    image: /srv/rootfs
    command: ['true']
    resources: {limits: {memory: 64Mi, cpu: '1'}, requests: {cpu: 250m}}
";

    fn vols() -> Vec<HostVolume> {
        vec![
            HostVolume { name: "data".into(), path: "/pods/web/volumes/data".into(), host_type: None },
            HostVolume { name: "host".into(), path: "/srv".into(), host_type: Some("Directory".into()) },
        ]
    }

    #[test]
    fn a_privileged_container_makes_the_sandbox_privileged() {
        let logs = Path::new("/pods/web/logs");
        assert!(!sandbox_config(&pod(POD), "team", "u-1", logs).unwrap().security_context.privileged);
        let init = POD.replace(
            "  containers:\n",
            "  initContainers:\n  - {name: i, image: /srv/rootfs, securityContext: {privileged: true}}\n  containers:\n",
        );
        assert!(sandbox_config(&pod(&init), "team", "u-1", logs).unwrap().security_context.privileged);
    }

    #[test]
    fn the_sandbox_carries_the_pod_level_settings() {
        let p = pod(POD);
        let c = sandbox_config(&p, "team", "u-1", Path::new("/pods/web/logs")).unwrap();
        assert_eq!(c.metadata, SandboxMetadata { name: "web".into(), namespace: "team".into(), uid: "u-1".into(), attempt: 0 });
        assert_eq!(c.hostname, "h1");
        assert_eq!(c.cgroup_parent.as_deref(), Some("/hull-pod-u-1"));
        assert_eq!(c.log_directory.as_deref(), Some(Path::new("/pods/web/logs")));
        let dns = c.dns.unwrap();
        assert_eq!(
            (dns.servers, dns.searches, dns.options),
            (vec!["1.1.1.1".into()], vec!["x.local".into()], vec!["ndots:5".into(), "edns0".into()])
        );
        assert_eq!(c.host_aliases, vec![HostAlias { ip: "10.1.1.1".into(), hostnames: vec!["a".into(), "b".into()] }]);
        assert_eq!(
            c.port_mappings,
            vec![PortMapping { protocol: Protocol::Udp, container_port: 80, host_port: 8080, host_ip: String::new() }]
        );
        assert_eq!(c.sysctls.get("net.ipv4.ip_unprivileged_port_start").map(String::as_str), Some("0"));
        assert_eq!(c.labels.get("app").map(String::as_str), Some("w"));
        let ns = &c.security_context.namespace_options;
        assert_eq!((ns.network, ns.ipc, ns.pid), (NamespaceMode::Pod, NamespaceMode::Pod, NamespaceMode::Pod));
        // The pod cgroup: the sum of the limits; shares 512 + 256.
        let r = c.resources.unwrap();
        assert_eq!((r.memory_limit_in_bytes, r.cpu_quota, r.cpu_period, r.cpu_shares), (192 << 20, 150_000, 100_000, 768));
    }

    #[test]
    fn host_namespaces_and_default_dns() {
        let p = pod(&POD
            .replace("  shareProcessNamespace: true\n", "  hostNetwork: true\n  hostIPC: true\n  hostPID: true\n")
            .replace(
                "  dnsConfig: {nameservers: [1.1.1.1], searches: [x.local], options: [{name: ndots, value: '5'}, {name: edns0}]}\n",
                "",
            )
            .replace(", hostPort: 8080", ""));
        let c = sandbox_config(&p, "default", "u", Path::new("/l")).unwrap();
        let ns = &c.security_context.namespace_options;
        assert_eq!((ns.network, ns.ipc, ns.pid), (NamespaceMode::Node, NamespaceMode::Node, NamespaceMode::Node));
        assert!(c.dns.is_none() && c.port_mappings.is_empty());
        let p = pod(&POD.replace("  shareProcessNamespace: true\n", ""));
        assert_eq!(namespace_options(&p).pid, NamespaceMode::Container);
    }

    #[test]
    fn a_container_attempt_with_volumes_user_and_limits() {
        let p = pod(POD);
        let spec = p.spec.as_ref().unwrap();
        let c = container_config(&p, &spec.containers[0], "spec.containers[0]", &vols(), 2).unwrap();
        assert_eq!(c.metadata, ContainerMetadata { name: "a".into(), attempt: 2 });
        assert_eq!(c.image.image, "/srv/rootfs");
        assert_eq!((c.command.clone(), c.args.clone()), (vec!["sh".to_string()], vec!["-c".to_string(), "echo hi".into()]));
        assert_eq!(c.envs, vec![("HOSTNAME".to_string(), "h1".to_string()), ("X".into(), "1".into())]);
        assert_eq!(
            c.mounts,
            vec![
                Mount {
                    container_path: "/d".into(),
                    host_path: "/pods/web/volumes/data".into(),
                    sub_path: "x/y".into(),
                    ..Default::default()
                },
                Mount {
                    container_path: "/h".into(),
                    host_path: "/srv".into(),
                    readonly: true,
                    propagation: MountPropagation::HostToContainer,
                    source_type: SourceType::Directory,
                    ..Default::default()
                },
            ]
        );
        let sc = &c.security_context;
        assert_eq!((sc.run_as_user, sc.run_as_group, sc.supplemental_groups.clone()), (Some(1000), Some(7), vec![5]));
        assert!(sc.no_new_privs && sc.readonly_rootfs && !sc.privileged && !sc.run_as_non_root);
        assert_eq!(sc.capabilities, Capabilities { add: vec!["NET_ADMIN".into()], drop: vec!["ALL".into()] });
        assert_eq!(sc.namespace_options.pid, NamespaceMode::Pod);
        let r = c.resources.unwrap();
        assert_eq!((r.cpu_quota, r.cpu_period, r.cpu_shares, r.memory_limit_in_bytes), (50_000, 100_000, 512, 128 << 20));
        let b = container_config(&p, &spec.containers[1], "spec.containers[1]", &vols(), 0).unwrap();
        let r = b.resources.unwrap();
        assert_eq!((r.cpu_quota, r.cpu_shares), (100_000, 256));
        assert!(b.mounts.is_empty() && b.log_path.is_empty());
    }

    #[test]
    fn what_cannot_be_translated_is_named() {
        let p = pod(POD);
        let mut c = p.spec.as_ref().unwrap().containers[0].clone();
        let e = container_config(&p, &c, "spec.containers[0]", &vols()[..1], 0).unwrap_err().to_string();
        assert!(e.contains("spec.containers[0].volumeMounts[1].name") && e.contains("host"), "{e}");
        c.volume_mounts.as_mut().unwrap()[0].mount_propagation = Some("Sideways".into());
        let e = container_config(&p, &c, "spec.containers[0]", &vols(), 0).unwrap_err().to_string();
        assert!(e.contains("volumeMounts[0].mountPropagation"), "{e}");
        // (The manifest check refuses it first; translation does not rely on that.)
        let mut c = p.spec.as_ref().unwrap().containers[0].clone();
        c.env.as_mut().unwrap()[0].value_from = Some(Default::default());
        let e = container_config(&p, &c, "spec.containers[0]", &vols(), 0).unwrap_err().to_string();
        assert!(e.contains("spec.containers[0].env[0].valueFrom"), "{e}");
    }
}
