//! The per-container monitor: a small process that outlives whoever
//! started the container (the pod runner, later the daemon). It creates and
//! starts the OCI container with stdout/stderr on pipes it holds, writes
//! them to a log file in the CRI format, reopens the log on SIGUSR1 (log
//! rotation), waits for the container's init as its subreaper, and records
//! the exit (code, signal, times, OOM) atomically on disk. With `stdin` or
//! `tty` it also holds the container's stdin pipe or pty master and serves
//! attaching clients on a socket ([`attach`]).
pub mod attach;
pub mod crilog;
pub mod exit;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SysContext};
use crate::oci::create::CreateOptions;
use crate::oci::state::StateRoot;
use crate::oci::{create, lifecycle};
use exit::ExitRecord;

/// What a monitor is asked to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorSpec {
    /// The OCI state root the container lives in.
    pub state_root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub log_path: PathBuf,
    pub exit_file: PathBuf,
    /// Create the container and leave it *created* (its init waiting on
    /// the exec fifo) for whoever calls `start`, instead of starting it.
    #[serde(default)]
    pub hold_created: bool,
}

/// What a monitor reports once the container exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spawned {
    /// The container's init on the host.
    pub init_pid: i32,
    /// The monitor process (it outlives whoever spawned it).
    pub monitor_pid: i32,
}

/// Start a monitor for the container and wait until the container runs.
/// Returns the container init's host pid. The monitor is detached (its own
/// session) and keeps running after the caller exits. `hull` is the hull
/// binary to run (`/proc/self/exe` from within hull).
pub fn spawn(spec: &MonitorSpec, hull: &Path) -> Result<i32> {
    spawn_monitor(spec, hull).map(|s| s.init_pid)
}

/// [`spawn`], returning the monitor's pid as well. The `hull monitor`
/// process forks the monitor itself and exits once it reported, so the
/// monitor is never the caller's child.
pub fn spawn_monitor(spec: &MonitorSpec, hull: &Path) -> Result<Spawned> {
    spawn_monitor_io(spec, &attach::Stdio::default(), hull)
}

/// [`spawn_monitor`] for a container whose stdio the monitor holds for
/// attaching (stdin pipe, terminal, attach socket).
pub fn spawn_monitor_io(spec: &MonitorSpec, stdio: &attach::Stdio, hull: &Path) -> Result<Spawned> {
    launch_monitor_io(spec, stdio, hull)?.wait()
}

/// A monitor started and making its container, its report not read yet
/// (see [`launch_monitor_io`]).
#[derive(Debug)]
pub struct Launch {
    /// `hull monitor`, which exits once it reported (the monitor proper is
    /// its child): reaped by [`Launch::wait`].
    child: std::process::Child,
    report: std::io::PipeReader,
}

/// Start [`spawn_monitor_io`]'s monitor and return at once, while it makes
/// the container; [`Launch::wait`] reads how that went. Dropped unread,
/// the monitor's report goes nowhere and its first child stays a zombie
/// of this process until it exits.
pub fn launch_monitor_io(spec: &MonitorSpec, stdio: &attach::Stdio, hull: &Path) -> Result<Launch> {
    let (ready_r, ready_w) = std::io::pipe().sys_context(|| "monitor ready pipe".into())?;
    let ready_fd: OwnedFd = ready_w.into();
    let mut cmd = Command::new(hull);
    cmd.arg("--root")
        .arg(&spec.state_root)
        .arg("monitor")
        .arg("--bundle")
        .arg(&spec.bundle)
        .arg("--log-path")
        .arg(&spec.log_path)
        .arg("--exit-file")
        .arg(&spec.exit_file)
        .arg("--ready-fd")
        .arg("1")
        .args(spec.hold_created.then_some("--hold-created"))
        .args(stdio.stdin.then_some("--stdin"))
        .args(stdio.stdin_once.then_some("--stdin-once"))
        .args(stdio.tty.then_some("--tty"));
    if let Some(sock) = &stdio.attach_socket {
        cmd.arg("--attach-socket").arg(sock);
    }
    // The report pipe is the monitor's stdout (see [`take_ready_fd`]).
    cmd.arg(&spec.id).stdin(Stdio::null()).stdout(Stdio::from(ready_fd)).stderr(Stdio::null());
    let child = cmd.spawn().sys_context(|| "start container monitor".into())?;
    // With it our copy of the write end goes: EOF means the monitor is done.
    drop(cmd);
    Ok(Launch { child, report: ready_r })
}

impl Launch {
    /// Wait until the monitor reports: the container exists (created, or
    /// running when the monitor was not asked to hold it), or why not.
    pub fn wait(mut self) -> Result<Spawned> {
        let answer = read_report(&mut self.report);
        let _ = self.child.wait();
        match answer.split_once(' ') {
            Some(("ok", pids)) => {
                let mut it = pids.split_whitespace().map(str::parse::<i32>);
                match (it.next(), it.next()) {
                    (Some(Ok(init_pid)), Some(Ok(monitor_pid))) => Ok(Spawned { init_pid, monitor_pid }),
                    _ => Err(Error::Init(format!("monitor said {answer:?}"))),
                }
            }
            Some(("err", msg)) => Err(Error::Init(msg.to_string())),
            _ => Err(Error::Init(format!("container monitor exited without a result ({answer:?})"))),
        }
    }
}

/// Read a helper's report: one line (`ok ...` / `err ...`), or what came
/// before EOF; at most 64 KiB.
pub fn read_report(r: &mut impl Read) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while out.len() < 64 * 1024 {
        match r.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => out.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The monitor process itself (`hull monitor`, hidden). Reports on `ready`
/// and returns the exit code for the monitor process.
pub fn run(root: &StateRoot, spec: &MonitorSpec, stdio: &attach::Stdio, ready: OwnedFd) -> i32 {
    crate::linux::syscall::single_malloc_arena();
    let mut ready = std::fs::File::from(ready);
    // The monitor is a child of this (fresh, single-threaded) process, which
    // exits at once: so the monitor is reparented away from whoever spawned
    // us, and a long-lived caller is left no zombie to reap.
    match crate::linux::syscall::fork() {
        Ok(crate::linux::syscall::Forked::Parent(_)) => crate::linux::syscall::exit_now(0),
        Ok(crate::linux::syscall::Forked::Child) => {}
        Err(e) => {
            let _ = write!(ready, "err {e}");
            return 1;
        }
    }
    let _ = nix::unistd::setsid();
    match prepare(root, spec, stdio) {
        Ok(running) => {
            // A line: a created container's init still holds a copy of
            // this pipe until it execs, so the reader cannot wait for EOF.
            let _ = writeln!(ready, "ok {} {}", running.pid, std::process::id());
            drop(ready);
            supervise(root, spec, running);
            0
        }
        Err(e) => {
            let _ = write!(ready, "err {e}");
            1
        }
    }
}

struct Running {
    pid: i32,
    /// The stdout pipe, or the pty master (a terminal's only output).
    stdout: OwnedFd,
    stderr: Option<OwnedFd>,
    hub: attach::Hub,
    signals: SignalFd,
    started_at: String,
}

fn prepare(root: &StateRoot, spec: &MonitorSpec, stdio: &attach::Stdio) -> Result<Running> {
    nix::sys::prctl::set_child_subreaper(true).sys_context(|| "PR_SET_CHILD_SUBREAPER".into())?;
    // SIGCHLD and SIGUSR1 arrive through a signalfd; SIGTERM/SIGINT are
    // ignored so that stopping the caller's session does not stop us.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGUSR1);
    mask.thread_block().sys_context(|| "block signals".into())?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).sys_context(|| "signalfd".into())?;
    // SAFETY: setting SIG_IGN installs no handler code.
    unsafe {
        let _ = nix::sys::signal::signal(Signal::SIGHUP, nix::sys::signal::SigHandler::SigIgn);
        let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn);
    }
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).sys_context(|| "pipe".into());
    let devnull = std::fs::File::open("/dev/null").sys_context(|| "open /dev/null".into())?;
    // The container inherits our stdio: point it at the pipes for the
    // create, then give our own stdio back to /dev/null so that only the
    // container holds its ends (EOF means it is gone). A terminal is made
    // by the container's init, which sends us the master.
    let mut console = None;
    let (mut out_r, mut err_r, mut stdin_w) = (None, None, None);
    if stdio.tty {
        let (ours, theirs) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .sys_context(|| "console socketpair".into())?;
        console = Some((ours, theirs));
    } else {
        let (r, w) = pipe()?;
        crate::linux::syscall::dup2_raw(w.as_raw_fd(), 1)?;
        out_r = Some(r);
        let (r, w) = pipe()?;
        crate::linux::syscall::dup2_raw(w.as_raw_fd(), 2)?;
        err_r = Some(r);
        if stdio.stdin {
            let (r, w) = pipe()?;
            crate::linux::syscall::dup2_raw(r.as_raw_fd(), 0)?;
            stdin_w = Some(w);
        } else {
            crate::linux::syscall::dup2_raw(devnull.as_raw_fd(), 0)?;
        }
    }
    let (console_ours, console_theirs) = console.map(|(a, b)| (Some(a), Some(b))).unwrap_or((None, None));
    let opts = CreateOptions { id: spec.id.clone(), bundle: spec.bundle.clone(), ..Default::default() };
    let result = create::create(root, &opts, console_theirs).and_then(|rec| {
        if spec.hold_created {
            return Ok(rec);
        }
        lifecycle::start(root, &spec.id).map(|_| rec)
    });
    for fd in 0..3 {
        crate::linux::syscall::dup2_raw(devnull.as_raw_fd(), fd)?;
    }
    let master = match (&result, console_ours) {
        (Ok(_), Some(sock)) => Some(receive_master(&sock)),
        _ => None,
    }
    .transpose();
    let (rec, master) = match result.and_then(|r| master.map(|m| (r, m))) {
        Ok(r) => r,
        Err(e) => {
            let _ = lifecycle::delete(root, &spec.id, true);
            return Err(e);
        }
    };
    let dup = |m: &OwnedFd| m.try_clone().sys_context(|| "dup pty master".into());
    let (stdout, input, master) = match master {
        Some(m) => (dup(&m)?, if stdio.stdin { Some(dup(&m)?) } else { None }, Some(m)),
        None => (out_r.ok_or_else(|| Error::Init("no stdout pipe".into()))?, stdin_w, None),
    };
    Ok(Running {
        pid: rec.pid,
        stdout,
        stderr: err_r,
        hub: attach::Hub::new(stdio, input, master)?,
        signals,
        started_at: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
    })
}

fn supervise(root: &StateRoot, spec: &MonitorSpec, r: Running) {
    let mut log = crilog::CriLog::open(&spec.log_path);
    let mut hub = r.hub;
    let mut streams = [(Some(r.stdout), crilog::Stream::Stdout), (r.stderr, crilog::Stream::Stderr)];
    let mut status: Option<WaitStatus> = None;
    let mut drain_deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 32 * 1024];
    let mut trimmed = false;
    loop {
        let open: Vec<usize> = (0..2).filter(|i| streams[*i].0.is_some()).collect();
        if status.is_some() && (open.is_empty() || drain_deadline.is_some_and(|d| Instant::now() >= d)) {
            break;
        }
        let mut fds: Vec<PollFd> = open
            .iter()
            .map(|i| PollFd::new(streams[*i].0.as_ref().expect("open").as_fd(), PollFlags::POLLIN))
            .collect();
        fds.push(PollFd::new(r.signals.as_fd(), PollFlags::POLLIN));
        fds.extend(hub.poll_fds().into_iter().map(|i| PollFd::new(i.fd, i.flags)));
        let timeout = if status.is_some() { PollTimeout::from(100u16) } else { PollTimeout::NONE };
        if !trimmed {
            // Setting up ran most of hull; waiting needs little of it.
            // Trimmed just before the first wait, so that only the loop's
            // own code faults back in.
            crate::linux::syscall::shrink_resident();
            trimmed = true;
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
        let revents: Vec<PollFlags> = fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
        drop(fds);
        // First, while the hub is as it was when polled (output below may
        // drop clients and so shift its part of the poll set).
        hub.handle(&revents[open.len() + 1..]);
        for (slot, ev) in open.iter().zip(&revents) {
            if ev.is_empty() {
                continue;
            }
            let (fd, stream) = &mut streams[*slot];
            // A pty master reads EIO once the terminal's last user closed
            // it: its end of file. It is non-blocking (shared with input).
            let n = match nix::unistd::read(fd.as_ref().expect("open"), &mut buf) {
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => continue,
                r => r.unwrap_or(0),
            };
            if n == 0 {
                log.flush_partial(*stream);
                *fd = None;
            } else {
                log.write(*stream, &buf[..n]);
                let tag = if *stream == crilog::Stream::Stdout { attach::OUT_STDOUT } else { attach::OUT_STDERR };
                hub.broadcast(tag, &buf[..n]);
            }
        }
        if !revents[open.len()].is_empty() {
            while let Ok(Some(info)) = r.signals.read_signal() {
                if info.ssi_signo == Signal::SIGUSR1 as u32 {
                    log.reopen();
                }
            }
            reap(r.pid, &mut status);
            if status.is_some() && drain_deadline.is_none() {
                // Processes the init left behind may hold the pipes open.
                drain_deadline = Some(Instant::now() + Duration::from_secs(2));
            }
        }
    }
    for (fd, stream) in &mut streams {
        if fd.take().is_some() {
            log.flush_partial(*stream);
        }
    }
    hub.finish(Duration::from_secs(1));
    let record = ExitRecord::from_status(
        status.unwrap_or(WaitStatus::Exited(nix::unistd::Pid::from_raw(r.pid), 255)),
        r.started_at,
        oom_killed(root, &spec.id),
    );
    if let Err(e) = record.save(&spec.exit_file) {
        log::error!("monitor {}: {e}", spec.id);
    }
}

/// The pty master the container's init sent on the console socket (it
/// did so before create returned; the wait is bounded all the same).
fn receive_master(sock: &OwnedFd) -> Result<OwnedFd> {
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(10_000u16)) {
        Ok(n) if n > 0 => crate::oci::tty_proxy::receive_master_on(sock.as_fd()),
        _ => Err(Error::Init("the container's init sent no terminal".into())),
    }
}

/// Reap every exited child; remember the init's status.
fn reap(init: i32, status: &mut Option<WaitStatus>) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(s) => {
                if s.pid().map(|p| p.as_raw()) == Some(init) {
                    *status = Some(s);
                }
            }
        }
    }
}

/// Whether the kernel OOM-killed a process of the container (memory
/// cgroup counters: v1 memory.oom_control, v2 memory.events).
pub fn oom_killed(root: &StateRoot, id: &str) -> bool {
    let Ok(rec) = root.load(id) else { return false };
    let Some(cg) = rec.cgroup else { return false };
    let read_counter = |dir: &Path, file: &str| {
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("oom_kill ").map(|v| v.trim().parse::<u64>().unwrap_or(0))))
            .unwrap_or(0)
    };
    if let Some(dir) = cg.dirs.get("memory") {
        return read_counter(dir, "memory.oom_control") > 0;
    }
    if let Some(dir) = cg.dirs.get("") {
        return read_counter(dir, "memory.events") > 0;
    }
    false
}

/// A helper's end of its report pipe (`--ready-fd`), in a session of its
/// own (it must not get its spawner's terminal signals). Spawners pass the
/// pipe as the helper's stdout: with no code to run between fork and exec
/// (no dup2 onto another fd, no setsid there), std starts the helper with
/// posix_spawn, a vfork that does not copy the spawner's address space (a
/// fork of the daemon costs ~1 ms more per CreateContainer here). A pipe
/// on a standard stream is moved to an fd of its own and /dev/null takes
/// its place, so nothing the helper prints reaches the reader.
pub fn take_ready_fd(fd: RawFd) -> Result<OwnedFd> {
    let _ = nix::unistd::setsid();
    let ready = ready_fd(fd)?;
    if fd > 2 {
        return Ok(ready);
    }
    let moved = nix::fcntl::fcntl(&ready, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3)).sys_context(|| format!("move --ready-fd {fd}"))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    let moved = unsafe { OwnedFd::from_raw_fd(moved) };
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .sys_context(|| "open /dev/null".into())?;
    // Onto the stream's number, which `ready` owned: it is /dev/null now
    // and stays open.
    crate::linux::syscall::dup2_raw(null.as_raw_fd(), std::os::fd::IntoRawFd::into_raw_fd(ready))?;
    Ok(moved)
}

/// The fd a helper was passed to report on (`--ready-fd`), checked open.
pub fn ready_fd(fd: RawFd) -> Result<OwnedFd> {
    if nix::fcntl::fcntl(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, nix::fcntl::FcntlArg::F_GETFD).is_err() {
        return Err(Error::InvalidArgument(format!("--ready-fd {fd} is not open")));
    }
    // SAFETY: checked open above; the fd was passed to us for this purpose.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
