//! The pod sandbox: a tiny holder process ("hull-pause") that owns the
//! pod's network, UTS and IPC namespaces (and its PID namespace when the
//! pod shares one, where it is pid 1 and reaps orphans). Containers join
//! them through /proc/<holder>/ns/*.
//!
//! A process rather than namespaces pinned by bind mounts: a shared PID
//! namespace needs a live pid 1 anyway, one mechanism serves every case,
//! and there is nothing mounted on the host to leak; the cost is one
//! sleeping process per pod (its RSS is reported by `make bench`).
use std::io::{Read, Write};
use std::os::fd::AsRawFd;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::store::Holder;
use crate::error::{Error, Result, SysContext};
use crate::linux::syscall::{fork, Forked};

/// Which namespaces the pod gets of its own.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub hostname: Option<String>,
    pub network: bool,
    pub ipc: bool,
    pub uts: bool,
    pub pid: bool,
}

/// Start the holder; returns once its namespaces exist.
pub fn start_holder(spec: &SandboxSpec) -> Result<Holder> {
    let (mut r, w) = std::io::pipe().sys_context(|| "holder pipe".into())?;
    match fork()? {
        Forked::Child => {
            drop(r);
            let mut w = w;
            let code = match holder_setup(spec, &mut w) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = write!(w, "err {e}");
                    1
                }
            };
            std::process::exit(code)
        }
        Forked::Parent(child) => {
            drop(w);
            let mut answer = String::new();
            let _ = r.read_to_string(&mut answer);
            // The first child exits once the holder runs (or on failure).
            let _ = waitpid(child, None);
            let pid: i32 = match answer.split_once(' ') {
                Some(("ok", pid)) => pid.trim().parse().map_err(|_| Error::Init(format!("holder said {answer:?}")))?,
                Some(("err", msg)) => return Err(Error::Init(format!("pod sandbox: {msg}"))),
                _ => return Err(Error::Init(format!("pod sandbox holder died ({answer:?})"))),
            };
            let start_time = crate::oci::state::process_start_time(pid)
                .ok_or_else(|| Error::Init("pod sandbox holder died at start".into()))?;
            Ok(Holder { pid, start_time })
        }
    }
}

/// In the first child: unshare, fork the holder (pid 1 of a new pid
/// namespace when asked), report its pid, exit.
fn holder_setup(spec: &SandboxSpec, w: &mut std::io::PipeWriter) -> Result<()> {
    nix::unistd::setsid().sys_context(|| "setsid".into())?;
    let mut flags = CloneFlags::empty();
    for (on, f) in [
        (spec.network, CloneFlags::CLONE_NEWNET),
        (spec.ipc, CloneFlags::CLONE_NEWIPC),
        (spec.uts, CloneFlags::CLONE_NEWUTS),
        (spec.pid, CloneFlags::CLONE_NEWPID),
    ] {
        if on {
            flags |= f;
        }
    }
    nix::sched::unshare(flags).sys_context(|| format!("unshare {flags:?}"))?;
    if let Some(h) = spec.hostname.as_deref().filter(|_| spec.uts) {
        nix::unistd::sethostname(h).sys_context(|| format!("sethostname {h:?}"))?;
    }
    if spec.network {
        crate::linux::syscall::set_loopback_up()?;
    }
    match fork()? {
        Forked::Parent(pid) => {
            let _ = write!(w, "ok {pid}");
            Ok(())
        }
        Forked::Child => holder_loop(w.as_raw_fd()),
    }
}

/// The holder itself: sleeps, reaps orphans, exits on SIGTERM/SIGINT.
fn holder_loop(keep: i32) -> ! {
    let _ = nix::sys::prctl::set_name(c"hull-pause");
    // Nothing of hull's stays open in the holder.
    for fd in 3..1024 {
        if fd != keep {
            let _ = nix::unistd::close(fd);
        }
    }
    let _ = nix::unistd::close(keep);
    // Nor the caller's stdio: whoever reads `hull pod run`'s output must see
    // it end when the command does.
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = crate::linux::syscall::dup2_raw(std::os::fd::AsRawFd::as_raw_fd(&null), fd);
        }
    }
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    let _ = set.thread_block();
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => {}
                }
            },
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => std::process::exit(0),
            _ => {}
        }
    }
}

/// Stop the holder (its namespaces go when the last member leaves).
pub fn stop_holder(h: &Holder) {
    if h.alive() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(h.pid), Signal::SIGKILL);
        crate::oci::wait::wait_gone(h.pid, std::time::Duration::from_secs(5));
    }
}

/// The namespace file of the holder for a type ("net", "ipc", "uts", "pid").
pub fn ns_path(h: &Holder, typ: &str) -> String {
    format!("/proc/{}/ns/{typ}", h.pid)
}
