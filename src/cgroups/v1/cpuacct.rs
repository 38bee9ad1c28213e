//! v1 `cpuacct`: nothing to apply; CPU usage for the stats.
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::controller::{read, read_u64, Controller};
use crate::cgroups::stats::Stats;
use crate::error::Result;

pub struct CpuAcct;

fn list(dir: &Path, file: &str) -> Vec<u64> {
    read(dir, file)
        .map(|t| t.split_whitespace().filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_default()
}

impl Controller for CpuAcct {
    const NAME: &'static str = "cpuacct";

    fn wanted(_: &LinuxResources) -> Option<&'static str> {
        None
    }

    fn apply(_: &Path, _: &LinuxResources) -> Result<()> {
        Ok(())
    }

    fn stats(dir: &Path, stats: &mut Stats) {
        let u = &mut stats.cpu.usage;
        u.total = read_u64(dir, "cpuacct.usage").unwrap_or(0);
        u.percpu = list(dir, "cpuacct.usage_percpu");
        u.percpu_kernel = list(dir, "cpuacct.usage_percpu_sys");
        u.percpu_user = list(dir, "cpuacct.usage_percpu_user");
        // cpuacct.usage_user/_sys are in ns (cpuacct.stat is in clock ticks).
        u.user = read_u64(dir, "cpuacct.usage_user").unwrap_or(0);
        u.kernel = read_u64(dir, "cpuacct.usage_sys").unwrap_or(0);
    }
}
