//! The OCI runtime: config, state, lifecycle operations and hooks.
pub mod config;
pub mod create;
pub mod events;
pub mod exec;
pub mod features;
pub mod hooks;
pub mod lifecycle;
pub mod spec_template;
pub mod state;
pub mod update;
pub mod wait;

use crate::error::{Result, SysContext};
use create::CreateOptions;
use state::StateRoot;

/// `run`: create + start, then (unless detached) wait for the container's
/// init, delete the container (as runc does) and return its exit code.
pub fn run(root: &StateRoot, opts: &CreateOptions, detach: bool) -> Result<i32> {
    if !detach {
        // The init is a grandchild: as subreaper hull inherits it when the
        // bootstrap child exits, and can wait for it.
        nix::sys::prctl::set_child_subreaper(true).sys_context(|| "PR_SET_CHILD_SUBREAPER".into())?;
    }
    let rec = create::create(root, opts, None)?;
    let set = (!detach).then(wait::block_signals);
    if let Err(e) = lifecycle::start(root, &opts.id) {
        let _ = lifecycle::delete(root, &opts.id, true);
        return Err(e);
    }
    let Some(set) = set else { return Ok(0) };
    let code = wait::wait_forwarding(rec.pid, &set);
    // Read the OOM counter before delete removes the cgroup; an OOM-killed
    // init died of SIGKILL, so the exit code is already 137.
    if let Ok(mut rec) = root.load(&opts.id) {
        if rec.observe_oom(root) == Some(true) {
            log::warn!("container {} was OOM-killed (exit code {code})", opts.id);
        }
    }
    lifecycle::delete(root, &opts.id, true)?;
    Ok(code)
}
