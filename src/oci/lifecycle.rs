//! The operations on an existing container: start, kill, delete, pause,
//! resume, and the queries state, list and ps.
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::hooks::{self, HookKind};
use super::state::{ContainerRecord, StateOutput, StateRoot, Status, EXEC_FIFO};
use crate::error::{Error, Result, SysContext};

/// Release a created container's init to exec the program, then run the
/// poststart hooks.
pub fn start(root: &StateRoot, id: &str) -> Result<ContainerRecord> {
    let rec = root.load(id)?;
    match rec.status(root) {
        Status::Created => {}
        Status::Stopped => return Err(Error::InvalidState("cannot start a container that has stopped".into())),
        s => return Err(Error::InvalidState(format!("cannot start an already {s} container"))),
    }
    let fifo_path = root.container_dir(id).join(EXEC_FIFO);
    // The exec fifo is polled together with a pidfd of the init, so that
    // neither its byte nor its death is waited for with sleeps. The pidfd
    // comes first, while the init is still blocked opening its end of the
    // fifo (it cannot go on, exec and exit before we open ours), and the
    // pid is checked again after it, so the pidfd is the init's and not a
    // recycled pid's.
    let pidfd = crate::linux::syscall::pidfd_open(rec.pid);
    if !rec.init_alive() {
        let _ = std::fs::remove_file(&fifo_path);
        return Err(Error::InvalidState("container init exited before start".into()));
    }
    // Non-blocking open: if init died meanwhile there is no writer, and a
    // blocking read would then wait forever.
    let fifo = nix::fcntl::open(&fifo_path, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty())
        .sys_context(|| "open exec fifo".into())?;
    let mut file = std::fs::File::from(fifo);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 1];
    loop {
        match file.read(&mut buf) {
            Ok(1) => break,
            Ok(_) | Err(_) if !rec.init_alive() => {
                // The read and the look at the init are two steps: between
                // them a quick program's init can open its end, write its
                // byte, exec, run and exit (a zombie counts as gone). Its
                // byte then still waits in the fifo, so one more read says
                // whether it got as far as the program.
                if matches!(file.read(&mut buf), Ok(1)) {
                    break;
                }
                let _ = std::fs::remove_file(&fifo_path);
                return Err(Error::InvalidState("container init exited before start".into()));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::sys("read exec fifo", e)),
        }
        if Instant::now() > deadline {
            return Err(Error::InvalidState("container init did not take the start signal within 30s".into()));
        }
        wait_fifo(&file, pidfd.as_ref(), deadline);
    }
    // Then EOF: the init's end of the fifo closes when it execs the program
    // (or dies trying).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !rec.init_alive() || Instant::now() > deadline {
                    break;
                }
                wait_fifo(&file, pidfd.as_ref(), deadline);
            }
            Err(e) => return Err(Error::sys("read exec fifo", e)),
        }
    }
    std::fs::remove_file(&fifo_path).sys_context(|| "remove exec fifo".into())?;
    // runtime-spec: poststart hooks run after the program has started, before
    // `start` returns; a failure is only a warning at this point.
    let h = rec.config.hooks().as_ref();
    if let Err(e) = hooks::run_all(HookKind::Poststart, h.and_then(|h| h.poststart().as_ref()), &rec.spec_state(Status::Running)) {
        log::warn!("{e}");
    }
    Ok(rec)
}

/// Block until the exec fifo has data or its writer closed, the init exits
/// (its pidfd turns readable) or the deadline passes. Without a pidfd the
/// wait is cut into 10 ms slices, after each of which the caller looks at
/// the init again.
fn wait_fifo(fifo: &std::fs::File, pidfd: Option<&OwnedFd>, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    let slice = if pidfd.is_some() { left } else { left.min(Duration::from_millis(10)) };
    let ms = u16::try_from(slice.as_millis().max(1)).unwrap_or(u16::MAX);
    let mut fds = vec![PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
    if let Some(p) = pidfd {
        fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
    }
    let _ = poll(&mut fds, PollTimeout::from(ms));
}

/// Parse a signal as runc does: "KILL", "SIGKILL" or "9".
pub fn parse_signal(s: &str) -> Result<Signal> {
    let bad = || Error::InvalidArgument(format!("unknown signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<Signal>().map_err(|_| bad())
}

pub fn kill(root: &StateRoot, id: &str, signal: Signal, all: bool) -> Result<()> {
    let rec = root.load(id)?;
    let status = rec.status(root);
    // runtime-spec: signalling a container that is neither created nor
    // running is an error. `--all` on a stopped one is runc's exception,
    // kept: containerd uses it to kill what is left in the cgroup of a
    // container whose init has exited (a shared pid namespace).
    if status == Status::Stopped && !all {
        return Err(Error::InvalidState("container not running".into()));
    }
    if all {
        if let Some(cg) = &rec.cgroup {
            return cg.signal_all(signal);
        }
    }
    nix::sys::signal::kill(Pid::from_raw(rec.pid), signal).sys_context(|| format!("kill {} {signal}", rec.pid))
}

/// Delete a container: stopped ones always; created, running or paused
/// ones only with `force`.
///
/// runc (1.1) and crun (1.8) delete a created container without `--force`,
/// killing its init; the runtime-spec says deleting a container that is
/// not stopped "MUST have no effect on the container and MUST generate an
/// error": hull follows the spec. (containerd kills a created task before
/// deleting it, and force-deletes after a failed create, so it is not
/// affected.)
///
/// Returns whether a stopped container was OOM-killed, read last thing
/// before its cgroup goes (None when unknown or killed here); it logs
/// nothing about it, the caller does.
pub fn delete(root: &StateRoot, id: &str, force: bool) -> Result<Option<bool>> {
    let mut rec = match root.load(id) {
        Ok(r) => r,
        // A state dir without a record is a create that died halfway: with
        // --force, clean it up; otherwise say it does not exist.
        Err(Error::NotFound(_)) if force && root.container_dir(id).exists() => {
            let _ = std::fs::remove_dir_all(root.container_dir(id));
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let status = rec.status(root);
    let oom_killed = match status {
        Status::Stopped => {
            // The last chance to read the OOM counter: the cgroup goes next.
            // The callers say it (once): `delete`, `run`, the pod runtime.
            rec.observe_oom_unsaved(root)
        }
        Status::Created | Status::Running | Status::Paused | Status::Creating if force => {
            kill_and_wait(&rec)?;
            None
        }
        s => return Err(Error::InvalidState(format!("cannot delete container {id} that is not stopped: {s}"))),
    };
    destroy(root, &rec)?;
    Ok(oom_killed)
}

fn kill_and_wait(rec: &ContainerRecord) -> Result<()> {
    match &rec.cgroup {
        Some(cg) => {
            cg.signal_all(Signal::SIGKILL)?;
        }
        None => {
            let _ = nix::sys::signal::kill(Pid::from_raw(rec.pid), Signal::SIGKILL);
        }
    }
    if !super::wait::wait_gone(rec.pid, Duration::from_secs(10)) {
        return Err(Error::InvalidState(format!("container init {} did not die after SIGKILL", rec.pid)));
    }
    // Other processes of the container (with their own pids) go with the
    // cgroup: wait until it is empty.
    if let Some(cg) = &rec.cgroup {
        for _ in 0..1000 {
            if cg.pids().map(|p| p.is_empty()).unwrap_or(true) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Ok(())
}

/// Remove everything the container owns, then run the poststop hooks.
fn destroy(root: &StateRoot, rec: &ContainerRecord) -> Result<()> {
    if let Some(cg) = &rec.cgroup {
        // Lingering processes (the init's children) are killed first.
        if cg.pids().map(|p| !p.is_empty()).unwrap_or(false) {
            kill_and_wait(rec)?;
        }
        cg.remove()?;
    }
    crate::linux::netdev::move_out(&rec.net_devices, &root.container_dir(&rec.id));
    std::fs::remove_dir_all(root.container_dir(&rec.id)).sys_context(|| format!("remove state of {}", rec.id))?;
    // runtime-spec: poststop failures are logged, and delete still succeeds.
    let h = rec.config.hooks().as_ref();
    if let Err(e) = hooks::run_all(HookKind::Poststop, h.and_then(|h| h.poststop().as_ref()), &rec.spec_state(Status::Stopped)) {
        log::warn!("{e}");
    }
    Ok(())
}

pub fn state(root: &StateRoot, id: &str) -> Result<StateOutput> {
    let mut rec = root.load(id)?;
    rec.observe_oom(root);
    Ok(rec.output(root))
}

pub fn list(root: &StateRoot) -> Result<Vec<StateOutput>> {
    let mut out = Vec::new();
    for id in root.ids()? {
        match root.load(&id) {
            Ok(mut rec) => {
                rec.observe_oom(root);
                out.push(rec.output(root))
            }
            Err(e) => log::warn!("skipping {id}: {e}"),
        }
    }
    Ok(out)
}

/// Pids of all processes in the container.
pub fn pids(root: &StateRoot, id: &str) -> Result<Vec<i32>> {
    let rec = root.load(id)?;
    match &rec.cgroup {
        Some(cg) => cg.pids(),
        None => Ok(if rec.init_alive() { vec![rec.pid] } else { vec![] }),
    }
}

pub fn pause(root: &StateRoot, id: &str) -> Result<()> {
    let rec = root.load(id)?;
    match rec.status(root) {
        Status::Running | Status::Created => {}
        s => return Err(Error::InvalidState(format!("container not running: {s}"))),
    }
    rec.cgroup.as_ref().ok_or_else(|| Error::Cgroup("container has no cgroup".into()))?.set_frozen(true)
}

pub fn resume(root: &StateRoot, id: &str) -> Result<()> {
    let rec = root.load(id)?;
    if rec.status(root) != Status::Paused {
        return Err(Error::InvalidState("container not paused".into()));
    }
    rec.cgroup
        .as_ref()
        .ok_or_else(|| Error::Cgroup("container has no cgroup".into()))?
        .set_frozen(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names_and_numbers() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("term").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
