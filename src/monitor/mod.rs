//! The per-container monitor: a small process that outlives whoever
//! started the container (the pod runner, later the daemon). It creates and
//! starts the OCI container with stdout/stderr on pipes it holds, writes
//! them to a log file in the CRI format, reopens the log on SIGUSR1 (log
//! rotation), waits for the container's init as its subreaper, and records
//! the exit (code, signal, times, OOM) atomically on disk.
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
    let (mut ready_r, ready_w) = std::io::pipe().sys_context(|| "monitor ready pipe".into())?;
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
        .arg("3")
        .args(spec.hold_created.then_some("--hold-created"))
        .arg(&spec.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let raw = ready_fd.as_raw_fd();
    // SAFETY: between fork and exec the closure only calls dup2/setsid,
    // which are async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().sys_context(|| "start container monitor".into())?;
    drop(ready_fd);
    drop(cmd);
    let answer = read_report(&mut ready_r);
    match answer.split_once(' ') {
        Some(("ok", pids)) => {
            let _ = child.wait();
            let mut it = pids.split_whitespace().map(str::parse::<i32>);
            match (it.next(), it.next()) {
                (Some(Ok(init_pid)), Some(Ok(monitor_pid))) => Ok(Spawned { init_pid, monitor_pid }),
                _ => Err(Error::Init(format!("monitor said {answer:?}"))),
            }
        }
        Some(("err", msg)) => {
            let _ = child.wait();
            Err(Error::Init(msg.to_string()))
        }
        _ => {
            let _ = child.wait();
            Err(Error::Init(format!("container monitor exited without a result ({answer:?})")))
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
pub fn run(root: &StateRoot, spec: &MonitorSpec, ready: OwnedFd) -> i32 {
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
    match prepare(root, spec) {
        Ok(running) => {
            // A line: a created container's init still holds a copy of
            // this pipe until it execs, so the reader cannot wait for EOF.
            let _ = writeln!(ready, "ok {} {}", running.pid, std::process::id());
            drop(ready);
            // Setting up ran most of hull; waiting needs little of it.
            crate::linux::syscall::shrink_resident();
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
    stdout: OwnedFd,
    stderr: OwnedFd,
    signals: SignalFd,
    started_at: String,
}

fn prepare(root: &StateRoot, spec: &MonitorSpec) -> Result<Running> {
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
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).sys_context(|| "pipe".into())?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).sys_context(|| "pipe".into())?;
    let devnull = std::fs::File::open("/dev/null").sys_context(|| "open /dev/null".into())?;
    // The container inherits our stdio: point it at the pipes for the
    // create, then give our own stdio back to /dev/null so that only the
    // container holds the write ends (EOF means it is gone).
    crate::linux::syscall::dup2_raw(devnull.as_raw_fd(), 0)?;
    crate::linux::syscall::dup2_raw(out_w.as_raw_fd(), 1)?;
    crate::linux::syscall::dup2_raw(err_w.as_raw_fd(), 2)?;
    drop((out_w, err_w));
    let opts = CreateOptions { id: spec.id.clone(), bundle: spec.bundle.clone(), ..Default::default() };
    let result = create::create(root, &opts, None).and_then(|rec| {
        if spec.hold_created {
            return Ok(rec);
        }
        lifecycle::start(root, &spec.id).map(|_| rec)
    });
    crate::linux::syscall::dup2_raw(devnull.as_raw_fd(), 1)?;
    crate::linux::syscall::dup2_raw(devnull.as_raw_fd(), 2)?;
    let rec = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = lifecycle::delete(root, &spec.id, true);
            return Err(e);
        }
    };
    Ok(Running {
        pid: rec.pid,
        stdout: out_r,
        stderr: err_r,
        signals,
        started_at: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
    })
}

fn supervise(root: &StateRoot, spec: &MonitorSpec, r: Running) {
    let mut log = crilog::CriLog::open(&spec.log_path);
    let mut streams = [(Some(r.stdout), crilog::Stream::Stdout), (Some(r.stderr), crilog::Stream::Stderr)];
    let mut status: Option<WaitStatus> = None;
    let mut drain_deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 32 * 1024];
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
        let timeout = if status.is_some() { PollTimeout::from(100u16) } else { PollTimeout::NONE };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break,
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|e| !e.is_empty())).collect();
        drop(fds);
        for (slot, is_ready) in open.iter().zip(&ready) {
            if !is_ready {
                continue;
            }
            let (fd, stream) = &mut streams[*slot];
            let n = nix::unistd::read(fd.as_ref().expect("open"), &mut buf).unwrap_or(0);
            if n == 0 {
                log.flush_partial(*stream);
                *fd = None;
            } else {
                log.write(*stream, &buf[..n]);
            }
        }
        if *ready.last().unwrap_or(&false) {
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
    let record = ExitRecord::from_status(
        status.unwrap_or(WaitStatus::Exited(nix::unistd::Pid::from_raw(r.pid), 255)),
        r.started_at,
        oom_killed(root, &spec.id),
    );
    if let Err(e) = record.save(&spec.exit_file) {
        log::error!("monitor {}: {e}", spec.id);
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

/// Take ownership of the --ready-fd.
pub fn ready_fd(fd: RawFd) -> Result<OwnedFd> {
    if nix::fcntl::fcntl(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, nix::fcntl::FcntlArg::F_GETFD).is_err() {
        return Err(Error::InvalidArgument(format!("--ready-fd {fd} is not open")));
    }
    // SAFETY: checked open above; the fd was passed to us for this purpose.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
