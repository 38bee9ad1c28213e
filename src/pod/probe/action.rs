//! One check against a running container, bounded in time.
//!
//! **Forking.** Every check forks: exec checks a helper that calls hull's OCI
//! exec with its stdout/stderr on a pipe, network checks a child that joins
//! the pod's network namespace (so the caller never leaves the host's) and
//! connects from there. The caller must therefore be single-threaded when it
//! calls [`run`] (the rule of `linux::syscall::fork`): a pod supervisor runs
//! its probes from its main thread, before any async runtime starts threads.
//! The caller must also not reap children it did not start (no
//! `waitpid(-1)` in a SIGCHLD handler), or it would steal the helper's status.
//!
//! Each check ends by its deadline (`timeoutSeconds`): the child enforces
//! it, and the caller kills the child (and for exec its process group) if it
//! has not answered shortly after.
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, setpgid, Pid};

use super::{Outcome, ProbeAction, ProbeError};
use crate::linux::syscall::{self, fork, Forked};
use crate::oci::exec::{spawn, ExecOptions};
use crate::oci::state::StateRoot;

/// How much of an exec probe's output (stdout and stderr together) is kept
/// for the failure message; the rest is read and dropped.
pub const OUTPUT_LIMIT: usize = 4096;

/// Time the caller gives a child beyond the probe's timeout (fork, joining
/// namespaces, hull's exec handshake) before killing it.
const GRACE: Duration = Duration::from_secs(2);

/// The container a probe checks.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTarget<'a> {
    /// hull's state root and the container's id, for exec checks.
    pub root: &'a StateRoot,
    pub container_id: &'a str,
    /// The pod's network namespace (e.g. `/proc/<pid>/ns/net` of a process
    /// in it, or a pinned bind mount): tcpSocket and httpGet connect from
    /// inside it.
    pub netns: &'a Path,
    /// The address probes without a `host` connect to (kubelet: the pod's
    /// IP); None is 127.0.0.1 inside the pod's network namespace.
    pub pod_ip: Option<IpAddr>,
}

/// Run one check of `action`, bounded by `timeout` (`timeoutSeconds`).
///
/// `Ok(Outcome)` is the container's answer (a timeout is a failure, as in
/// kubelet); `Err` means the prober could not check (it could not fork, the
/// container record is gone or the container is not running...) and the
/// result should be dropped, not counted against the container. The calling
/// process must be single-threaded (see the module's documentation).
pub fn run(action: &ProbeAction, timeout: Duration, target: &ProbeTarget) -> Result<Outcome, ProbeError> {
    match action {
        ProbeAction::Exec { command } => exec_check(command, timeout, target),
        ProbeAction::TcpSocket { host, port } => {
            let addr = SocketAddr::new(host.or(target.pod_ip).unwrap_or(IpAddr::from([127, 0, 0, 1])), *port);
            net_check(target.netns, timeout, move |deadline| match connect(addr, deadline) {
                Ok(_) => Outcome::Success,
                Err(why) => Outcome::Failure(why),
            })
        }
        ProbeAction::HttpGet { host, port, path, headers } => {
            let addr = SocketAddr::new(host.or(target.pod_ip).unwrap_or(IpAddr::from([127, 0, 0, 1])), *port);
            let request = http_request(addr, path, headers);
            net_check(target.netns, timeout, move |deadline| http_get(addr, &request, deadline))
        }
    }
}

// --- exec --------------------------------------------------------------

fn exec_check(command: &[String], timeout: Duration, target: &ProbeTarget) -> Result<Outcome, ProbeError> {
    let id = target.container_id;
    let rec = target
        .root
        .load(id)
        .map_err(|e| ProbeError::Container { id: id.into(), source: Box::new(e) })?;
    // The container's own process (user, env, cwd, capabilities...) with the
    // probe's command, as `hull exec ID CMD...` builds it.
    let mut process = rec.config.process().clone().unwrap_or_default();
    process.set_args(Some(command.to_vec()));
    process.set_terminal(Some(false));
    process.set_console_size(None);
    let opts = ExecOptions {
        id: id.to_string(),
        process,
        detach: true,
        pid_file: None,
        console_socket: None,
        preserve_fds: 0,
    };
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| ProbeError::sys("pipe", e))?;
    let (st_r, st_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| ProbeError::sys("pipe", e))?;
    let devnull = std::fs::File::open("/dev/null").map_err(|e| ProbeError::sys("open /dev/null", e))?;
    let helper = match fork().map_err(|e| fork_error("fork exec probe helper", e))? {
        Forked::Child => {
            drop((out_r, st_r));
            child_main(&st_w, || exec_helper(target.root, &opts, timeout, out_w.as_raw_fd(), devnull.as_raw_fd()))
        }
        Forked::Parent(pid) => pid,
    };
    drop((out_w, st_w, devnull));
    // Also here, so that the kill below finds the group even if the helper
    // has not got to its own setpgid yet (the shell's classic race).
    let _ = setpgid(helper, helper);
    // A timed-out command is dead, but what it started is not; a helper that
    // did not answer in time (a frozen container, say) has its whole chain
    // still running. All of it is in the helper's process group.
    let got = collect(helper, &st_r, Some(&out_r), timeout + GRACE, |status| {
        if status.is_none_or(|s| s == "timeout") {
            let _ = killpg(helper, Signal::SIGKILL);
        }
    })?;
    let output = String::from_utf8_lossy(&got.output).trim_end().to_string();
    let with_output = |head: String| if output.is_empty() { head } else { format!("{head}: {output}") };
    let timed_out = || Outcome::Failure(with_output(format!("command {command:?} timed out after {}s", timeout.as_secs_f64())));
    let status = match got.status {
        None => return Ok(timed_out()),
        Some(s) => s,
    };
    let (word, rest) = status.split_once(' ').unwrap_or((status.as_str(), ""));
    Ok(match word {
        "exit" if rest == "0" => Outcome::Success,
        "exit" => Outcome::Failure(with_output(format!("command {command:?} exited with code {rest}"))),
        "signal" => Outcome::Failure(with_output(format!("command {command:?} was killed by signal {rest}"))),
        "timeout" => timed_out(),
        "fail" => Outcome::Failure(with_output(format!("command {command:?} could not start: {rest}"))),
        // The helper's errors keep their kind across the fork.
        "notfound" => return Err(ProbeError::Container { id: id.into(), source: Box::new(crate::Error::NotFound(id.into())) }),
        "state" => return Err(ProbeError::Container { id: id.into(), source: Box::new(crate::Error::InvalidState(rest.into())) }),
        _ => return Err(ProbeError::sys(format!("exec probe helper: {rest}"), std::io::Error::other("no verdict"))),
    })
}

/// In the forked helper: spawn the command in the container with our
/// stdout/stderr on the output pipe, wait for it as its subreaper, kill it at
/// the deadline. Returns the status line for the parent.
fn exec_helper(root: &StateRoot, opts: &ExecOptions, timeout: Duration, out: i32, devnull: i32) -> String {
    let deadline = Instant::now() + timeout;
    let setup = (|| -> crate::Result<()> {
        setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
        // hull's exec forks twice and the first child exits: the command is
        // re-parented to the nearest subreaper, us, and we can waitpid it.
        nix::sys::prctl::set_child_subreaper(true)?;
        syscall::default_signals()?;
        syscall::dup2_raw(devnull, 0)?;
        syscall::dup2_raw(out, 1)?;
        syscall::dup2_raw(out, 2)
    })();
    if let Err(e) = setup {
        return format!("error probe helper: {e}");
    }
    let pid = match spawn(root, opts, None) {
        Ok(pid) => Pid::from_raw(pid),
        // Init errors come from inside the container (no such command, bad
        // cwd...): the probe fails. Others (not running...) are ours.
        Err(crate::Error::Init(m)) => return format!("fail {m}"),
        Err(crate::Error::NotFound(_)) => return "notfound".into(),
        Err(crate::Error::InvalidState(m)) => return format!("state {m}"),
        Err(e) => return format!("error {e}"),
    };
    let mut nap = Duration::from_millis(1);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return format!("exit {code}"),
            Ok(WaitStatus::Signaled(_, sig, _)) => return format!("signal {}", sig as i32),
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(e) => return format!("error wait for the probe command: {e}"),
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            // SIGKILL cannot be refused; the wait is short unless the process
            // is stuck in the kernel, and then the parent's deadline ends us.
            let _ = waitpid(pid, None);
            return "timeout".into();
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

// --- tcpSocket and httpGet ----------------------------------------------

/// Fork a child that joins the network namespace at `netns` and runs
/// `check` there with the deadline; its outcome comes back over a pipe.
fn net_check(netns: &Path, timeout: Duration, check: impl FnOnce(Instant) -> Outcome) -> Result<Outcome, ProbeError> {
    let ns = std::fs::File::open(netns).map_err(|e| ProbeError::sys(format!("open network namespace {}", netns.display()), e))?;
    let (st_r, st_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| ProbeError::sys("pipe", e))?;
    let child = match fork().map_err(|e| fork_error("fork network probe", e))? {
        Forked::Child => {
            drop(st_r);
            child_main(&st_w, || {
                let deadline = Instant::now() + timeout;
                // setns(CLONE_NEWNET) changes this process only; the caller
                // stays in the host's namespace.
                if let Err(e) = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET) {
                    return format!("error join network namespace {}: {e}", netns.display());
                }
                match check(deadline) {
                    Outcome::Success => "ok".into(),
                    Outcome::Failure(why) => format!("fail {why}"),
                }
            })
        }
        Forked::Parent(pid) => pid,
    };
    drop((st_w, ns));
    let got = collect(child, &st_r, None, timeout + GRACE, |_| {})?;
    let Some(status) = got.status else {
        return Ok(Outcome::Failure(format!("timed out after {}s", timeout.as_secs_f64())));
    };
    let (word, rest) = status.split_once(' ').unwrap_or((status.as_str(), ""));
    match word {
        "ok" => Ok(Outcome::Success),
        "fail" => Ok(Outcome::Failure(rest.to_string())),
        _ => Err(ProbeError::sys(rest.to_string(), std::io::Error::other("network probe child failed"))),
    }
}

fn remaining(deadline: Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
}

fn connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, String> {
    let Some(left) = remaining(deadline) else {
        return Err(format!("dial tcp {addr}: i/o timeout"));
    };
    TcpStream::connect_timeout(&addr, left).map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => format!("dial tcp {addr}: i/o timeout"),
        _ => format!("dial tcp {addr}: {e}"),
    })
}

/// The request kubelet's prober sends (its User-Agent and Accept unless the
/// probe sets its own), closing the connection after the answer.
fn http_request(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !has("Host") {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    if !has("User-Agent") {
        req.push_str("User-Agent: kube-probe/1.34\r\n");
    }
    if !has("Accept") {
        req.push_str("Accept: */*\r\n");
    }
    for (n, v) in headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("Connection")) {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    req.into_bytes()
}

fn http_get(addr: SocketAddr, request: &[u8], deadline: Instant) -> Outcome {
    let url = format!("http://{addr}");
    let timeout = || Outcome::Failure(format!("Get {url:?}: timed out awaiting headers"));
    let mut s = match connect(addr, deadline) {
        Ok(s) => s,
        Err(why) => return Outcome::Failure(format!("Get {url:?}: {why}")),
    };
    let Some(left) = remaining(deadline) else { return timeout() };
    if let Err(e) = s.set_write_timeout(Some(left)).and_then(|_| s.write_all(request)) {
        return Outcome::Failure(format!("Get {url:?}: write: {e}"));
    }
    // Read the status line and headers, and what comes of the body with them.
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 16 * 1024 {
        let Some(left) = remaining(deadline) else { return timeout() };
        if let Err(e) = s.set_read_timeout(Some(left)) {
            return Outcome::Failure(format!("Get {url:?}: {e}"));
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return timeout(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Outcome::Failure(format!("Get {url:?}: read: {e}")),
        }
    }
    let (code, body) = match parse_response(&got) {
        Some(r) => r,
        None => return Outcome::Failure(format!("Get {url:?}: malformed HTTP response {:?}", String::from_utf8_lossy(&got[..got.len().min(80)]))),
    };
    if (200..400).contains(&code) {
        Outcome::Success
    } else if body.is_empty() {
        Outcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
    } else {
        Outcome::Failure(format!("HTTP probe failed with statuscode: {code}: {body}"))
    }
}

/// The status code of an HTTP/1.x response and the start of its body.
fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (line, rest) = text.split_once("\r\n")?;
    let mut words = line.split(' ');
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = words.next()?.parse().ok()?;
    let body = rest.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Some((code, body.chars().take(256).collect::<String>().trim_end().to_string()))
}

// --- the fork plumbing ---------------------------------------------------

fn fork_error(what: &str, e: crate::Error) -> ProbeError {
    match e {
        crate::Error::Sys { source, .. } => ProbeError::sys(what, source),
        other => ProbeError::sys(what, std::io::Error::other(other.to_string())),
    }
}

/// Body of a forked child: run `f`, write its status line to `status`, and
/// `_exit` without returning into the caller's code (a panic must not unwind
/// into a copy of the caller, e.g. a second test harness).
fn child_main(status: &OwnedFd, f: impl FnOnce() -> String) -> ! {
    let line = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| "error probe child panicked".into());
    // One write, newline-terminated, no newlines inside: the parent stops
    // reading at the first '\n', even if a copy of the write end lingers in
    // another process forked meanwhile.
    let mut line = line.replace(['\r', '\n'], " ");
    line.push('\n');
    let _ = nix::unistd::write(status, line.as_bytes());
    syscall::exit_now(0)
}

struct Collected {
    /// The child's status line, None if it did not come by the deadline.
    status: Option<String>,
    output: Vec<u8>,
}

/// Read the status line (and the output, up to [`OUTPUT_LIMIT`]) of the child
/// `pid` until the status line is complete or `limit` passes, then reap the
/// child, killing it if it is still there.
///
/// `before_reap` runs while the child is still unreaped (so its pid, and the
/// process group named after it, cannot have been reused), with the status
/// line, unless the child died without one and was reaped on the way.
fn collect(
    pid: Pid,
    status_r: &OwnedFd,
    output_r: Option<&OwnedFd>,
    limit: Duration,
    before_reap: impl FnOnce(Option<&str>),
) -> Result<Collected, ProbeError> {
    for fd in std::iter::once(status_r).chain(output_r) {
        fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(|e| ProbeError::sys("O_NONBLOCK", e))?;
    }
    let deadline = Instant::now() + limit;
    let mut status = Vec::new();
    let mut output = Vec::new();
    let mut exited = false;
    let done = |s: &[u8]| s.contains(&b'\n');
    while !done(&status) {
        drain(status_r, &mut status, 4096);
        if let Some(o) = output_r {
            drain(o, &mut output, OUTPUT_LIMIT);
        }
        if done(&status) || exited {
            break;
        }
        // The child died without a word (killed from outside)?
        if matches!(waitpid(pid, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(Errno::ECHILD)) {
            exited = true;
            continue; // one more drain
        }
        let Some(left) = remaining(deadline) else { break };
        let mut fds = vec![PollFd::new(status_r.as_fd(), PollFlags::POLLIN)];
        if let Some(o) = output_r {
            fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
        }
        // Short slices: EOF on a pipe whose write end another fork copied
        // never comes, so the child's exit is also checked each time round.
        let slice = PollTimeout::try_from(left.min(Duration::from_millis(50))).unwrap_or(PollTimeout::ZERO);
        match poll(&mut fds, slice) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(ProbeError::sys("poll", e)),
        }
    }
    if let Some(o) = output_r {
        drain(o, &mut output, OUTPUT_LIMIT);
    }
    let status = done(&status).then(|| String::from_utf8_lossy(&status).lines().next().unwrap_or("").to_string());
    if !exited {
        before_reap(status.as_deref());
        reap(pid, status.is_none());
    }
    Ok(Collected { status, output })
}

/// Read what is there (non-blocking fd), keeping up to `limit` bytes.
fn drain(fd: &OwnedFd, into: &mut Vec<u8>, limit: usize) {
    let mut buf = [0u8; 4096];
    // Bounded: a writer faster than us cannot keep us here forever.
    for _ in 0..64 {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let keep = n.min(limit.saturating_sub(into.len()));
                into.extend_from_slice(&buf[..keep]);
            }
        }
    }
}

/// Reap the child: it is about to exit after writing its status; if it is
/// late (or `now` is set), SIGKILL it first.
fn reap(pid: Pid, now: bool) {
    let patience = if now { Duration::ZERO } else { Duration::from_secs(1) };
    let until = Instant::now() + patience;
    let mut killed = false;
    for _ in 0..1000 {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            _ => return,
        }
        if !killed && Instant::now() >= until {
            let _ = kill(pid, Signal::SIGKILL);
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    log::warn!("probe child {pid} did not exit within 5 s of SIGKILL; left unreaped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_kubelet_headers_and_overrides() {
        let addr: SocketAddr = "10.0.0.2:8080".parse().unwrap();
        let r = String::from_utf8(http_request(addr, "/healthz?x=1", &[])).unwrap();
        assert_eq!(
            r,
            "GET /healthz?x=1 HTTP/1.1\r\nHost: 10.0.0.2:8080\r\nUser-Agent: kube-probe/1.34\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let h = vec![("host".to_string(), "example.com".to_string()), ("X-A".to_string(), "b".to_string())];
        let r = String::from_utf8(http_request("[::1]:80".parse().unwrap(), "/", &h)).unwrap();
        assert!(!r.contains("Host: [::1]:80"), "{r}");
        assert!(r.contains("host: example.com\r\nX-A: b\r\n"), "{r}");
        let r = String::from_utf8(http_request("[::1]:80".parse().unwrap(), "/", &[])).unwrap();
        assert!(r.contains("Host: [::1]:80\r\n"), "{r}");
    }

    #[test]
    fn response_parsing() {
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nhello"), Some((200, "hello".into())));
        assert_eq!(parse_response(b"HTTP/1.0 404 Not Found\r\n\r\n"), Some((404, "".into())));
        assert_eq!(parse_response(b"HTTP/1.1 302 Found\r\nLocation: /x\r\n"), Some((302, "".into())));
        assert_eq!(parse_response(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_response(b"HTTP/1.1 200"), None);
    }
}
