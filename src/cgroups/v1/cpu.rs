//! v1 `cpu`: shares, CFS quota/period/burst, realtime runtime/period, idle; the
//! throttling numbers of cpu.stat.
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::controller::{keyed, write, Controller};
use crate::cgroups::stats::Stats;
use crate::error::{Error, Result};

pub struct Cpu;

impl Controller for Cpu {
    const NAME: &'static str = "cpu";

    fn wanted(r: &LinuxResources) -> Option<&'static str> {
        let c = r.cpu().as_ref()?;
        [
            (c.shares().is_some(), "linux.resources.cpu.shares"),
            (c.quota().is_some(), "linux.resources.cpu.quota"),
            (c.period().is_some(), "linux.resources.cpu.period"),
            (c.realtime_runtime().is_some(), "linux.resources.cpu.realtimeRuntime"),
            (c.realtime_period().is_some(), "linux.resources.cpu.realtimePeriod"),
            (c.idle().is_some(), "linux.resources.cpu.idle"),
            (c.burst().is_some(), "linux.resources.cpu.burst"),
        ]
        .into_iter()
        .find_map(|(set, f)| set.then_some(f))
    }

    fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
        let Some(c) = r.cpu() else { return Ok(()) };
        if let Some(shares) = c.shares().filter(|s| *s != 0) {
            write(dir, "cpu.shares", shares, "linux.resources.cpu.shares")?;
            // The kernel clamps shares to [2, 262144]: say so instead of
            // silently running with another value (runc does the same check).
            let got: u64 = crate::cgroups::controller::read_u64(dir, "cpu.shares").unwrap_or(shares);
            if got != shares {
                return Err(Error::resource(
                    "linux.resources.cpu.shares",
                    format!("the kernel set {got} instead of {shares} (valid range 2-262144)"),
                ));
            }
        }
        let period = c.period().filter(|p| *p != 0);
        let quota = c.quota().filter(|q| *q != 0);
        if let Some(p) = period {
            // A new period shorter than the current quota is refused
            // (EINVAL) until the quota is lowered: then write the quota first.
            if let Err(e) = write(dir, "cpu.cfs_period_us", p, "linux.resources.cpu.period") {
                let Some(q) = quota else { return Err(e) };
                write(dir, "cpu.cfs_quota_us", q, "linux.resources.cpu.quota")?;
                write(dir, "cpu.cfs_period_us", p, "linux.resources.cpu.period")?;
            }
        }
        if let Some(q) = quota {
            write(dir, "cpu.cfs_quota_us", q, "linux.resources.cpu.quota")?;
        }
        if let Some(b) = c.burst() {
            write(dir, "cpu.cfs_burst_us", b, "linux.resources.cpu.burst")?;
        }
        // Period before runtime: the runtime must fit in the period.
        if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
            write(dir, "cpu.rt_period_us", p, "linux.resources.cpu.realtimePeriod")?;
        }
        if let Some(rt) = c.realtime_runtime().filter(|r| *r != 0) {
            write(dir, "cpu.rt_runtime_us", rt, "linux.resources.cpu.realtimeRuntime")?;
        }
        if let Some(idle) = c.idle() {
            write(dir, "cpu.idle", idle, "linux.resources.cpu.idle")?;
        }
        Ok(())
    }

    fn stats(dir: &Path, stats: &mut Stats) {
        let t = &mut stats.cpu.throttling;
        t.periods = keyed(dir, "cpu.stat", "nr_periods").unwrap_or(0);
        t.throttled_periods = keyed(dir, "cpu.stat", "nr_throttled").unwrap_or(0);
        t.throttled_time = keyed(dir, "cpu.stat", "throttled_time").unwrap_or(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::controller::fake_cgroup;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxResourcesBuilder};

    #[test]
    fn writes_cfs_and_rt_files() {
        let files = ["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.cfs_burst_us", "cpu.rt_period_us", "cpu.rt_runtime_us"];
        let t = fake_cgroup(&files);
        let r = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(25000i64)
                    .period(50000u64)
                    .burst(1000u64)
                    .realtime_period(1000000u64)
                    .realtime_runtime(950000i64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        Cpu::apply(t.path(), &r).unwrap();
        let got: Vec<String> = files.iter().map(|f| std::fs::read_to_string(t.path().join(f)).unwrap()).collect();
        assert_eq!(got, ["512", "50000", "25000", "1000", "1000000", "950000"]);
    }
}
