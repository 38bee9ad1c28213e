//! The pod supervisor: one detached process per pod (`hull pod supervise`)
//! that runs the init containers in order, starts the app containers,
//! restarts them as restartPolicy says with kubelet's back-off, and stops
//! them on request. It writes the pod record after every change; the
//! containers themselves are watched by their monitors, whose exit files
//! are the truth about exits (so a killed supervisor loses nothing).
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Container;
use nix::sys::signal::Signal;

use super::bundle::{self, BundleContext};
use super::store::{ContainerState, ContainerStatus, PodDir, PodRecord, PodStore};
use super::volumes::HostVolume;
use crate::error::{Error, Result};
use crate::monitor::{self, exit::ExitRecord, MonitorSpec};
use crate::oci::lifecycle;
use crate::oci::state::StateRoot;

/// Restart back-off as kubelet does it: the first restart at once, then
/// base, 2×base, ... capped at 5 minutes (base 10 s).
pub fn backoff(restarts: u32, base: Duration) -> Duration {
    if restarts == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32 << (restarts - 1).min(16);
    (base * factor).min(Duration::from_secs(300))
}

/// Whether a container that exited with `code` is restarted.
pub fn should_restart(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

/// The OCI id of one attempt of a container.
pub fn container_id(pod: &str, container: &str, attempt: u32) -> String {
    format!("{pod}_{container}_{attempt}")
}

/// What the supervisor tracks per container beyond the record.
struct Tracked {
    spec: Container,
    init: bool,
    /// When a waiting container may start again.
    restart_at: Option<Instant>,
}

pub struct Supervisor<'a> {
    pub root: &'a StateRoot,
    pub store: &'a PodStore,
    pub dir: PodDir,
    pub rec: PodRecord,
    pub volumes: Vec<HostVolume>,
    pub backoff_base: Duration,
    /// The hull binary monitors are started from.
    pub hull: PathBuf,
}

impl Supervisor<'_> {
    fn save(&self) {
        if let Err(e) = self.store.save(&self.rec) {
            log::error!("pod {}: {e}", self.rec.name);
        }
    }

    fn policy(&self) -> String {
        self.rec.manifest.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into())
    }

    fn grace(&self) -> Duration {
        let secs = self.rec.manifest.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        Duration::from_secs(secs.max(0) as u64)
    }

    fn stop_requested(&self) -> bool {
        self.dir.stop_request().exists()
    }

    /// Start attempt `attempt` of container `idx` (index into rec.containers).
    fn start(&mut self, idx: usize, spec: &Container) -> Result<()> {
        let attempt = self.rec.containers[idx].attempt;
        let name = spec.name.clone();
        let id = container_id(&self.rec.name, &name, attempt);
        let attempt_dir = self.dir.attempt(&name, attempt);
        let field = format!("spec.{}[{}]", if self.rec.containers[idx].init { "initContainers" } else { "containers" }, name);
        let ctx = BundleContext {
            pod: &self.rec.manifest,
            dir: &self.dir,
            holder: self.rec.holder.as_ref(),
            volumes: &self.volumes,
            cgroup_parent: &self.rec.cgroup_parent,
        };
        let prepared = bundle::prepare(&ctx, spec, &field, &attempt_dir, &mut self.rec.host_mounts)?;
        let log_path = self.dir.log(&name, attempt);
        let mspec = MonitorSpec {
            state_root: self.root.path.clone(),
            id: id.clone(),
            bundle: prepared.bundle,
            log_path,
            exit_file: attempt_dir.join("exit.json"),
        };
        let c = &mut self.rec.containers[idx];
        c.container_id = Some(id);
        match monitor::spawn(&mspec, &self.hull) {
            Ok(_) => {
                c.state = ContainerState::Running;
                c.reason = String::new();
                c.ready = true;
                c.started_at = Some(humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string());
                Ok(())
            }
            Err(e) => {
                c.state = ContainerState::Terminated;
                c.reason = "StartError".into();
                c.last_exit = None;
                Err(e)
            }
        }
    }

    /// Remove what an attempt left: the OCI container and its rootfs mount.
    fn cleanup_attempt(&mut self, idx: usize) {
        let c = &self.rec.containers[idx];
        if let Some(id) = &c.container_id {
            let _ = lifecycle::delete(self.root, id, true);
        }
        let rootfs = self.dir.attempt(&c.name, c.attempt).join("rootfs");
        if self.rec.host_mounts.contains(&rootfs) {
            let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
            self.rec.host_mounts.retain(|p| *p != rootfs);
        }
    }

    fn exit_of(&self, idx: usize) -> Option<ExitRecord> {
        let c = &self.rec.containers[idx];
        ExitRecord::load(&self.dir.attempt(&c.name, c.attempt).join("exit.json"))
    }

    /// Stop a running container: SIGTERM, the grace period, then SIGKILL.
    pub fn stop_container(&mut self, idx: usize, grace: Duration) {
        let Some(id) = self.rec.containers[idx].container_id.clone() else { return };
        if self.rec.containers[idx].state != ContainerState::Running {
            return;
        }
        let _ = lifecycle::kill(self.root, &id, Signal::SIGTERM, false);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && self.exit_of(idx).is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.exit_of(idx).is_none() {
            let _ = lifecycle::kill(self.root, &id, Signal::SIGKILL, true);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && self.exit_of(idx).is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.note_exit(idx);
    }

    /// Record an exit seen in the monitor's file.
    fn note_exit(&mut self, idx: usize) -> bool {
        let Some(exit) = self.exit_of(idx) else { return false };
        let c = &mut self.rec.containers[idx];
        c.state = ContainerState::Terminated;
        c.reason = exit.reason.clone();
        c.ready = false;
        c.last_exit = Some(exit);
        true
    }

    /// Run the pod to its end (or until stopped).
    pub fn run(&mut self) -> Result<()> {
        let spec = self.rec.manifest.spec.clone().expect("validated");
        let mut tracked: Vec<Tracked> = Vec::new();
        for c in spec.init_containers.iter().flatten() {
            tracked.push(Tracked { spec: c.clone(), init: true, restart_at: None });
        }
        for c in &spec.containers {
            tracked.push(Tracked { spec: c.clone(), init: false, restart_at: None });
        }
        self.rec.phase = "Pending".into();
        self.save();
        // Init containers, one at a time, each to success.
        for idx in 0..tracked.len() {
            if !tracked[idx].init {
                continue;
            }
            loop {
                if self.stop_requested() {
                    return self.finish_stop();
                }
                if let Err(e) = self.start(idx, &tracked[idx].spec.clone()) {
                    log::error!("{e}");
                    self.rec.phase = "Failed".into();
                    self.save();
                    return Err(e);
                }
                self.save();
                while self.exit_of(idx).is_none() {
                    if self.stop_requested() {
                        return self.finish_stop();
                    }
                    self.reap_monitors();
                    std::thread::sleep(Duration::from_millis(50));
                }
                self.note_exit(idx);
                let code = self.rec.containers[idx].last_exit.as_ref().map_or(1, |e| e.exit_code);
                self.cleanup_attempt(idx);
                self.save();
                if code == 0 {
                    break;
                }
                if self.policy() == "Never" {
                    self.rec.phase = "Failed".into();
                    self.save();
                    return Ok(());
                }
                self.bump_attempt(idx);
                std::thread::sleep(backoff(self.rec.containers[idx].restart_count, self.backoff_base));
            }
        }
        // App containers.
        for idx in 0..tracked.len() {
            if tracked[idx].init {
                continue;
            }
            if let Err(e) = self.start(idx, &tracked[idx].spec.clone()) {
                log::error!("{e}");
            }
        }
        self.rec.phase = "Running".into();
        self.save();
        loop {
            if self.stop_requested() {
                return self.finish_stop();
            }
            self.reap_monitors();
            let mut changed = false;
            let mut active = false;
            for idx in 0..tracked.len() {
                if tracked[idx].init {
                    continue;
                }
                match self.rec.containers[idx].state {
                    ContainerState::Running => {
                        active = true;
                        if self.note_exit(idx) {
                            changed = true;
                            let code = self.rec.containers[idx].last_exit.as_ref().map_or(1, |e| e.exit_code);
                            if should_restart(&self.policy(), code) {
                                let wait = backoff(self.rec.containers[idx].restart_count, self.backoff_base);
                                tracked[idx].restart_at = Some(Instant::now() + wait);
                                let c = &mut self.rec.containers[idx];
                                c.state = ContainerState::Waiting;
                                if !wait.is_zero() {
                                    c.reason = "CrashLoopBackOff".into();
                                }
                            }
                        }
                    }
                    ContainerState::Waiting => {
                        active = true;
                        if tracked[idx].restart_at.is_some_and(|t| Instant::now() >= t) {
                            tracked[idx].restart_at = None;
                            self.cleanup_attempt(idx);
                            self.bump_attempt(idx);
                            if let Err(e) = self.start(idx, &tracked[idx].spec.clone()) {
                                log::error!("{e}");
                            }
                            changed = true;
                        }
                    }
                    ContainerState::Terminated => {}
                }
            }
            if !active {
                let ok = self.rec.containers.iter().filter(|c| !c.init).all(|c| c.last_exit.as_ref().is_some_and(|e| e.exit_code == 0));
                self.rec.phase = if ok { "Succeeded" } else { "Failed" }.into();
                self.save();
                return Ok(());
            }
            if changed {
                self.save();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn bump_attempt(&mut self, idx: usize) {
        let c = &mut self.rec.containers[idx];
        c.attempt += 1;
        c.restart_count += 1;
    }

    fn finish_stop(&mut self) -> Result<()> {
        let grace = self.grace();
        for idx in 0..self.rec.containers.len() {
            self.stop_container(idx, grace);
        }
        self.rec.phase = "Stopped".into();
        self.save();
        Ok(())
    }

    /// Monitors are our children until they exit: reap them.
    fn reap_monitors(&self) {
        while let Ok(s) = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            if s == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
    }
}

/// Fresh statuses for every container of the manifest.
pub fn initial_statuses(rec_manifest: &k8s_openapi::api::core::v1::Pod) -> Vec<ContainerStatus> {
    let spec = rec_manifest.spec.as_ref().expect("validated");
    let mk = |c: &Container, init: bool| ContainerStatus {
        name: c.name.clone(),
        init,
        state: ContainerState::Waiting,
        reason: "ContainerCreating".into(),
        restart_count: 0,
        container_id: None,
        attempt: 0,
        ready: false,
        started_at: None,
        last_exit: None,
    };
    spec.init_containers.iter().flatten().map(|c| mk(c, true)).chain(spec.containers.iter().map(|c| mk(c, false))).collect()
}

/// Refuse duplicate container names (they name directories and ids).
pub fn check_names(pod: &k8s_openapi::api::core::v1::Pod) -> Result<()> {
    let spec = pod.spec.as_ref().expect("validated");
    let mut seen = std::collections::HashSet::new();
    for c in spec.init_containers.iter().flatten().chain(spec.containers.iter()) {
        crate::oci::state::validate_id(&c.name)
            .map_err(|_| Error::InvalidArgument(format!("container name {:?} is not valid", c.name)))?;
        if !seen.insert(c.name.clone()) {
            return Err(Error::InvalidArgument(format!("container name {:?} is used twice", c.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_backoff() {
        let base = Duration::from_secs(10);
        assert_eq!(backoff(0, base), Duration::ZERO);
        assert_eq!(backoff(1, base), Duration::from_secs(10));
        assert_eq!(backoff(3, base), Duration::from_secs(40));
        assert_eq!(backoff(30, base), Duration::from_secs(300));
    }

    #[test]
    fn restart_policies() {
        assert!(should_restart("Always", 0));
        assert!(!should_restart("OnFailure", 0));
        assert!(should_restart("OnFailure", 1));
        assert!(!should_restart("Never", 1));
    }
}
