//! Container restarts: the pod's `restartPolicy` and kubelet's back-off.
//!
//! kubelet (pkg/kubelet/kuberuntime `doBackOff`, client-go `flowcontrol.Backoff`)
//! keys a back-off entry per container. The first exit restarts the container
//! at once and arms a 10 s back-off; each later exit waits the current
//! back-off, counted from the exit, and doubles it for the next time, up to
//! 300 s. An entry whose last restart is more than 10 minutes (twice the cap)
//! older than the exit is forgotten: a container that ran that long without a
//! problem starts over at "restart at once". kubelet adds a little jitter;
//! hull does not.
use std::str::FromStr;
use std::time::{Duration, Instant};

/// `spec.restartPolicy` of a Pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("restartPolicy {0:?}: expected Always, OnFailure or Never")]
pub struct BadRestartPolicy(pub String);

impl FromStr for RestartPolicy {
    type Err = BadRestartPolicy;

    /// The manifest's spelling; Kubernetes' API is case-sensitive and so is this.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Always" => Ok(RestartPolicy::Always),
            "OnFailure" => Ok(RestartPolicy::OnFailure),
            "Never" => Ok(RestartPolicy::Never),
            other => Err(BadRestartPolicy(other.to_string())),
        }
    }
}

impl RestartPolicy {
    /// From the optional field of a `PodSpec` (absent means Always, as the API server defaults it).
    pub fn from_pod_spec(field: Option<&str>) -> Result<Self, BadRestartPolicy> {
        field.map_or(Ok(RestartPolicy::Always), str::parse)
    }
}

/// Whether a container that exited with `exit_code` is started again.
/// A container killed by a signal (including a liveness failure: SIGTERM then
/// SIGKILL) reports 128 + the signal number, so it counts as a failure.
pub fn should_restart(policy: RestartPolicy, exit_code: i32) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => exit_code != 0,
        RestartPolicy::Never => false,
    }
}

/// The back-off's numbers. [`Default`] is kubelet's; tests and impatient
/// users can scale them down ([`BackoffConfig::scaled_down`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first non-zero wait (kubelet: 10 s).
    pub initial: Duration,
    /// The largest wait (kubelet: `MaxContainerBackOff`, 300 s).
    pub cap: Duration,
    /// A container whose last restart is older than this when it exits starts
    /// over (kubelet: twice the cap, 10 minutes).
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig { initial: Duration::from_secs(10), cap: Duration::from_secs(300), reset_after: Duration::from_secs(600) }
    }
}

impl BackoffConfig {
    /// kubelet's numbers divided by `factor` (1 leaves them as they are; 0 is taken as 1).
    pub fn scaled_down(factor: u32) -> Self {
        let d = BackoffConfig::default();
        let f = factor.max(1);
        BackoffConfig { initial: d.initial / f, cap: d.cap / f, reset_after: d.reset_after / f }
    }
}

/// The back-off of one container (one per pod and container name, kept
/// across the container's restarts).
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    /// The back-off the next exit waits, and when the container was last
    /// (re)started; None before the first exit or after a reset.
    armed: Option<(Duration, Instant)>,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Backoff {
        Backoff { config, armed: None }
    }

    /// The container exited at `finished_at` and will be restarted (the caller
    /// asked [`should_restart`] first): how long after `finished_at` to start
    /// it again. The restart is recorded as happening then.
    pub fn restart_delay(&mut self, finished_at: Instant) -> Duration {
        let c = self.config;
        match self.armed {
            Some((backoff, last_restart)) if finished_at.saturating_duration_since(last_restart) <= c.reset_after => {
                self.armed = Some(((backoff * 2).min(c.cap), finished_at + backoff));
                backoff
            }
            _ => {
                self.armed = Some((c.initial.min(c.cap), finished_at));
                Duration::ZERO
            }
        }
    }

    /// The wait the next exit would get (zero when it restarts at once), for
    /// status output ("back-off 40s restarting failed container").
    pub fn pending(&self, finished_at: Instant) -> Duration {
        self.clone().restart_delay(finished_at)
    }

    pub fn config(&self) -> BackoffConfig {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn restart_policy_decides_by_exit_code() {
        use RestartPolicy::*;
        assert!(should_restart(Always, 0));
        assert!(should_restart(Always, 1));
        assert!(!should_restart(OnFailure, 0));
        assert!(should_restart(OnFailure, 2));
        assert!(should_restart(OnFailure, 137));
        assert!(!should_restart(Never, 0));
        assert!(!should_restart(Never, 1));
    }

    #[test]
    fn restart_policy_parsing() {
        assert_eq!(RestartPolicy::from_pod_spec(None), Ok(RestartPolicy::Always));
        assert_eq!(RestartPolicy::from_pod_spec(Some("OnFailure")), Ok(RestartPolicy::OnFailure));
        assert_eq!("Never".parse::<RestartPolicy>(), Ok(RestartPolicy::Never));
        let e = "never".parse::<RestartPolicy>().unwrap_err();
        assert!(e.to_string().contains("Always, OnFailure or Never"), "{e}");
    }

    /// A container that crashes one second after each start: at once, then
    /// 10, 20, 40, 80, 160, 300, 300 s.
    #[test]
    fn doubles_from_ten_seconds_up_to_five_minutes() {
        let mut b = Backoff::new(BackoffConfig::default());
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..8 {
            now += S(1); // ran one second
            let w = b.restart_delay(now);
            waits.push(w.as_secs());
            now += w;
        }
        assert_eq!(waits, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn resets_after_ten_minutes_of_running() {
        let mut b = Backoff::new(BackoffConfig::default());
        let t0 = Instant::now();
        assert_eq!(b.restart_delay(t0), S(0));
        assert_eq!(b.restart_delay(t0 + S(5)), S(10));
        assert_eq!(b.restart_delay(t0 + S(20)), S(20));
        // restarted at t0+40; runs exactly 10 minutes: still backing off
        let mut kept = b.clone();
        assert_eq!(kept.restart_delay(t0 + S(40 + 600)), S(40));
        // a little longer than 10 minutes: back to "restart at once", then 10 s
        assert_eq!(b.restart_delay(t0 + S(40 + 601)), S(0));
        assert_eq!(b.restart_delay(t0 + S(40 + 602)), S(10));
    }

    #[test]
    fn pending_does_not_change_the_state() {
        let mut b = Backoff::new(BackoffConfig::default());
        let t0 = Instant::now();
        b.restart_delay(t0);
        assert_eq!(b.pending(t0 + S(1)), S(10));
        assert_eq!(b.pending(t0 + S(1)), S(10));
        assert_eq!(b.restart_delay(t0 + S(1)), S(10));
        assert_eq!(b.pending(t0 + S(12)), S(20));
    }

    #[test]
    fn scaled_down_for_tests() {
        let c = BackoffConfig::scaled_down(100);
        assert_eq!(c.initial, Duration::from_millis(100));
        assert_eq!(c.cap, S(3));
        assert_eq!(c.reset_after, S(6));
        assert_eq!(BackoffConfig::scaled_down(0), BackoffConfig::default());
        let mut b = Backoff::new(c);
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..7 {
            let w = b.restart_delay(now);
            waits.push(w.as_millis());
            now += w + Duration::from_millis(1);
        }
        assert_eq!(waits, [0, 100, 200, 400, 800, 1600, 3000]);
    }
}
