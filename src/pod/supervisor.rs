//! The pod supervisor: one detached process per pod (`hull pod supervise`)
//! doing what the kubelet does for a pod, on the runtime layer: it runs
//! the init containers in order, creates and starts the app containers
//! (each attempt a new runtime container, numbered as the kubelet numbers
//! attempts), restarts them as restartPolicy says with kubelet's back-off,
//! probes them, and stops them on request. It writes the pod record after
//! every change; the runtime's records and the monitors' exit records are
//! the truth about the containers, so a killed supervisor loses nothing.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Container;

use super::backoff::{should_restart, Backoff, BackoffConfig, RestartPolicy};
use super::eviction::{self, DiskLimit};
use super::probe::{self, ContainerProbes, ProbeSpec, ProbeTarget, Transition};
use super::store::{ContainerState, ContainerStatus, PodDir, PodRecord, PodStore};
use super::translate::{self, HostVolume};
use super::wake::Wakeups;
use crate::error::{Error, Result};
use crate::monitor::exit::ExitRecord;
use crate::runtime::{self, Runtime, SandboxId};

/// What the supervisor tracks per container beyond the record.
struct Tracked {
    spec: Container,
    field: String,
    init: bool,
    /// When a waiting container may start again.
    restart_at: Option<Instant>,
    backoff: Backoff,
    probe_specs: Vec<ProbeSpec>,
    /// The running attempt's probes.
    probes: Option<ContainerProbes>,
    /// A stop in progress (a failed liveness probe), on its own thread so
    /// that its grace period holds up nothing else.
    stopping: Option<std::thread::JoinHandle<()>>,
}

/// What the supervisor waits on: its wake-ups, and the disk emptyDirs
/// whose usage it measures every [`eviction::CHECK_EVERY`].
struct Events {
    wake: Wakeups,
    limits: Vec<DiskLimit>,
    next_check: Instant,
}

/// Why the supervisor's loop ends early.
enum End {
    Stop,
    Evict(String),
}

pub struct Supervisor<'a> {
    pub rt: Arc<Runtime>,
    pub store: &'a PodStore,
    pub dir: PodDir,
    pub rec: PodRecord,
    pub sandbox: SandboxId,
    pub volumes: Vec<HostVolume>,
    pub backoff_base: Duration,
    /// The hull binary exec probes run.
    pub hull: PathBuf,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// A runtime container's end as the pod record keeps it.
pub fn exit_of(st: &runtime::ContainerStatus) -> Option<ExitRecord> {
    let code = match st.state {
        runtime::ContainerState::Exited => st.exit_code.unwrap_or(255),
        // The monitor is gone without an exit record: nobody can say how
        // it ended, but it has (the kubelet reports such a container as
        // terminated, reason Unknown).
        runtime::ContainerState::Unknown if st.pid.is_none() => 255,
        _ => return None,
    };
    let reason = if st.state == runtime::ContainerState::Exited { st.reason.clone() } else { "Unknown".to_string() };
    Some(ExitRecord {
        exit_code: code,
        signal: (code > 128 && code < 128 + 65).then_some(code - 128),
        started_at: st.started_at.map(rfc3339).unwrap_or_default(),
        finished_at: rfc3339(st.finished_at.unwrap_or_else(SystemTime::now)),
        oom_killed: reason == "OOMKilled",
        reason,
    })
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

    /// The durable stop request: read at start and when a stop call
    /// wakes the supervisor, never polled.
    fn stop_requested(&self) -> bool {
        self.dir.stop_request().exists()
    }

    /// Sleep until an event (a stop call, an exit record, the end of a
    /// running container's monitor or init), `until`, or the next volume
    /// check. Some when the pod must end: stopped, or evicted.
    fn wait_event(&mut self, ev: &mut Events, until: Option<Instant>) -> Option<End> {
        self.reap_monitors();
        let mut procs = Vec::new();
        let mut look_now = false;
        for c in self.rec.containers.iter().filter(|c| c.state == ContainerState::Running) {
            let Some(id) = &c.container_id else { continue };
            match self.rt.container_pidfds(id) {
                Ok(fds) if !fds.is_empty() => procs.extend(fds),
                // Neither its monitor nor its init runs: its status says
                // how it ended, now.
                _ => look_now |= ev.wake.watches_processes(),
            }
        }
        let mut until = if look_now { Some(Instant::now()) } else { until };
        if !ev.limits.is_empty() {
            until = Some(until.map_or(ev.next_check, |u| u.min(ev.next_check)));
        }
        if ev.wake.wait(&procs, until) && self.stop_requested() {
            return Some(End::Stop);
        }
        if !ev.limits.is_empty() && Instant::now() >= ev.next_check {
            ev.next_check = Instant::now() + eviction::CHECK_EVERY;
            if let Some(message) = eviction::exceeded(&ev.limits) {
                return Some(End::Evict(message));
            }
        }
        None
    }

    fn end(&mut self, end: End) -> Result<()> {
        match end {
            End::Stop => self.finish_stop(),
            End::Evict(message) => self.evict(message),
        }
    }

    /// When the main loop must look again with no event: the next probe
    /// due, the next restart.
    fn next_timer(&self, tracked: &[Tracked]) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for (idx, t) in tracked.iter().enumerate().filter(|(_, t)| !t.init) {
            let at = match self.rec.containers[idx].state {
                ContainerState::Running if t.stopping.is_none() => t.probes.as_ref().and_then(|p| p.next_due()),
                ContainerState::Waiting => t.restart_at,
                _ => None,
            };
            next = match (next, at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next
    }

    /// Create and start the current attempt of container `idx`. The id is
    /// in the record before the start, so a supervisor that dies in
    /// between leaves a container its successor finds.
    fn start(&mut self, idx: usize, t: &Tracked) -> Result<()> {
        let attempt = self.rec.containers[idx].attempt;
        let name = t.spec.name.clone();
        // What a dead supervisor may have left of this very attempt.
        if let Ok(Some(old)) = self.rt.find_container(&self.sandbox, &name, attempt) {
            let _ = self.rt.remove_container(&old);
        }
        let config = translate::container_config(&self.rec.manifest, &t.spec, &t.field, &self.volumes, attempt)?;
        let created = self.rt.create_container(&self.sandbox, &config);
        let c = &mut self.rec.containers[idx];
        let id = match created {
            Ok(id) => id,
            Err(e) => {
                c.state = ContainerState::Waiting;
                c.reason = "CreateContainerError".into();
                c.message = e.to_string();
                return Err(e.into());
            }
        };
        c.container_id = Some(id.clone());
        self.save();
        let started = self.rt.start_container(&id);
        let c = &mut self.rec.containers[idx];
        match started {
            Ok(()) => {
                c.state = ContainerState::Running;
                c.reason = String::new();
                c.message = String::new();
                c.ready = true;
                c.started_at = Some(rfc3339(SystemTime::now()));
                Ok(())
            }
            Err(e) => {
                c.state = ContainerState::Waiting;
                c.reason = "RunContainerError".into();
                c.message = e.to_string();
                Err(e.into())
            }
        }
    }

    /// Remove the runtime container of an attempt (its log stays).
    fn cleanup_attempt(&mut self, idx: usize) {
        if let Some(id) = self.rec.containers[idx].container_id.clone() {
            if let Err(e) = self.rt.remove_container(&id) {
                log::warn!("pod {}: remove container {id}: {e}", self.rec.name);
            }
        }
    }

    fn exit_of(&self, idx: usize) -> Option<ExitRecord> {
        let id = self.rec.containers[idx].container_id.as_ref()?;
        match self.rt.container_status(id) {
            Ok(st) => exit_of(&st),
            // Removed behind our back: it has ended, how is unknown.
            Err(e) if e.kind() == runtime::ErrorKind::NotFound => Some(ExitRecord {
                exit_code: 255,
                signal: None,
                started_at: String::new(),
                finished_at: rfc3339(SystemTime::now()),
                oom_killed: false,
                reason: "Unknown".into(),
            }),
            Err(_) => None,
        }
    }

    /// Record an exit the runtime knows of.
    fn note_exit(&mut self, idx: usize) -> bool {
        let Some(exit) = self.exit_of(idx) else { return false };
        let c = &mut self.rec.containers[idx];
        c.state = ContainerState::Terminated;
        c.reason = exit.reason.clone();
        c.ready = false;
        c.last_exit = Some(exit);
        true
    }

    /// Move an attempt to the next number (the kubelet's attempt is the
    /// restart count).
    fn bump_attempt(&mut self, idx: usize) {
        let c = &mut self.rec.containers[idx];
        c.attempt += 1;
        c.restart_count += 1;
    }

    fn tracked(&self) -> Vec<Tracked> {
        let spec = self.rec.manifest.spec.clone().expect("validated");
        let config = self.backoff_config();
        let mk = |c: &Container, field: String, init: bool| Tracked {
            spec: c.clone(),
            field,
            init,
            restart_at: None,
            backoff: Backoff::new(config),
            // Checked by `pod run` already; a failure here is a bug, not input.
            probe_specs: if init { Vec::new() } else { probe::specs_of(c).unwrap_or_default() },
            probes: None,
            stopping: None,
        };
        spec.init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| mk(c, format!("spec.initContainers[{i}]"), true))
            .chain(spec.containers.iter().enumerate().map(|(i, c)| mk(c, format!("spec.containers[{i}]"), false)))
            .collect()
    }

    /// Run the pod to its end (or until stopped).
    pub fn run(&mut self) -> Result<()> {
        let mut tracked = self.tracked();
        // Listening before the request is read: a stop asked from here on
        // wakes the loop, one asked before is read just below.
        let wake = Wakeups::open(&self.dir.stop_fifo(), &self.rt.exits_dir())?;
        if self.stop_requested() {
            return self.finish_stop();
        }
        let volumes = self.rec.manifest.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
        let limits = eviction::limits_of(&super::rec_volumes_dir(&self.rec), &volumes);
        let mut ev = Events { wake, limits, next_check: Instant::now() + eviction::CHECK_EVERY };
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
                let adopted = self.rec.containers[idx].state == ContainerState::Running;
                if !adopted {
                    if let Err(e) = self.start(idx, &tracked[idx]) {
                        log::error!("{e}");
                        self.rec.phase = "Failed".into();
                        self.save();
                        return Err(e);
                    }
                }
                self.save();
                while self.exit_of(idx).is_none() {
                    if let Some(end) = self.wait_event(&mut ev, None) {
                        return self.end(end);
                    }
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
                // A `pod stop` during the back-off wakes the wait.
                let until = Instant::now() + tracked[idx].backoff.restart_delay(Instant::now());
                while Instant::now() < until {
                    if let Some(end) = self.wait_event(&mut ev, Some(until)) {
                        return self.end(end);
                    }
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
            self.start_app(&mut tracked[idx], idx);
        }
        self.rec.phase = "Running".into();
        self.save();
        // From here on the supervisor mostly sleeps on events.
        crate::linux::syscall::trim_resident_code();
        loop {
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
                        if !self.note_exit(idx) && tracked[idx].stopping.is_none() {
                            changed |= self.run_probes(&mut tracked[idx], idx);
                        }
                        if self.rec.containers[idx].state == ContainerState::Terminated {
                            changed = true;
                            tracked[idx].probes = None;
                            if let Some(h) = tracked[idx].stopping.take() {
                                let _ = h.join();
                            }
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
                            // An attempt that was never created is tried
                            // again under its number, as the kubelet does.
                            if self.rec.containers[idx].reason != "CreateContainerError" {
                                self.cleanup_attempt(idx);
                                self.bump_attempt(idx);
                            }
                            self.start_app(&mut tracked[idx], idx);
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
            // A change (an exit noted, a restart) is looked at again at
            // once: it may have ended the pod or armed a timer.
            let next = if changed { Some(Instant::now()) } else { self.next_timer(&tracked) };
            if let Some(end) = self.wait_event(&mut ev, next) {
                return self.end(end);
            }
        }
    }

    /// Start an app container's attempt; one that cannot be created or
    /// started waits and is tried again with back-off, as the kubelet
    /// retries CreateContainerError and RunContainerError.
    fn start_app(&mut self, t: &mut Tracked, idx: usize) {
        match self.start(idx, t) {
            Ok(()) => self.arm_probes(t, idx),
            Err(e) => {
                log::error!("pod {}: {e}", self.rec.name);
                let wait = t.backoff.restart_delay(Instant::now());
                t.restart_at = Some(Instant::now() + wait);
            }
        }
        self.save();
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
        let sandbox = self.rt.sandbox_status(&self.sandbox).ok();
        let host_net = self.rec.manifest.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let netns = match sandbox.as_ref().and_then(|s| s.holder_pid) {
            Some(pid) if !host_net => PathBuf::from(format!("/proc/{pid}/ns/net")),
            _ => PathBuf::from("/proc/self/ns/net"),
        };
        let pod_ip = sandbox.as_ref().and_then(|s| s.ips.first()).and_then(|ip| ip.parse().ok());
        let oci = self.rt.oci_root();
        let mut changed = false;
        for kind in due {
            let Some(spec) = t.probe_specs.iter().find(|s| s.kind == kind).cloned() else { continue };
            let target = ProbeTarget { root: &oci, hull: &self.hull, container_id: id.as_str(), netns: &netns, pod_ip };
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
                    // The stop signal now, SIGKILL when the grace period is
                    // over, on a thread of its own: the other containers'
                    // probes and a `pod stop` go on meanwhile.
                    let rt = self.rt.clone();
                    t.stopping = Some(std::thread::spawn(move || {
                        if let Err(e) = rt.stop_container(&id, grace) {
                            log::warn!("stop container {id}: {e}");
                        }
                    }));
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

    /// Stop every container (one shared grace period), give the network
    /// back and stop the holder: the runtime's sandbox stop.
    fn finish_stop(&mut self) -> Result<()> {
        self.stop_all(self.grace(), "Stopped")
    }

    /// A volume over its limit: the kubelet's local storage eviction. The
    /// containers are killed at once (the kubelet evicts for local storage
    /// with no grace period), the network given back, and the pod is
    /// Failed with reason Evicted and the message.
    fn evict(&mut self, message: String) -> Result<()> {
        log::warn!("pod {}: evicted: {message}", self.rec.name);
        // Recorded first: a supervisor that dies here leaves an evicted pod.
        self.rec.reason = "Evicted".into();
        self.rec.message = message;
        self.save();
        self.stop_all(Duration::ZERO, "Failed")
    }

    /// The sandbox stopped with `grace`, the containers' exits noted, the
    /// pod in `phase`.
    fn stop_all(&mut self, grace: Duration, phase: &str) -> Result<()> {
        if let Err(e) = self.rt.stop_sandbox(&self.sandbox, grace) {
            log::error!("pod {}: stop: {e}", self.rec.name);
        }
        for idx in 0..self.rec.containers.len() {
            if self.rec.containers[idx].state == ContainerState::Running {
                self.note_exit(idx);
            }
        }
        self.rec.phase = phase.into();
        self.save();
        Ok(())
    }

    /// `hull monitor` children exit once they have reported: reap them.
    fn reap_monitors(&self) {
        while let Ok(s) = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
            if s == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
        }
    }
}

/// Fresh statuses for every container of the manifest.
pub fn initial_statuses(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<ContainerStatus> {
    let spec = pod.spec.as_ref().expect("validated");
    let mk = |c: &Container, init: bool| ContainerStatus {
        name: c.name.clone(),
        init,
        state: ContainerState::Waiting,
        reason: "ContainerCreating".into(),
        message: String::new(),
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
/// no container name twice (they name log directories and runtime names).
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
