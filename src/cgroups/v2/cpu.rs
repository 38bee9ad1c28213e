//! v2 `cpu`: cpu.weight (from OCI shares), cpu.max (quota and period),
//! cpu.max.burst, cpu.idle; usage and throttling from cpu.stat.
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::controller::{keyed, read, write, Controller};
use crate::cgroups::stats::Stats;
use crate::error::{Error, Result};

pub struct Cpu;

/// OCI (v1) cpu shares [2, 262144] → cgroup v2 cpu.weight [1, 10000]
/// (0 means unset). The conversion runc (1.3.2 on) and crun (1.23 on) use:
/// a quadratic in log space through (2, 1), (1024, 100) and (262144,
/// 10000), so v1's default shares become v2's default weight; the linear
/// one they used before (and hull until they moved) gave 1024 → 39, well
/// below the 100 of everything that sets no weight (Kubernetes issue
/// 131216). Out-of-range shares are clamped, as theirs are.
pub fn shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        _ => {
            let l = (shares as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            (10f64.powf(exponent).ceil() as u64).clamp(1, 10_000)
        }
    }
}

/// The cpu.max line for a quota and period (runc's conversion); None when
/// neither is set.
pub fn cpu_max(quota: i64, period: u64) -> Option<String> {
    if quota <= 0 && period == 0 {
        return None;
    }
    let period = if period == 0 { 100_000 } else { period };
    Some(if quota <= 0 { format!("max {period}") } else { format!("{quota} {period}") })
}

/// The quota and period in the directory's cpu.max ("max 100000" is
/// (-1, 100000)); the kernel's defaults where it cannot be read.
fn current_max(dir: &Path) -> (i64, u64) {
    let text = read(dir, "cpu.max").unwrap_or_default();
    let mut it = text.split_whitespace();
    let quota = it.next().and_then(|q| q.parse().ok()).unwrap_or(-1);
    let period = it.next().and_then(|p| p.parse().ok()).unwrap_or(100_000);
    (quota, period)
}

impl Controller for Cpu {
    const NAME: &'static str = "cpu";

    fn wanted(r: &LinuxResources) -> Option<&'static str> {
        let c = r.cpu().as_ref()?;
        let any = c.shares().is_some() || c.quota().is_some() || c.period().is_some() || c.idle().is_some() || c.burst().is_some();
        any.then_some("linux.resources.cpu")
    }

    fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
        let Some(c) = r.cpu() else { return Ok(()) };
        if c.realtime_runtime().is_some_and(|v| v != 0) {
            return Err(Error::unsupported("linux.resources.cpu.realtimeRuntime", "cgroup v2 has no realtime cpu controller"));
        }
        if c.realtime_period().is_some_and(|v| v != 0) {
            return Err(Error::unsupported("linux.resources.cpu.realtimePeriod", "cgroup v2 has no realtime cpu controller"));
        }
        let weight = shares_to_weight(c.shares().unwrap_or(0));
        if weight != 0 {
            write(dir, "cpu.weight", weight, "linux.resources.cpu.shares")?;
        }
        let (quota, period) = (c.quota().filter(|q| *q != 0), c.period().filter(|p| *p != 0));
        if quota.is_some() || period.is_some() {
            // cpu.max holds both: the one not given keeps its value (an
            // `update` of the period alone must not lift the quota).
            let (current_quota, current_period) = current_max(dir);
            if let Some(max) = cpu_max(quota.unwrap_or(current_quota), period.unwrap_or(current_period)) {
                write(dir, "cpu.max", max, "linux.resources.cpu.quota")?;
            }
        }
        if let Some(b) = c.burst() {
            write(dir, "cpu.max.burst", b, "linux.resources.cpu.burst")?;
        }
        if let Some(idle) = c.idle() {
            write(dir, "cpu.idle", idle, "linux.resources.cpu.idle")?;
        }
        Ok(())
    }

    fn stats(dir: &Path, stats: &mut Stats) {
        let k = |key| keyed(dir, "cpu.stat", key).unwrap_or(0);
        // cpu.stat is in microseconds; runc reports nanoseconds.
        stats.cpu.usage.total = k("usage_usec") * 1000;
        stats.cpu.usage.user = k("user_usec") * 1000;
        stats.cpu.usage.kernel = k("system_usec") * 1000;
        stats.cpu.throttling.periods = k("nr_periods");
        stats.cpu.throttling.throttled_periods = k("nr_throttled");
        stats.cpu.throttling.throttled_time = k("throttled_usec") * 1000;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::controller::fake_cgroup;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxResourcesBuilder};

    /// The boundaries and the points the conversion is made through, and a
    /// few values between (as runc's and crun's tables have them).
    #[test]
    fn shares_convert_as_runc_and_crun() {
        let table = [
            (0, 0),
            (1, 1),
            (2, 1),
            (3, 2),
            (512, 59),
            (1024, 100),
            (2048, 174),
            (262_143, 10_000),
            (262_144, 10_000),
            (262_145, 10_000),
            (u64::MAX, 10_000),
        ];
        for (shares, weight) in table {
            assert_eq!(shares_to_weight(shares), weight, "shares {shares}");
        }
        let mut last = 0;
        for shares in 1..=262_144u64 {
            let w = shares_to_weight(shares);
            assert!((last..=10_000).contains(&w), "not monotonic at {shares}: {last} then {w}");
            last = w;
        }
    }

    #[test]
    fn the_libm_crate_gives_the_same_weights() {
        // The hull binary takes log2 and pow from the libm crate (main.rs);
        // this test, like runc and crun, from the C library.
        for shares in 3..262_144u64 {
            let l = libm::log2(shares as f64);
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            let ours = (libm::pow(10.0, exponent).ceil() as u64).clamp(1, 10_000);
            assert_eq!(ours, shares_to_weight(shares), "shares {shares}");
        }
    }

    #[test]
    fn cpu_max_lines() {
        assert_eq!(cpu_max(0, 0), None);
        assert_eq!(cpu_max(50000, 0).as_deref(), Some("50000 100000"));
        assert_eq!(cpu_max(-1, 0), None);
        assert_eq!(cpu_max(-1, 20000).as_deref(), Some("max 20000"));
        assert_eq!(cpu_max(25000, 50000).as_deref(), Some("25000 50000"));
    }

    #[test]
    fn writes_weight_and_max() {
        let t = fake_cgroup(&["cpu.weight", "cpu.max", "cpu.idle"]);
        let r = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().shares(1024u64).quota(50000i64).period(100000u64).build().unwrap())
            .build()
            .unwrap();
        Cpu::apply(t.path(), &r).unwrap();
        assert_eq!(std::fs::read_to_string(t.path().join("cpu.weight")).unwrap(), "100");
        assert_eq!(std::fs::read_to_string(t.path().join("cpu.max")).unwrap(), "50000 100000");
        assert_eq!(std::fs::read_to_string(t.path().join("cpu.idle")).unwrap(), "", "idle is not set");
    }

    #[test]
    fn quota_or_period_alone_keeps_the_other() {
        let t = fake_cgroup(&["cpu.max"]);
        let cpu = |c: oci_spec::runtime::LinuxCpu| LinuxResourcesBuilder::default().cpu(c).build().unwrap();
        let max = || std::fs::read_to_string(t.path().join("cpu.max")).unwrap();
        std::fs::write(t.path().join("cpu.max"), "30000 100000\n").unwrap();
        Cpu::apply(t.path(), &cpu(LinuxCpuBuilder::default().period(50000u64).build().unwrap())).unwrap();
        assert_eq!(max(), "30000 50000");
        Cpu::apply(t.path(), &cpu(LinuxCpuBuilder::default().quota(40000i64).build().unwrap())).unwrap();
        assert_eq!(max(), "40000 50000");
        Cpu::apply(t.path(), &cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())).unwrap();
        assert_eq!(max(), "max 50000");
        std::fs::write(t.path().join("cpu.max"), "max 100000\n").unwrap();
        Cpu::apply(t.path(), &cpu(LinuxCpuBuilder::default().period(20000u64).build().unwrap())).unwrap();
        assert_eq!(max(), "max 20000");
    }

    #[test]
    fn realtime_is_refused_by_name() {
        let t = tempfile::tempdir().unwrap();
        let r = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().realtime_runtime(1000i64).build().unwrap())
            .build()
            .unwrap();
        let err = Cpu::apply(t.path(), &r).unwrap_err().to_string();
        assert!(err.contains("linux.resources.cpu.realtimeRuntime"), "{err}");
    }

    #[test]
    fn stats_in_nanoseconds() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("cpu.stat"),
            "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 3\nnr_throttled 1\nthrottled_usec 2\n",
        )
        .unwrap();
        let mut s = Stats::default();
        Cpu::stats(t.path(), &mut s);
        assert_eq!(s.cpu.usage.total, 10_000);
        assert_eq!(s.cpu.usage.kernel, 4_000);
        assert_eq!(s.cpu.throttling.throttled_time, 2_000);
    }
}
