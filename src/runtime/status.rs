//! What the runtime layer reports: sandbox and container statuses with
//! typed states, stats, exec results, filters, events.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::config::{ContainerMetadata, LinuxResources, NamespaceOptions, SandboxMetadata};
use super::id::{ContainerId, SandboxId};

/// CRI `PodSandboxState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    /// The holder runs and the network is set up.
    Ready,
    /// Stopped (or its holder died): containers cannot be started in it.
    NotReady,
}

/// CRI `ContainerState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Made, its process waits for `start_container`.
    Created,
    Running,
    /// Its process ended (see the exit fields).
    Exited,
    /// The record exists but what runs could not be determined.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxStatus {
    pub id: SandboxId,
    pub metadata: SandboxMetadata,
    pub state: SandboxState,
    pub created_at: SystemTime,
    /// The pod's IPs from CNI, first the primary one; empty with no CNI
    /// network or a host-network pod.
    pub ips: Vec<String>,
    pub namespace_options: NamespaceOptions,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The holder process owning the pod's namespaces (while it runs).
    pub holder_pid: Option<i32>,
    pub cgroup_parent: String,
    pub log_directory: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    pub id: ContainerId,
    pub sandbox_id: SandboxId,
    pub metadata: ContainerMetadata,
    pub state: ContainerState,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub exit_code: Option<i32>,
    /// Completed, Error, OOMKilled (exited) or empty.
    pub reason: String,
    pub message: String,
    /// The image as configured, and what it resolved to (image id or path).
    pub image: String,
    pub image_ref: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub log_path: PathBuf,
    /// The container's init on the host, while it runs.
    pub pid: Option<i32>,
    pub resources: Option<LinuxResources>,
    /// The mounts the container was created with (CRI `mounts`).
    pub mounts: Vec<super::Mount>,
}

/// Which sandboxes `list_sandboxes` returns; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct SandboxFilter {
    pub id: Option<SandboxId>,
    pub state: Option<SandboxState>,
    pub label_selector: BTreeMap<String, String>,
}

/// Which containers `list_containers` returns; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    pub id: Option<ContainerId>,
    pub sandbox_id: Option<SandboxId>,
    pub state: Option<ContainerState>,
    pub label_selector: BTreeMap<String, String>,
}

/// Resource usage of a container (or of a sandbox's cgroup), from cgroups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerStats {
    pub id: String,
    pub timestamp: Option<SystemTime>,
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_core_nanoseconds: u64,
    pub memory_usage_bytes: u64,
    /// Usage minus inactive file pages (what the kubelet evicts on).
    pub memory_working_set_bytes: u64,
    pub memory_rss_bytes: u64,
    pub memory_page_faults: u64,
    pub memory_major_page_faults: u64,
    pub pids: u64,
    /// None without swap accounting.
    pub swap: Option<crate::cgroups::SwapUsage>,
}

/// What `exec_sync` returns. Output beyond [`super::EXEC_OUTPUT_LIMIT`]
/// bytes per stream is cut off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSyncResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// CRI `ContainerEventType` (sandbox events use the sandbox's id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub sandbox_id: SandboxId,
    /// None for an event of the sandbox itself.
    pub container_id: Option<ContainerId>,
    pub at: SystemTime,
}
