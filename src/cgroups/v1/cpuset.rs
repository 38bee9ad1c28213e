//! v1 `cpuset`: cpus and mems.
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::controller::{write, Controller};
use crate::error::Result;

pub struct CpuSet;

impl Controller for CpuSet {
    const NAME: &'static str = "cpuset";

    fn wanted(r: &LinuxResources) -> Option<&'static str> {
        let c = r.cpu().as_ref()?;
        if c.cpus().as_deref().is_some_and(|s| !s.is_empty()) {
            return Some("linux.resources.cpu.cpus");
        }
        c.mems().as_deref().is_some_and(|s| !s.is_empty()).then_some("linux.resources.cpu.mems")
    }

    fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
        let Some(c) = r.cpu() else { return Ok(()) };
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            write(dir, "cpuset.cpus", cpus, "linux.resources.cpu.cpus")?;
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            write(dir, "cpuset.mems", mems, "linux.resources.cpu.mems")?;
        }
        Ok(())
    }
}
