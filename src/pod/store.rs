//! Where a pod lives on disk (`<root>/pods/<name>/`) and the record its
//! supervisor keeps up to date there.
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SysContext};
use crate::monitor::exit::ExitRecord;
use crate::runtime::{ErrorKind, RuntimeError};

/// A pod's directory and the files in it.
#[derive(Debug, Clone)]
pub struct PodDir {
    pub path: PathBuf,
}

impl PodDir {
    pub fn record(&self) -> PathBuf {
        self.path.join("pod.json")
    }
    pub fn volume(&self, name: &str) -> PathBuf {
        self.path.join("volumes").join(name)
    }
    pub fn etc(&self) -> PathBuf {
        self.path.join("etc")
    }
    /// One attempt (run) of a container.
    pub fn attempt(&self, container: &str, attempt: u32) -> PathBuf {
        self.path.join("containers").join(format!("{container}-{attempt}"))
    }
    /// Kubelet's log layout: `<container>/<restart count>.log`.
    pub fn log(&self, container: &str, attempt: u32) -> PathBuf {
        self.path.join("logs").join(container).join(format!("{attempt}.log"))
    }
    /// Held (flock) by the pod's supervisor while it runs: at most one.
    pub fn supervisor_lock(&self) -> PathBuf {
        self.path.join("supervisor.lock")
    }
    pub fn stop_request(&self) -> PathBuf {
        self.path.join("stop")
    }
}

/// The namespaces holder of a pod (see `sandbox`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    pub start_time: u64,
}

impl Holder {
    pub fn alive(&self) -> bool {
        crate::oci::state::process_start_time(self.pid) == Some(self.start_time)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ContainerState {
    Waiting,
    Running,
    Terminated,
}

/// What `hull pod ps` shows for one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub init: bool,
    pub state: ContainerState,
    /// Why it is waiting or terminated (CrashLoopBackOff, Completed, Error, OOMKilled...).
    pub reason: String,
    pub restart_count: u32,
    /// The current (or last) attempt's OCI container id.
    pub container_id: Option<String>,
    pub attempt: u32,
    pub ready: bool,
    pub started_at: Option<String>,
    pub last_exit: Option<ExitRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    pub name: String,
    /// The pod's namespace (`default` unless the manifest or `-n` says).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub uid: String,
    pub created: String,
    /// Pending, Running, Succeeded, Failed (Kubernetes phases), or Stopped.
    pub phase: String,
    pub manifest: Pod,
    pub holder: Option<Holder>,
    pub supervisor_pid: i32,
    /// The supervisor's restart back-off base, for one started anew.
    #[serde(default = "default_backoff_ms")]
    pub backoff_base_ms: u64,
    pub ips: Vec<String>,
    /// CNI attachment to undo on removal (opaque to everything but network).
    #[serde(default)]
    pub network: Option<serde_json::Value>,
    /// Mounts on the host that removal must undo (overlays, tmpfs volumes).
    pub host_mounts: Vec<PathBuf>,
    pub cgroup_parent: String,
    /// The image store the containers' images come from.
    #[serde(default)]
    pub image_root: PathBuf,
    pub containers: Vec<ContainerStatus>,
}

fn default_backoff_ms() -> u64 {
    10_000
}

fn default_namespace() -> String {
    "default".into()
}

/// The key of a pod under a root: its name in `default`, `NS_NAME` in
/// another namespace. Unambiguous since names and namespaces hold no `_`;
/// the pod's directory and its containers' OCI ids are made from it.
pub fn pod_key(namespace: &str, name: &str) -> String {
    if namespace == "default" {
        name.to_string()
    } else {
        format!("{namespace}_{name}")
    }
}

/// A key as people write it: `NAME` or `NS/NAME`.
fn shown(key: &str) -> String {
    key.replacen('_', "/", 1)
}

impl PodRecord {
    pub fn key(&self) -> String {
        pod_key(&self.namespace, &self.name)
    }
}

/// All pods under one hull root.
#[derive(Debug, Clone)]
pub struct PodStore {
    pub path: PathBuf,
}

impl PodStore {
    pub fn new(root: &Path) -> PodStore {
        PodStore { path: root.join("pods") }
    }

    pub fn dir(&self, name: &str) -> PodDir {
        PodDir { path: self.path.join(name) }
    }

    /// Make the pod's directory; the mkdir is the lock against a second pod
    /// of the same name.
    pub fn claim(&self, name: &str) -> Result<PodDir> {
        crate::oci::state::validate_id(name)?;
        std::fs::create_dir_all(&self.path).sys_context(|| format!("create {}", self.path.display()))?;
        let dir = self.dir(name);
        match std::fs::create_dir(&dir.path) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::Runtime(RuntimeError::new(ErrorKind::AlreadyExists, format!("pod {:?} already exists", shown(name)))))
            }
            Err(e) => Err(Error::sys(format!("create {}", dir.path.display()), e)),
        }
    }

    pub fn load(&self, name: &str) -> Result<PodRecord> {
        crate::oci::state::validate_id(name)?;
        let path = self.dir(name).record();
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Runtime(RuntimeError::not_found(format!("pod {:?} does not exist", shown(name)))),
            _ => Error::sys(format!("read {}", path.display()), e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::InvalidState(format!("corrupt {}: {e}", path.display())))
    }

    pub fn save(&self, rec: &PodRecord) -> Result<()> {
        let path = self.dir(&rec.key()).record();
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(rec).map_err(|e| Error::InvalidState(e.to_string()))?;
        std::fs::write(&tmp, bytes).sys_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).sys_context(|| format!("rename {}", path.display()))
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.path)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("pod.json").exists())
            .filter_map(|e| e.file_name().to_str().map(String::from))
            .collect();
        names.sort();
        names
    }
}
