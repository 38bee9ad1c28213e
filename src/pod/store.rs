//! Where a pod lives on disk (its record in `<state dir>/pod-records/<key>/`,
//! its runtime files in `<root>/pod-run/pods/<key>/`: see [`super::layout`])
//! and the record its supervisor keeps: only what the runtime layer does not keep (the
//! manifest, the sandbox id, the supervisor, the volumes made on the host,
//! and per container the attempt, restarts, readiness and last exit the
//! kubelet would keep). The sandbox and the containers themselves (holder,
//! network, cgroups, rootfs, processes) are the runtime layer's records.
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SysContext};
use crate::monitor::exit::ExitRecord;
use crate::runtime::{ContainerId, ErrorKind, RuntimeError, SandboxId};

/// A pod's directories and the files in them: `path` (under the state
/// directory) for its record, stop request and logs, `run` (under the
/// root) for its lock and FIFO.
#[derive(Debug, Clone)]
pub struct PodDir {
    pub path: PathBuf,
    pub run: PathBuf,
}

impl PodDir {
    pub fn record(&self) -> PathBuf {
        self.path.join("pod.json")
    }
    /// The sandbox's log directory.
    pub fn logs(&self) -> PathBuf {
        self.path.join("logs")
    }
    /// Kubelet's log layout: `<container>/<restart count>.log`.
    pub fn log(&self, container: &str, attempt: u32) -> PathBuf {
        self.logs().join(container).join(format!("{attempt}.log"))
    }
    /// Held (flock) by the pod's supervisor while it runs: at most one.
    pub fn supervisor_lock(&self) -> PathBuf {
        self.run.join("supervisor.lock")
    }
    /// The durable stop request (a supervisor started later reads it).
    pub fn stop_request(&self) -> PathBuf {
        self.path.join("stop")
    }
    /// The supervisor's own log.
    pub fn supervisor_log(&self) -> PathBuf {
        self.path.join("supervisor.log")
    }
    /// The FIFO a running supervisor listens on for stop calls.
    pub fn stop_fifo(&self) -> PathBuf {
        self.run.join("stop.fifo")
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
    /// Why it is waiting or terminated (CrashLoopBackOff, Completed, Error,
    /// OOMKilled, CreateContainerError, RunContainerError...).
    pub reason: String,
    /// What went wrong, for a reason that is an error.
    #[serde(default)]
    pub message: String,
    pub restart_count: u32,
    /// The runtime container of the current (or last) attempt.
    pub container_id: Option<ContainerId>,
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
    pub namespace: String,
    pub uid: String,
    pub created: String,
    /// Pending, Running, Succeeded, Failed (Kubernetes phases), or Stopped.
    pub phase: String,
    pub manifest: Pod,
    /// The runtime sandbox; None until it is made (a crash before the id
    /// was written is found again by the runtime's name index).
    pub sandbox_id: Option<SandboxId>,
    pub supervisor_pid: i32,
    /// The supervisor's restart back-off base, for one started anew.
    pub backoff_base_ms: u64,
    /// tmpfs emptyDirs mounted on the host (listed before each mount is
    /// made), unmounted on removal.
    pub volume_mounts: Vec<PathBuf>,
    /// The pod's directory under the state directory
    /// (`<state dir>/pods/<uid>`, its emptyDirs in `volumes/`), once made;
    /// removed with the pod.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Why the pod ended, when the kubelet would say (`Evicted`), and how.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The image store the containers' images come from.
    pub image_root: PathBuf,
    pub containers: Vec<ContainerStatus>,
}

/// The key of a pod under a root: its name in `default`, `NS_NAME` in
/// another namespace. Unambiguous since names and namespaces hold no `_`;
/// the pod's directory is named by it.
pub fn pod_key(namespace: &str, name: &str) -> String {
    if namespace == "default" {
        name.to_string()
    } else {
        format!("{namespace}_{name}")
    }
}

/// A key as people write it: `NAME` or `NS/NAME`.
pub fn shown(key: &str) -> String {
    key.replacen('_', "/", 1)
}

impl PodRecord {
    pub fn key(&self) -> String {
        pod_key(&self.namespace, &self.name)
    }

    pub fn is_final(&self) -> bool {
        matches!(self.phase.as_str(), "Succeeded" | "Failed" | "Stopped")
    }

    /// The phase of a pod from its containers (as the runtime last
    /// reported them) and its restart policy, by Kubernetes' rules: once
    /// every app container has ended and the policy restarts none of them
    /// (or an init container failed under `Never`), the pod is Succeeded
    /// (all exited 0) or Failed, whatever a supervisor last wrote (one that
    /// died, or one taking over that has not looked yet). Otherwise the
    /// recorded phase stands (a supervisor started anew carries on from it).
    pub fn derived_phase(&self) -> String {
        use super::backoff::{should_restart, RestartPolicy};
        if self.is_final() {
            return self.phase.clone();
        }
        let policy = RestartPolicy::from_pod_spec(self.manifest.spec.as_ref().and_then(|s| s.restart_policy.as_deref()))
            .unwrap_or(RestartPolicy::Always);
        let code = |c: &ContainerStatus| (c.state == ContainerState::Terminated).then(|| c.last_exit.as_ref().map_or(1, |e| e.exit_code));
        let init_failed = self.containers.iter().filter(|c| c.init).any(|c| code(c).is_some_and(|x| x != 0));
        if init_failed && policy == RestartPolicy::Never {
            return "Failed".into();
        }
        let app: Vec<Option<i32>> = self.containers.iter().filter(|c| !c.init).map(code).collect();
        let ended = !app.is_empty() && app.iter().all(|c| c.is_some_and(|x| !should_restart(policy, x)));
        match ended {
            true if app.iter().all(|c| *c == Some(0)) => "Succeeded".into(),
            true => "Failed".into(),
            false => self.phase.clone(),
        }
    }
}

/// All pods of one state directory and root.
#[derive(Debug, Clone)]
pub struct PodStore {
    /// The records: `<state dir>/pod-records`.
    pub path: PathBuf,
    /// The runtime files: `<root>/pod-run`.
    pub run: PathBuf,
}

impl PodStore {
    pub fn new(roots: &super::layout::PodRoots) -> PodStore {
        PodStore { path: roots.records(), run: roots.run() }
    }

    pub fn dir(&self, name: &str) -> PodDir {
        PodDir { path: self.path.join(name), run: self.run.join("pods").join(name) }
    }

    /// Serialise the commands that change a pod (run, stop, rm): an
    /// exclusive flock on a file outside the pod's directory (which rm
    /// removes), kept for the next command.
    pub fn lock(&self, name: &str) -> Result<nix::fcntl::Flock<std::fs::File>> {
        crate::oci::state::validate_id(name)?;
        let dir = self.run.join("pod-locks");
        std::fs::create_dir_all(&dir).sys_context(|| format!("create {}", dir.display()))?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{name}.lock")))
            .sys_context(|| format!("open the lock of pod {}", shown(name)))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| Error::sys("lock the pod", e))
    }

    /// Make the pod's directories; the mkdir of the record's is the lock
    /// against a second pod of the same name. The run directory is made
    /// first (a `pod run` killed between the two leaves only an empty one,
    /// which the next run of the name reuses and `pod rm` removes).
    pub fn claim(&self, name: &str) -> Result<PodDir> {
        crate::oci::state::validate_id(name)?;
        std::fs::create_dir_all(&self.path).sys_context(|| format!("create {}", self.path.display()))?;
        let dir = self.dir(name);
        std::fs::create_dir_all(&dir.run).sys_context(|| format!("create {}", dir.run.display()))?;
        match std::fs::create_dir(&dir.path) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::Runtime(RuntimeError::new(ErrorKind::AlreadyExists, format!("pod {:?} already exists", shown(name)))))
            }
            Err(e) => Err(Error::sys(format!("create {}", dir.path.display()), e)),
        }
    }

    /// Make the pod's run directory again for a record that has lost it;
    /// only by a caller holding the pod's lock (so not after a removal).
    pub fn make_run_dir(&self, dir: &PodDir) -> Result<()> {
        std::fs::create_dir_all(&dir.run).sys_context(|| format!("create {}", dir.run.display()))
    }

    /// Remove the pod's directories: the record's first (a removal cut
    /// short between the two leaves a run directory without a record,
    /// which `pod rm` and the next `pod run` of the name take as one).
    pub fn remove_dirs(&self, name: &str) -> Result<()> {
        let dir = self.dir(name);
        for d in [&dir.path, &dir.run] {
            match std::fs::remove_dir_all(d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::sys(format!("remove {}", d.display()), e)),
                _ => {}
            }
        }
        Ok(())
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

    /// Write the record atomically and durably (write, fsync, rename).
    pub fn save(&self, rec: &PodRecord) -> Result<()> {
        crate::runtime::record::write_atomic(&self.dir(&rec.key()).record(), rec)?;
        Ok(())
    }

    /// The pod's directories that hold a record (a claimed directory
    /// without one is a `pod run` cut short before its first write).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(policy: &str, codes: &[Option<i32>]) -> PodRecord {
        let names: Vec<_> = (0..codes.len()).map(|i| serde_json::json!({"name": format!("c{i}")})).collect();
        let manifest: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"restartPolicy": policy, "containers": names}
        }))
        .unwrap();
        let mut containers = super::super::supervisor::initial_statuses(&manifest);
        for (c, code) in containers.iter_mut().zip(codes) {
            c.state = if code.is_some() { ContainerState::Terminated } else { ContainerState::Running };
            c.last_exit = code.map(|exit_code| ExitRecord {
                exit_code,
                signal: None,
                started_at: String::new(),
                finished_at: String::new(),
                oom_killed: false,
                reason: String::new(),
            });
        }
        PodRecord {
            name: "p".into(),
            namespace: "default".into(),
            uid: "u".into(),
            created: String::new(),
            phase: "Running".into(),
            manifest,
            sandbox_id: None,
            supervisor_pid: 1,
            backoff_base_ms: 100,
            volume_mounts: Vec::new(),
            image_root: PathBuf::new(),
            containers,
            state_dir: None,
            reason: String::new(),
            message: String::new(),
        }
    }

    #[test]
    fn a_pod_without_supervisor_gets_its_phase_from_its_containers() {
        for (policy, codes, want) in [
            ("Never", &[Some(0), Some(0)][..], "Succeeded"),
            ("Never", &[Some(0), Some(3)], "Failed"),
            ("Never", &[Some(0), None], "Running"),
            ("OnFailure", &[Some(0), Some(0)], "Succeeded"),
            // OnFailure restarts the failed one: not over.
            ("OnFailure", &[Some(0), Some(3)], "Running"),
            ("Always", &[Some(0), Some(0)], "Running"),
        ] {
            assert_eq!(pod(policy, codes).derived_phase(), want, "{policy} {codes:?}");
        }
        let mut init_failed = pod("Never", &[None]);
        init_failed.containers[0].state = ContainerState::Waiting;
        init_failed.containers.insert(0, pod("Never", &[Some(1)]).containers.remove(0));
        init_failed.containers[0].init = true;
        assert_eq!(init_failed.derived_phase(), "Failed");
        let mut stopped = pod("Never", &[Some(0)]);
        stopped.phase = "Stopped".into();
        assert_eq!(stopped.derived_phase(), "Stopped");
    }
}
