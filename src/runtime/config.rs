//! What a sandbox and a container are made from: hull's own typed configs.
//!
//! They carry what the CRI's `PodSandboxConfig` and `ContainerConfig`
//! carry, in hull's types (no protobuf, no Kubernetes API types): the CRI
//! server fills them from its requests and `hull pod` from a manifest.
//! Fields hull cannot honour are refused by name when the sandbox or
//! container is created, never ignored.
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::id::ContainerId;

/// Who a sandbox is for: the kubelet's pod identity. `namespace/name/attempt`
/// is unique among the sandboxes (the name index refuses a second one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxMetadata {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
}

/// A container's identity within its sandbox; `name/attempt` is unique
/// among the sandbox's containers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMetadata {
    pub name: String,
    pub attempt: u32,
}

/// The pod's resolver config (`/etc/resolv.conf` of its containers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    /// `ndots:5`, `edns0`, ... as written after `options`.
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_cni(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A host port forwarded to the pod (CNI `portMappings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub container_port: u16,
    pub host_port: u16,
    /// Empty: every host address.
    pub host_ip: String,
}

/// An extra `/etc/hosts` line (Kubernetes `hostAliases`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

/// Whose namespace a container is in (CRI `NamespaceMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceMode {
    /// The sandbox's (shared by its containers).
    #[default]
    Pod,
    /// The container's own.
    Container,
    /// The host's.
    Node,
    /// Another container's ([`NamespaceOptions::target_id`]); pid only.
    Target,
}

/// CRI `NamespaceOption`. Defaults: network and IPC of the pod, PID of the
/// container (as the kubelet sends them for a pod without
/// `shareProcessNamespace`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceOptions {
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
    /// The container whose PID namespace a `Target` pid mode joins.
    pub target_id: Option<ContainerId>,
}

impl Default for NamespaceOptions {
    fn default() -> NamespaceOptions {
        NamespaceOptions { network: NamespaceMode::Pod, pid: NamespaceMode::Container, ipc: NamespaceMode::Pod, target_id: None }
    }
}

/// A seccomp (or other LSM) profile choice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityProfile {
    /// No filter.
    #[default]
    Unconfined,
    /// hull's built-in default profile (containerd's RuntimeDefault).
    RuntimeDefault,
    /// An OCI seccomp JSON file on the host.
    Localhost(PathBuf),
}

/// Pod-level security settings (CRI `LinuxSandboxSecurityContext`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSecurityContext {
    pub namespace_options: NamespaceOptions,
    pub privileged: bool,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub readonly_rootfs: bool,
    pub seccomp: SecurityProfile,
}

/// Everything a sandbox is made from (CRI `PodSandboxConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    pub metadata: SandboxMetadata,
    /// The UTS hostname; empty: the pod name.
    pub hostname: String,
    /// Where the containers' logs go (their `log_path` is relative to it).
    /// None: `<state dir>/sandboxes/<id>/logs`.
    pub log_directory: Option<PathBuf>,
    /// None: the host's /etc/resolv.conf.
    pub dns: Option<DnsConfig>,
    pub port_mappings: Vec<PortMapping>,
    pub host_aliases: Vec<HostAlias>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The pod cgroup (cgroupfs path). None: `/hull/pod-<short id>`, made
    /// and removed by the runtime layer.
    pub cgroup_parent: Option<String>,
    /// The pod cgroup is a systemd slice (the systemd cgroup driver): the
    /// holder and the containers get `hull-<id>.scope` below it, as
    /// systemd would name their units. Else (cgroupfs, whatever the
    /// parent's name) `<parent>/<id>`, as containerd's cgroupfs driver.
    /// A record written before this field existed placed children under
    /// a slice as scopes whatever the driver, so a missing field reads as
    /// true: an existing pod's new containers land where its holder is.
    #[serde(default = "scopes_of_older_records")]
    pub cgroup_scopes: bool,
    /// Pod-level limits set on the pod cgroup.
    pub resources: Option<LinuxResources>,
    /// Sysctls of the pod's namespaces (`net.*` needs a pod network
    /// namespace, IPC ones a pod IPC namespace).
    pub sysctls: BTreeMap<String, String>,
    pub security_context: SandboxSecurityContext,
}

fn scopes_of_older_records() -> bool {
    true
}

/// Which image a container runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSpec {
    /// A reference in hull's image store (`busybox:latest`, an id, a
    /// digest), or a local rootfs directory: an absolute path or `dir:PATH`
    /// (which has no image config).
    pub image: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountPropagation {
    #[default]
    Private,
    /// rslave: host mounts appear in the container.
    HostToContainer,
    /// rshared both ways.
    Bidirectional,
}

/// A host path bound into the container (CRI `Mount`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub container_path: String,
    pub host_path: PathBuf,
    pub readonly: bool,
    pub propagation: MountPropagation,
    /// Mount a fresh tmpfs instead of binding `host_path` (hull's
    /// extension for `emptyDir: {medium: Memory}` shared by no one).
    pub tmpfs: bool,
    /// A path beneath `host_path` to bind instead of `host_path` itself
    /// (Kubernetes `subPath`): resolved inside it, symlinks and `..` never
    /// leading out, missing directories made as the kubelet makes them.
    /// Empty: `host_path` itself.
    #[serde(default)]
    pub sub_path: String,
    /// What the source must be, checked on the file that was opened
    /// (Kubernetes hostPath types).
    #[serde(default)]
    pub source_type: SourceType,
    /// Read-only down to every submount of the bind (CRI
    /// `recursive_read_only`; `readonly` is set too).
    #[serde(default)]
    pub recursive_readonly: bool,
    /// An image of the store (id or reference) mounted read-only instead
    /// of `host_path` (Kubernetes image volumes).
    #[serde(default)]
    pub image: Option<String>,
}

/// The kind of file a bind source must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceType {
    #[default]
    Any,
    Directory,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

/// A host device node made in the container (CRI `Device`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub container_path: String,
    pub host_path: PathBuf,
    /// Cgroup permissions: some of "rwm".
    pub permissions: String,
}

/// A hugepage limit of one page size ("2MB", "1GB").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugepageLimit {
    pub page_size: String,
    pub limit: u64,
}

/// CRI `LinuxContainerResources`; 0 (or empty) means "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxResources {
    /// CFS period in microseconds.
    pub cpu_period: i64,
    /// CFS quota in microseconds per period.
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
    pub memory_swap_limit_in_bytes: i64,
    pub oom_score_adj: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub hugepage_limits: Vec<HugepageLimit>,
    /// cgroup v2 files by name (refused on v1).
    pub unified: BTreeMap<String, String>,
}

/// Capabilities added to / dropped from the default set; "ALL" is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// CRI `LinuxContainerSecurityContext`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSecurityContext {
    pub capabilities: Capabilities,
    pub privileged: bool,
    pub namespace_options: NamespaceOptions,
    /// None: the image's user (or the pod's, when the pod sets one).
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    /// A user name looked up in the container's /etc/passwd.
    pub run_as_username: Option<String>,
    pub supplemental_groups: Vec<i64>,
    pub readonly_rootfs: bool,
    pub no_new_privs: bool,
    /// None: hull's default masked paths; Some(empty): none.
    pub masked_paths: Option<Vec<String>>,
    /// None: hull's default read-only paths; Some(empty): none.
    pub readonly_paths: Option<Vec<String>>,
    pub seccomp: SecurityProfile,
    /// Refuse to run as uid 0 (Kubernetes `runAsNonRoot`).
    pub run_as_non_root: bool,
}

/// Everything a container is made from (CRI `ContainerConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub metadata: ContainerMetadata,
    pub image: ImageSpec,
    /// Replaces the image's Entrypoint (Kubernetes `command`).
    pub command: Vec<String>,
    /// Replaces the image's Cmd (Kubernetes `args`).
    pub args: Vec<String>,
    /// Empty: the image's WorkingDir, else "/".
    pub working_dir: String,
    /// `(name, value)`, after the image's Env (same names replace them).
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub devices: Vec<Device>,
    /// The edits of the container's CDI devices, resolved from the spec
    /// files when it was created (a record keeps them as they were then).
    #[serde(default)]
    pub cdi: super::cdi::CdiEdits,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Relative to the sandbox's log directory. Empty:
    /// `<name>/<attempt>.log` (the kubelet's layout).
    pub log_path: String,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    pub resources: Option<LinuxResources>,
    pub security_context: ContainerSecurityContext,
    /// The signal `stop_container` sends first; None: the image's
    /// StopSignal, else SIGTERM.
    pub stop_signal: Option<String>,
    /// Do not bind the sandbox's /etc/hosts, /etc/hostname and
    /// /etc/resolv.conf (the caller mounts its own).
    pub no_etc_files: bool,
}

#[cfg(test)]
mod tests {
    use super::SandboxConfig;

    #[test]
    fn a_record_without_cgroup_scopes_keeps_the_older_placement() {
        let mut v = serde_json::to_value(SandboxConfig::default()).unwrap();
        v.as_object_mut().unwrap().remove("cgroup_scopes");
        let old: SandboxConfig = serde_json::from_value(v).unwrap();
        assert!(old.cgroup_scopes);
        let new: SandboxConfig = serde_json::from_value(serde_json::to_value(SandboxConfig::default()).unwrap()).unwrap();
        assert!(!new.cgroup_scopes);
    }
}
