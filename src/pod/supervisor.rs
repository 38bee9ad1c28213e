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

use super::backoff::{should_restart, Backoff, BackoffConfig, RestartPolicy};
use super::bundle::{self, BundleContext};
use super::probe::{self, ContainerProbes, ProbeSpec, ProbeTarget, Transition};
use super::store::{ContainerState, ContainerStatus, PodDir, PodRecord, PodStore};
use super::volumes::HostVolume;
use crate::error::{Error, Result};
use crate::monitor::{self, exit::ExitRecord, MonitorSpec};
use crate::oci::lifecycle;
use crate::oci::state::StateRoot;

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
    backoff: Backoff,
    probe_specs: Vec<ProbeSpec>,
    /// The running attempt's probes.
    probes: Option<ContainerProbes>,
    /// A stop in progress (a failed liveness probe): SIGKILL is due then.
    kill_at: Option<Instant>,
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

    fn policy(&self) -> RestartPolicy {
        RestartPolicy::from_pod_spec(self.rec.manifest.spec.as_ref().and_then(|s| s.restart_policy.as_deref()))
            .unwrap_or(RestartPolicy::Always)
    }

    fn backoff_config(&self) -> BackoffConfig {
        BackoffConfig { initial: self.backoff_base, cap: self.backoff_base * 30, reset_after: self.backoff_base * 60 }
    }

    fn grace(&self) -> Duration {
        super::validate::grace_period(self.rec.manifest.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
    }

    fn stop_requested(&self) -> bool {
        self.dir.stop_request().exists()
    }

    /// Start attempt `attempt` of container `idx` (index into rec.containers).
    fn start(&mut self, idx: usize, spec: &Container) -> Result<()> {
        let attempt = self.rec.containers[idx].attempt;
        let name = spec.name.clone();
        let id = container_id(&self.rec.key(), &name, attempt);
        let attempt_dir = self.dir.attempt(&name, attempt);
        let field = format!("spec.{}[{}]", if self.rec.containers[idx].init { "initContainers" } else { "containers" }, name);
        let ctx = BundleContext {
            pod: &self.rec.manifest,
            image_root: &self.rec.image_root,
            dir: &self.dir,
            holder: self.rec.holder.as_ref(),
            volumes: &self.volumes,
            cgroup_parent: &self.rec.cgroup_parent,
        };
        let bundle = bundle::prepare(&ctx, spec, &field, &attempt_dir, &mut self.rec.host_mounts)?;
        let log_path = self.dir.log(&name, attempt);
        let mspec = MonitorSpec {
            state_root: self.root.path.clone(),
            id: id.clone(),
            bundle,
            log_path,
            exit_file: attempt_dir.join("exit.json"),
            hold_created: false,
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
        let attempt_dir = self.dir.attempt(&c.name, c.attempt);
        bundle::unmount_attempt(&self.rec.image_root, &attempt_dir, &mut self.rec.host_mounts);
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
        let config = self.backoff_config();
        for c in spec.init_containers.iter().flatten() {
            tracked.push(Tracked {
                spec: c.clone(),
                init: true,
                restart_at: None,
                backoff: Backoff::new(config),
                probe_specs: Vec::new(),
                probes: None,
                kill_at: None,
            });
        }
        for c in &spec.containers {
            // Checked by `pod run` already; a failure here is a bug, not input.
            let probe_specs = probe::specs_of(c).unwrap_or_default();
            tracked.push(Tracked {
                spec: c.clone(),
                init: false,
                restart_at: None,
                backoff: Backoff::new(config),
                probe_specs,
                probes: None,
                kill_at: None,
            });
        }
        // A supervisor that takes over from a dead one finds containers
        // already done or running in the record: it adopts them.
        let init_done = |s: &Self, idx: usize| {
            let c = &s.rec.containers[idx];
            c.state == ContainerState::Terminated && c.last_exit.as_ref().is_some_and(|e| e.exit_code == 0)
        };
        if self.rec.phase != "Running" {
            self.rec.phase = "Pending".into();
        }
        self.save();
        // Init containers, one at a time, each to success.
        // idx indexes both `tracked` and the record's containers.
        #[allow(clippy::needless_range_loop)]
        for idx in 0..tracked.len() {
            if !tracked[idx].init || init_done(self, idx) || self.rec.phase == "Running" {
                continue;
            }
            loop {
                if self.stop_requested() {
                    return self.finish_stop();
                }
                let adopted = self.rec.containers[idx].state == ContainerState::Running;
                if adopted {
                    // Its exit (maybe long past) is in the monitor's file.
                } else if let Err(e) = self.start(idx, &tracked[idx].spec.clone()) {
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
                if self.policy() == RestartPolicy::Never {
                    self.rec.phase = "Failed".into();
                    self.save();
                    return Ok(());
                }
                self.bump_attempt(idx);
                // The back-off in slices: a `pod stop` meanwhile is not held up.
                let until = Instant::now() + tracked[idx].backoff.restart_delay(Instant::now());
                while Instant::now() < until {
                    if self.stop_requested() {
                        return self.finish_stop();
                    }
                    std::thread::sleep(until.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)));
                }
            }
        }
        // App containers.
        // idx indexes both `tracked` and the record's containers.
        #[allow(clippy::needless_range_loop)]
        for idx in 0..tracked.len() {
            if tracked[idx].init {
                continue;
            }
            match self.rec.containers[idx].state {
                ContainerState::Running => {
                    // Adopted: still running (or its exit is seen below).
                    self.arm_probes(&mut tracked[idx], idx);
                    continue;
                }
                // Adopted while waiting to restart: restart when due.
                ContainerState::Waiting if self.rec.containers[idx].container_id.is_some() => {
                    tracked[idx].restart_at = Some(Instant::now());
                    continue;
                }
                ContainerState::Terminated if self.rec.containers[idx].container_id.is_some() => continue,
                _ => {}
            }
            match self.start(idx, &tracked[idx].spec.clone()) {
                Ok(()) => self.arm_probes(&mut tracked[idx], idx),
                Err(e) => log::error!("{e}"),
            }
        }
        self.rec.phase = "Running".into();
        self.save();
        // From here on the supervisor mostly sleeps and polls.
        crate::linux::syscall::trim_resident_code();
        loop {
            if self.stop_requested() {
                return self.finish_stop();
            }
            self.reap_monitors();
            let mut changed = false;
            let mut active = false;
            // idx indexes both `tracked` and the record's containers.
            #[allow(clippy::needless_range_loop)]
            for idx in 0..tracked.len() {
                if tracked[idx].init {
                    continue;
                }
                match self.rec.containers[idx].state {
                    ContainerState::Running => {
                        active = true;
                        if !self.note_exit(idx) {
                            if tracked[idx].kill_at.is_some_and(|t| Instant::now() >= t) {
                                // The grace period of a probe-failure stop is over.
                                tracked[idx].kill_at = None;
                                if let Some(id) = &self.rec.containers[idx].container_id {
                                    let _ = lifecycle::kill(self.root, id, Signal::SIGKILL, true);
                                }
                            } else if tracked[idx].kill_at.is_none() {
                                changed |= self.run_probes(&mut tracked[idx], idx);
                            }
                        }
                        if self.rec.containers[idx].state == ContainerState::Terminated {
                            changed = true;
                            tracked[idx].probes = None;
                            tracked[idx].kill_at = None;
                            let code = self.rec.containers[idx].last_exit.as_ref().map_or(1, |e| e.exit_code);
                            if should_restart(self.policy(), code) {
                                let wait = tracked[idx].backoff.restart_delay(Instant::now());
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
                            match self.start(idx, &tracked[idx].spec.clone()) {
                                Ok(()) => self.arm_probes(&mut tracked[idx], idx),
                                Err(e) => log::error!("{e}"),
                            }
                            changed = true;
                        }
                    }
                    ContainerState::Terminated => {}
                }
            }
            if !active {
                let ok = self
                    .rec
                    .containers
                    .iter()
                    .filter(|c| !c.init)
                    .all(|c| c.last_exit.as_ref().is_some_and(|e| e.exit_code == 0));
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

    /// A container just started: its probes begin (readiness starts false).
    fn arm_probes(&mut self, t: &mut Tracked, idx: usize) {
        if t.probe_specs.is_empty() {
            return;
        }
        let probes = ContainerProbes::new(&t.probe_specs, Instant::now());
        self.rec.containers[idx].ready = probes.ready();
        t.probes = Some(probes);
    }

    /// Run the probes that are due; a failed liveness (or startup) probe
    /// stops the container, which is then restarted as the policy says.
    fn run_probes(&mut self, t: &mut Tracked, idx: usize) -> bool {
        let Some(probes) = t.probes.as_mut() else { return false };
        let now = Instant::now();
        let due = probes.due(now);
        if due.is_empty() {
            return false;
        }
        let Some(id) = self.rec.containers[idx].container_id.clone() else { return false };
        let netns = match self.rec.holder {
            Some(h) if !self.rec.manifest.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) => {
                PathBuf::from(super::sandbox::ns_path(&h, "net"))
            }
            _ => PathBuf::from("/proc/self/ns/net"),
        };
        let pod_ip = self.rec.ips.first().and_then(|ip| ip.split('/').next()?.parse().ok());
        let mut changed = false;
        for kind in due {
            let Some(spec) = t.probe_specs.iter().find(|s| s.kind == kind).cloned() else { continue };
            let target = ProbeTarget { root: self.root, hull: &self.hull, container_id: &id, netns: &netns, pod_ip };
            let outcome = match probe::run(&spec.action, spec.timing.timeout, &target) {
                Ok(o) => o,
                Err(e) => {
                    log::warn!("pod {} container {}: {} not checked: {e}", self.rec.name, t.spec.name, kind.field());
                    continue;
                }
            };
            match probes.record(kind, Instant::now(), &outcome) {
                Some(Transition::Failed { message }) => {
                    log::warn!("pod {} container {}: {} failed: {message}", self.rec.name, t.spec.name, kind.field());
                    let grace = spec.termination_grace_period.unwrap_or_else(|| self.grace());
                    self.rec.containers[idx].ready = false;
                    // SIGTERM now, SIGKILL when the grace period is over
                    // (the main loop): the other containers' probes and a
                    // `pod stop` go on meanwhile.
                    if let Some(id) = &self.rec.containers[idx].container_id {
                        let _ = lifecycle::kill(self.root, id, Signal::SIGTERM, false);
                    }
                    t.kill_at = Some(Instant::now() + grace);
                    return true;
                }
                Some(Transition::Ready) => {
                    self.rec.containers[idx].ready = true;
                    changed = true;
                }
                Some(Transition::NotReady { .. }) => {
                    self.rec.containers[idx].ready = false;
                    changed = true;
                }
                Some(Transition::Started) | None => {}
            }
        }
        changed
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
            self.note_exit(idx);
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
    spec.init_containers
        .iter()
        .flatten()
        .map(|c| mk(c, true))
        .chain(spec.containers.iter().map(|c| mk(c, false)))
        .collect()
}

/// Pod, namespace and container names as Kubernetes validates them, and
/// no container name twice (they name directories and ids).
pub fn check_names(pod: &k8s_openapi::api::core::v1::Pod) -> Result<()> {
    let spec = pod.spec.as_ref().expect("validated");
    if let Some(name) = &pod.metadata.name {
        super::names::check_subdomain("metadata.name", name)?;
    }
    if let Some(ns) = &pod.metadata.namespace {
        super::names::check_label("metadata.namespace", ns)?;
    }
    let mut seen = std::collections::HashSet::new();
    for c in spec.init_containers.iter().flatten().chain(spec.containers.iter()) {
        super::names::check_label("container name", &c.name)?;
        if !seen.insert(c.name.clone()) {
            return Err(Error::InvalidArgument(format!("container name {:?} is used twice", c.name)));
        }
    }
    Ok(())
}
