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
pub mod tty_proxy;
pub mod update;
pub mod wait;

use crate::error::{Result, SysContext};

/// Whether the bundle's process asks for a terminal (read before create so
/// `run` can prepare the proxy; create validates the config fully).
/// (Read as plain JSON: parsing the spec here would log its warnings a
/// second time.)
fn wants_terminal(bundle: &std::path::Path) -> bool {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.pointer("/process/terminal").and_then(|t| t.as_bool()))
        .unwrap_or(false)
}
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
    // A terminal in the foreground without a console socket: hull holds
    // the pty master and proxies its own stdio (runc does the same).
    let terminal = match &opts.loaded {
        Some(b) => b.spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false),
        None => wants_terminal(&opts.bundle),
    };
    let proxy_console = !detach && opts.console_socket.is_none() && terminal;
    let (receiver, console) = match proxy_console {
        true => {
            let (r, c) = tty_proxy::console_pair()?;
            (Some(r), Some(c))
        }
        false => (None, None),
    };
    let rec = create::create(root, opts, console)?;
    // Signals are blocked before the proxy threads exist, so that they
    // inherit the mask and every signal waits for wait_forwarding.
    let set = (!detach).then(wait::block_signals);
    let proxy = match receiver.map(|r| r.receive_master().and_then(tty_proxy::Proxy::start)).transpose() {
        Ok(p) => p,
        Err(e) => {
            let _ = lifecycle::delete(root, &opts.id, true);
            return Err(e);
        }
    };
    if let Err(e) = lifecycle::start(root, &opts.id) {
        let _ = lifecycle::delete(root, &opts.id, true);
        return Err(e);
    }
    let Some(set) = set else { return Ok(0) };
    let code = tty_proxy::Proxy::wait(proxy.as_ref(), rec.pid, &set);
    if let Some(p) = proxy {
        p.finish(std::time::Duration::from_secs(1));
    }
    // delete reads the OOM counter before it removes the cgroup; an
    // OOM-killed init died of SIGKILL, so the exit code is already 137.
    if lifecycle::delete(root, &opts.id, true)? == Some(true) {
        log::warn!("container {} was OOM-killed (exit code {code})", opts.id);
    }
    Ok(code)
}
