//! Container probes: liveness, readiness and startup, as kubelet runs them.
//!
//! Three parts, in the order the pod supervisor uses them:
//! - [`ProbeSpec::from_k8s`] checks a `core::v1::Probe` of a manifest once,
//!   applies the API server's defaults and resolves named ports;
//! - [`Prober`] (one per probe) and [`ContainerProbes`] (the three of a
//!   container, with the startup probe holding the others back) are pure state
//!   machines: fed the time and the outcomes, they say when the next check is
//!   due and report the transitions (ready, not ready, started, failed);
//! - [`run`] performs one check (exec, tcpSocket, httpGet) against a running
//!   container, bounded by `timeoutSeconds` (see `probe/action.rs`).
//!
//! A supervisor's loop (checks fork nothing in the caller):
//!
//! ```no_run
//! use std::time::Instant;
//! use hull::pod::probe::{self, ContainerProbes, ProbeTarget, Transition};
//! # fn demo(container: &k8s_openapi::api::core::v1::Container, target: &ProbeTarget) -> Result<(), probe::ProbeError> {
//! let specs = probe::specs_of(container)?; // when the manifest is read
//! let mut probes = ContainerProbes::new(&specs, Instant::now()); // when the container starts
//! while let Some(due) = probes.next_due() {
//!     // ...sleep until `due`, or until the container exits...
//! #   let _ = due;
//!     for kind in probes.due(Instant::now()) {
//!         let spec = specs.iter().find(|s| s.kind == kind).unwrap();
//!         let outcome = match probe::run(&spec.action, spec.timing.timeout, target) {
//!             Ok(o) => o,
//!             Err(e) => { log::warn!("{} not checked: {e}", kind.field()); continue }, // not counted
//!         };
//!         match probes.record(kind, Instant::now(), &outcome) {
//!             Some(Transition::Failed { message }) => { /* stop the container; restart per policy */ let _ = message; }
//!             Some(Transition::Ready | Transition::NotReady { .. } | Transition::Started) => { /* update status */ }
//!             None => {}
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

mod action;
pub use action::{run, ProbeTarget, OUTPUT_LIMIT};

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// The field's name in a Container.
    pub fn field(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "livenessProbe",
            ProbeKind::Readiness => "readinessProbe",
            ProbeKind::Startup => "startupProbe",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The manifest's probe is wrong (Kubernetes' validation would refuse it).
    #[error("{field}: {why}")]
    Invalid { field: String, why: String },
    /// Valid in Kubernetes, not implemented by hull.
    #[error("{field} is not supported: {why}")]
    Unsupported { field: String, why: String },
    /// The prober itself could not work (fork, pipe, namespace file...): no
    /// verdict on the container; kubelet drops such results and so should the caller.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The container's record could not be read (gone, never created...).
    #[error("container {id:?}: {source}")]
    Container {
        id: String,
        #[source]
        source: Box<crate::Error>,
    },
}

impl ProbeError {
    fn invalid(field: impl Into<String>, why: impl Into<String>) -> Self {
        ProbeError::Invalid { field: field.into(), why: why.into() }
    }

    fn unsupported(field: impl Into<String>, why: impl Into<String>) -> Self {
        ProbeError::Unsupported { field: field.into(), why: why.into() }
    }

    pub(crate) fn sys(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        ProbeError::Sys { what: what.into(), source: source.into() }
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// Run `command` (no shell) in the container; exit status 0 is success.
    Exec { command: Vec<String> },
    /// Open a TCP connection; success when it is accepted.
    TcpSocket { host: Option<IpAddr>, port: u16 },
    /// HTTP/1.1 GET; a status in 200..400 is success. `path` starts with '/'.
    HttpGet { host: Option<IpAddr>, port: u16, path: String, headers: Vec<(String, String)> },
}

/// The numbers of a probe, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Default for Timing {
    /// The API server's defaults.
    fn default() -> Self {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: 1,
            failure_threshold: 3,
        }
    }
}

/// A checked probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    pub action: ProbeAction,
    pub timing: Timing,
    /// The probe's own `terminationGracePeriodSeconds` (liveness and startup
    /// only): overrides the pod's when this probe kills the container.
    pub termination_grace_period: Option<Duration>,
}

impl ProbeSpec {
    /// Check `probe` as Kubernetes' validation does, apply the defaults, and
    /// resolve a named port against the container's `ports`. Error fields are
    /// named from the probe down (`livenessProbe.httpGet.port`); the caller
    /// adds the container's place in the pod.
    pub fn from_k8s(kind: ProbeKind, probe: &Probe, ports: &[ContainerPort]) -> Result<ProbeSpec, ProbeError> {
        let f = kind.field();
        let handlers = [probe.exec.is_some(), probe.http_get.is_some(), probe.tcp_socket.is_some(), probe.grpc.is_some()];
        match handlers.iter().filter(|h| **h).count() {
            0 => return Err(ProbeError::invalid(f, "must specify a handler type (exec, httpGet, tcpSocket or grpc)")),
            1 => {}
            _ => return Err(ProbeError::invalid(f, "may not specify more than 1 handler type")),
        }
        let action = if let Some(e) = &probe.exec {
            let command = e.command.clone().unwrap_or_default();
            if command.is_empty() {
                return Err(ProbeError::invalid(format!("{f}.exec.command"), "Required value"));
            }
            ProbeAction::Exec { command }
        } else if let Some(t) = &probe.tcp_socket {
            let host = parse_host(&format!("{f}.tcpSocket.host"), t.host.as_deref())?;
            let port = resolve_port(&format!("{f}.tcpSocket.port"), &t.port, ports)?;
            ProbeAction::TcpSocket { host, port }
        } else if let Some(h) = &probe.http_get {
            let field = format!("{f}.httpGet");
            match h.scheme.as_deref() {
                None | Some("HTTP") => {}
                Some("HTTPS") => {
                    return Err(ProbeError::unsupported(
                        format!("{field}.scheme"),
                        "HTTPS probes are not implemented; use HTTP, tcpSocket or exec",
                    ))
                }
                Some(other) => {
                    return Err(ProbeError::invalid(
                        format!("{field}.scheme"),
                        format!("Unsupported value: {other:?}: supported values: \"HTTP\", \"HTTPS\""),
                    ))
                }
            }
            let host = parse_host(&format!("{field}.host"), h.host.as_deref())?;
            let port = resolve_port(&format!("{field}.port"), &h.port, ports)?;
            let mut path = h.path.clone().unwrap_or_default();
            if !path.starts_with('/') {
                path.insert(0, '/');
            }
            if path.chars().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()) {
                return Err(ProbeError::invalid(format!("{field}.path"), "must not contain spaces or control characters"));
            }
            let mut headers = Vec::new();
            for (i, hh) in h.http_headers.iter().flatten().enumerate() {
                let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
                if hh.name.is_empty() || !hh.name.chars().all(token) {
                    return Err(ProbeError::invalid(
                        format!("{field}.httpHeaders[{i}].name"),
                        format!("{:?} is not a valid HTTP header name", hh.name),
                    ));
                }
                if hh.value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
                    return Err(ProbeError::invalid(format!("{field}.httpHeaders[{i}].value"), "must not contain line breaks"));
                }
                headers.push((hh.name.clone(), hh.value.clone()));
            }
            ProbeAction::HttpGet { host, port, path, headers }
        } else {
            return Err(ProbeError::unsupported(
                format!("{f}.grpc"),
                "gRPC health-check probes are not implemented; use exec, httpGet or tcpSocket",
            ));
        };

        let d = Timing::default();
        let secs = |name: &str, v: Option<i32>, default: Duration| -> Result<Duration, ProbeError> {
            match v {
                None | Some(0) => Ok(default),
                Some(n) if n < 0 => Err(ProbeError::invalid(format!("{f}.{name}"), "must be greater than or equal to 0")),
                Some(n) => Ok(Duration::from_secs(n as u64)),
            }
        };
        let count = |name: &str, v: Option<i32>, default: u32| -> Result<u32, ProbeError> {
            match v {
                None | Some(0) => Ok(default),
                Some(n) if n < 0 => Err(ProbeError::invalid(format!("{f}.{name}"), "must be greater than or equal to 0")),
                Some(n) => Ok(n as u32),
            }
        };
        let timing = Timing {
            initial_delay: secs("initialDelaySeconds", probe.initial_delay_seconds, d.initial_delay)?,
            period: secs("periodSeconds", probe.period_seconds, d.period)?,
            timeout: secs("timeoutSeconds", probe.timeout_seconds, d.timeout)?,
            success_threshold: count("successThreshold", probe.success_threshold, d.success_threshold)?,
            failure_threshold: count("failureThreshold", probe.failure_threshold, d.failure_threshold)?,
        };
        if kind != ProbeKind::Readiness && timing.success_threshold != 1 {
            return Err(ProbeError::invalid(format!("{f}.successThreshold"), "must be 1"));
        }
        let termination_grace_period = match (kind, probe.termination_grace_period_seconds) {
            (_, None) => None,
            (ProbeKind::Readiness, Some(_)) => {
                return Err(ProbeError::invalid(format!("{f}.terminationGracePeriodSeconds"), "must not be set for readinessProbes"))
            }
            (_, Some(n)) if n <= 0 => {
                return Err(ProbeError::invalid(format!("{f}.terminationGracePeriodSeconds"), "must be greater than 0"))
            }
            (_, Some(n)) => Some(super::validate::grace_period(Some(n))),
        };
        Ok(ProbeSpec { kind, action, timing, termination_grace_period })
    }
}

/// The checked probes of a container of a manifest (startup, liveness,
/// readiness, those it has), named ports resolved against its `ports`.
pub fn specs_of(container: &Container) -> Result<Vec<ProbeSpec>, ProbeError> {
    let ports = container.ports.as_deref().unwrap_or_default();
    [
        (ProbeKind::Startup, &container.startup_probe),
        (ProbeKind::Liveness, &container.liveness_probe),
        (ProbeKind::Readiness, &container.readiness_probe),
    ]
    .into_iter()
    .filter_map(|(kind, p)| p.as_ref().map(|p| ProbeSpec::from_k8s(kind, p, ports)))
    .collect()
}

/// An IP address, or nothing (the pod's IP, as kubelet). Host names are
/// refused: resolving them would need the pod's DNS and an unbounded lookup.
fn parse_host(field: &str, host: Option<&str>) -> Result<Option<IpAddr>, ProbeError> {
    match host {
        None | Some("") => Ok(None),
        Some("localhost") => Ok(Some(IpAddr::from([127, 0, 0, 1]))),
        Some(h) => h.trim_start_matches('[').trim_end_matches(']').parse().map(Some).map_err(|_| {
            ProbeError::unsupported(field, format!("host {h:?} is a name; give an IP address (or leave it out for the pod's IP)"))
        }),
    }
}

fn resolve_port(field: &str, port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, ProbeError> {
    let n = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| ProbeError::invalid(field, format!("no container port named {name:?}")))?,
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ProbeError::invalid(field, format!("{n}: must be between 1 and 65535, inclusive")))
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Failed, with what went wrong (exit code and output, HTTP status,
    /// connection error, timeout) for the container's events.
    Failure(String),
}

/// What a probe's verdict changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Readiness: `successThreshold` successes in a row after being not ready
    /// (containers with a readiness probe start not ready).
    Ready,
    /// Readiness: `failureThreshold` failures in a row after being ready.
    NotReady { message: String },
    /// Startup: the first success. Liveness and readiness probes begin; the
    /// startup probe is not run again for this container.
    Started,
    /// Liveness or startup: `failureThreshold` failures in a row. The
    /// container is to be killed and restarted as the pod's restartPolicy
    /// says; this prober stops (a new container gets a new one).
    Failed { message: String },
}

/// One probe of one container (kubelet's probe worker, without the goroutine).
#[derive(Debug, Clone)]
pub struct Prober {
    kind: ProbeKind,
    timing: Timing,
    next_due: Option<Instant>,
    /// The last outcome (true = success) and how many times in a row.
    last: Option<bool>,
    run: u32,
    /// The published verdict: readiness starts false, liveness true, startup
    /// unknown (None).
    verdict: Option<bool>,
}

impl Prober {
    /// A prober for a container started at `container_started`; the first
    /// check is due `initialDelaySeconds` later.
    pub fn new(kind: ProbeKind, timing: Timing, container_started: Instant) -> Prober {
        let verdict = match kind {
            ProbeKind::Readiness => Some(false),
            ProbeKind::Liveness => Some(true),
            ProbeKind::Startup => None,
        };
        Prober { kind, timing, next_due: Some(container_started + timing.initial_delay), last: None, run: 0, verdict }
    }

    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// When the next check is due; None when this prober has finished
    /// (liveness or startup failed, startup succeeded).
    pub fn next_due(&self) -> Option<Instant> {
        self.next_due
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.next_due.is_some_and(|d| d <= now)
    }

    /// Readiness: ready now. Liveness: not failed. Startup: succeeded.
    pub fn passing(&self) -> bool {
        self.verdict == Some(true)
    }

    /// Do not check before `at` (the startup probe holds the others back).
    fn hold_until(&mut self, at: Instant) {
        if let Some(d) = &mut self.next_due {
            *d = (*d).max(at);
        }
    }

    /// Record the outcome of the check that was due, finished at `now`.
    /// Checks run every `periodSeconds` from the first one; one that took
    /// longer than the period is followed by the next at once (as kubelet's
    /// ticker). Returns the transition this outcome made, if any.
    pub fn record(&mut self, now: Instant, outcome: &Outcome) -> Option<Transition> {
        let due = self.next_due?;
        self.next_due = Some((due + self.timing.period).max(now));
        let ok = matches!(outcome, Outcome::Success);
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok { self.timing.success_threshold } else { self.timing.failure_threshold };
        if self.run < threshold {
            return None;
        }
        let changed = self.verdict != Some(ok);
        self.verdict = Some(ok);
        let message = match outcome {
            Outcome::Success => String::new(),
            Outcome::Failure(m) => m.clone(),
        };
        match (self.kind, ok) {
            (ProbeKind::Readiness, true) => changed.then_some(Transition::Ready),
            (ProbeKind::Readiness, false) => changed.then_some(Transition::NotReady { message }),
            (ProbeKind::Startup, true) => {
                self.next_due = None;
                Some(Transition::Started)
            }
            (ProbeKind::Liveness, true) => None,
            (ProbeKind::Liveness | ProbeKind::Startup, false) => {
                self.next_due = None;
                Some(Transition::Failed { message })
            }
        }
    }
}

/// The probes of one container, as kubelet coordinates them: while a
/// startup probe has not succeeded, liveness and readiness checks are not
/// run; without a readiness probe a started container is ready.
#[derive(Debug, Clone)]
pub struct ContainerProbes {
    startup: Option<Prober>,
    liveness: Option<Prober>,
    readiness: Option<Prober>,
}

impl ContainerProbes {
    /// From the container's checked probes (at most one of each kind; a
    /// later one of the same kind replaces an earlier one).
    pub fn new(specs: &[ProbeSpec], container_started: Instant) -> ContainerProbes {
        let mut c = ContainerProbes { startup: None, liveness: None, readiness: None };
        for s in specs {
            *c.slot(s.kind) = Some(Prober::new(s.kind, s.timing, container_started));
        }
        c
    }

    fn slot(&mut self, kind: ProbeKind) -> &mut Option<Prober> {
        match kind {
            ProbeKind::Startup => &mut self.startup,
            ProbeKind::Liveness => &mut self.liveness,
            ProbeKind::Readiness => &mut self.readiness,
        }
    }

    pub fn get(&self, kind: ProbeKind) -> Option<&Prober> {
        match kind {
            ProbeKind::Startup => self.startup.as_ref(),
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
        }
    }

    /// Started: no startup probe, or it succeeded.
    pub fn started(&self) -> bool {
        self.startup.as_ref().is_none_or(Prober::passing)
    }

    /// Ready: started, and the readiness probe (if any) passes.
    pub fn ready(&self) -> bool {
        self.started() && self.readiness.as_ref().is_none_or(Prober::passing)
    }

    fn active(&self) -> impl Iterator<Item = &Prober> {
        let gated = !self.started();
        [self.startup.as_ref(), self.liveness.as_ref(), self.readiness.as_ref()]
            .into_iter()
            .flatten()
            .filter(move |p| !gated || p.kind == ProbeKind::Startup)
    }

    /// The probes to run now, startup first.
    pub fn due(&self, now: Instant) -> Vec<ProbeKind> {
        self.active().filter(|p| p.is_due(now)).map(|p| p.kind).collect()
    }

    /// The earliest time a probe is due; None when nothing is left to run.
    pub fn next_due(&self) -> Option<Instant> {
        self.active().filter_map(Prober::next_due).min()
    }

    /// Record a check's outcome (see [`Prober::record`]).
    pub fn record(&mut self, kind: ProbeKind, now: Instant, outcome: &Outcome) -> Option<Transition> {
        let t = self.slot(kind).as_mut()?.record(now, outcome);
        if t == Some(Transition::Started) {
            for p in [&mut self.liveness, &mut self.readiness].into_iter().flatten() {
                p.hold_until(now);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests;
