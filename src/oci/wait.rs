//! Waiting for container processes: as their subreaper (run, exec), or by
//! watching /proc when someone else reaps them (delete, rollback).
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::state::process_start_time;

/// Poll until the process is gone (or a zombie) or the time is up.
/// Returns true when it is gone.
pub fn wait_gone(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    let mut pause = Duration::from_micros(100);
    loop {
        // Reap it if it is our child; harmless otherwise.
        let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        if process_start_time(pid).is_none() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// The exit code a shell would report: the status, or 128+signal.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Signals hull forwards to the container while it waits in the foreground.
const FORWARDED: [Signal; 7] =
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH];

/// Blocks the forwarded signals and SIGCHLD; call before the process can
/// exit, and only after every fork (children inherit the mask; the
/// container's init and exec'd processes are forked before this).
pub fn block_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(s);
    }
    let _ = set.thread_block();
    set
}

/// Wait for `pid` (our child: hull is its parent or subreaper), reaping any
/// other children on the way and forwarding signals to it. Returns its
/// exit code.
pub fn wait_forwarding(pid: i32, set: &SigSet) -> i32 {
    wait_forwarding_with(pid, set, None)
}

/// [`wait_forwarding`], with SIGWINCH handed to `on_winch` instead of being
/// forwarded: a foreground terminal proxy copies the new size onto the
/// container's pty, and the kernel then signals the container's foreground
/// process group itself.
pub fn wait_forwarding_with(pid: i32, set: &SigSet, on_winch: Option<&dyn Fn()>) -> i32 {
    let target = Pid::from_raw(pid);
    loop {
        // Reap everything that has exited; stop when the target has.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status) => {
                    if status.pid() == Some(target) {
                        if let Some(code) = exit_code(status) {
                            return code;
                        }
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    // No children left: the target is gone and was reaped elsewhere.
                    if process_start_time(pid).is_none() {
                        return 255;
                    }
                    break;
                }
            }
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) => {}
            Ok(Signal::SIGWINCH) if on_winch.is_some() => on_winch.map_or((), |f| f()),
            Ok(sig) => {
                let _ = nix::sys::signal::kill(target, sig);
            }
            Err(_) => {}
        }
    }
}
