//! v1 `pids`: pids.max (the v2 file has the same name and format).
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::controller::{read, read_u64, write, Controller};
use crate::cgroups::stats::Stats;
use crate::error::Result;

pub struct Pids;

/// runc's mapping: > 0 is the limit, < 0 means "max", 0 leaves it alone.
pub fn pids_max(limit: i64) -> Option<String> {
    match limit {
        0 => None,
        l if l < 0 => Some("max".into()),
        l => Some(l.to_string()),
    }
}

impl Controller for Pids {
    const NAME: &'static str = "pids";

    fn wanted(r: &LinuxResources) -> Option<&'static str> {
        r.pids().as_ref().map(|_| "linux.resources.pids.limit")
    }

    fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
        if let Some(v) = r.pids().as_ref().and_then(|p| pids_max(p.limit())) {
            write(dir, "pids.max", v, "linux.resources.pids.limit")?;
        }
        Ok(())
    }

    fn stats(dir: &Path, stats: &mut Stats) {
        stats.pids.current = read_u64(dir, "pids.current").unwrap_or(0);
        // "max" is reported as 0, as runc does.
        stats.pids.limit = read(dir, "pids.max").and_then(|v| v.parse().ok()).unwrap_or(0);
    }
}
