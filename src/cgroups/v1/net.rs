//! v1 `net_cls` (class id) and `net_prio` (per-interface priorities).
use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::cgroups::controller::{write, Controller};
use crate::error::Result;

pub struct NetCls;
pub struct NetPrio;

impl Controller for NetCls {
    const NAME: &'static str = "net_cls";

    fn wanted(r: &LinuxResources) -> Option<&'static str> {
        r.network().as_ref()?.class_id().map(|_| "linux.resources.network.classID")
    }

    fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
        if let Some(id) = r.network().as_ref().and_then(|n| n.class_id()) {
            write(dir, "net_cls.classid", id, "linux.resources.network.classID")?;
        }
        Ok(())
    }
}

impl Controller for NetPrio {
    const NAME: &'static str = "net_prio";

    fn wanted(r: &LinuxResources) -> Option<&'static str> {
        r.network()
            .as_ref()?
            .priorities()
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(|_| "linux.resources.network.priorities")
    }

    fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
        for p in r.network().as_ref().and_then(|n| n.priorities().as_ref()).into_iter().flatten() {
            write(dir, "net_prio.ifpriomap", format!("{} {}", p.name(), p.priority()), "linux.resources.network.priorities")?;
        }
        Ok(())
    }
}
