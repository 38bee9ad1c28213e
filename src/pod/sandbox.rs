//! The pod sandbox: a tiny holder process ("hull-pause") that owns the
//! pod's network, UTS and IPC namespaces (and its PID namespace when the
//! pod shares one, where it is pid 1 and reaps orphans). Containers join
//! them through /proc/<holder>/ns/*.
//!
//! A process rather than namespaces pinned by bind mounts: a shared PID
//! namespace needs a live pid 1 anyway, one mechanism serves every case,
//! and there is nothing mounted on the host to leak; the cost is one
//! sleeping process per pod (its RSS is reported by `make bench`). The
//! holder is the runtime layer's ([`crate::runtime::holder`]): an exec'd
//! `hull sandbox-holder`, so nothing forks the caller.
use std::path::Path;

use super::store::Holder;
use crate::error::Result;
use crate::runtime::holder::{self, HolderSpec};

/// Which namespaces the pod gets of its own.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub hostname: Option<String>,
    pub network: bool,
    pub ipc: bool,
    pub uts: bool,
    pub pid: bool,
}

/// Start the holder (by exec'ing `hull`); returns once its namespaces exist.
pub fn start_holder(hull: &Path, spec: &SandboxSpec) -> Result<Holder> {
    let h = holder::spawn(
        hull,
        &HolderSpec {
            network: spec.network,
            ipc: spec.ipc,
            uts: spec.uts,
            pid: spec.pid,
            hostname: spec.hostname.clone().filter(|_| spec.uts),
            ..Default::default()
        },
    )
    .map_err(|e| crate::Error::Init(format!("pod sandbox: {e}")))?;
    Ok(Holder { pid: h.pid, start_time: h.start_time })
}

/// Stop the holder (its namespaces go when the last member leaves).
pub fn stop_holder(h: &Holder) {
    holder::stop(&crate::runtime::record::HolderRecord { pid: h.pid, start_time: h.start_time });
}

/// The namespace file of the holder for a type ("net", "ipc", "uts", "pid").
pub fn ns_path(h: &Holder, typ: &str) -> String {
    format!("/proc/{}/ns/{typ}", h.pid)
}
