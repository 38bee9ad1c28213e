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

/// Real-time runtime below a parent shared with other containers (hull's
/// per-root directory, which the kernel makes with none): the kernel wants
/// the runtime/period ratios of a group's children to sum to no more than
/// its own, so the parent is first given what its children hold, `dir`'s
/// request included. A write that raced with another container of the
/// root doing the same is retried. Without realtimeRuntime, nothing.
pub fn reserve_rt_in_parent(parent: &Path, dir: &Path, r: &LinuxResources) -> Result<()> {
    let Some(c) = r.cpu() else { return Ok(()) };
    let Some(runtime) = c.realtime_runtime().filter(|r| *r > 0) else { return Ok(()) };
    let period = match c.realtime_period().filter(|p| *p != 0) {
        Some(p) => p,
        None => crate::cgroups::controller::read_u64(dir, "cpu.rt_period_us").unwrap_or(1_000_000),
    };
    if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
        write(dir, "cpu.rt_period_us", p, "linux.resources.cpu.realtimePeriod")?;
    }
    let mut attempt = 0;
    loop {
        fit_rt_parent(parent, Some((dir, runtime as u64, period)));
        match write(dir, "cpu.rt_runtime_us", runtime, "linux.resources.cpu.realtimeRuntime") {
            Err(_) if attempt < 20 => attempt += 1,
            other => return other,
        }
    }
}

/// Give `parent` the real-time runtime its children hold (plus `extra`,
/// a child's request: its dir, runtime and period), never more than its
/// period; errors are the child's write's to report. Also used on delete
/// to hand back what a removed child held.
pub fn fit_rt_parent(parent: &Path, extra: Option<(&Path, u64, u64)>) {
    let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).ok().and_then(|v| v.trim().parse::<i64>().ok());
    let (Some(own), Some(own_period)) = (read(parent, "cpu.rt_runtime_us"), read(parent, "cpu.rt_period_us")) else { return };
    let own_period = own_period.max(1) as u128;
    let share = |runtime: u64, period: u64| (runtime as u128 * own_period).div_ceil(period.max(1) as u128);
    let mut need: u128 = extra.map_or(0, |(_, r, p)| share(r, p));
    for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let d = e.path();
        if !e.file_type().is_ok_and(|t| t.is_dir()) || extra.is_some_and(|(x, _, _)| x == d) {
            continue;
        }
        if let (Some(r), Some(p)) = (read(&d, "cpu.rt_runtime_us"), read(&d, "cpu.rt_period_us")) {
            if r > 0 {
                need += share(r as u64, p.max(1) as u64);
            }
        }
    }
    let need = need.min(own_period) as i64;
    if need != own && (extra.is_none() || need > own) {
        let _ = write(parent, "cpu.rt_runtime_us", need, "linux.resources.cpu.realtimeRuntime");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::controller::fake_cgroup;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxResourcesBuilder};

    /// A shared parent gets what its children hold, by ratio to its own
    /// period, plus a new child's request; on delete it gives back what a
    /// removed child held.
    #[test]
    fn a_shared_parent_holds_its_childrens_rt_runtime() {
        let t = fake_cgroup(&["cpu.rt_runtime_us", "cpu.rt_period_us"]);
        let p = t.path();
        let set = |d: &Path, r: &str, per: &str| {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("cpu.rt_runtime_us"), r).unwrap();
            std::fs::write(d.join("cpu.rt_period_us"), per).unwrap();
        };
        let read = |d: &Path| std::fs::read_to_string(d.join("cpu.rt_runtime_us")).unwrap();
        set(p, "0", "1000000");
        set(&p.join("a"), "10000", "100000");
        set(&p.join("b"), "0", "1000000");
        set(&p.join("new"), "0", "1000000");
        fit_rt_parent(p, Some((&p.join("new"), 20000, 1000000)));
        assert_eq!(read(p), "120000");
        // A request larger than the period is capped (the kernel refuses it).
        fit_rt_parent(p, Some((&p.join("new"), 5_000_000, 1000000)));
        assert_eq!(read(p), "1000000");
        std::fs::remove_dir_all(p.join("new")).unwrap();
        fit_rt_parent(p, None);
        assert_eq!(read(p), "100000");
    }

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
