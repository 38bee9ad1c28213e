//! One check against a running container, bounded in time.
//!
//! **No fork.** Nothing here forks the caller, which may have other threads
//! (the test harness, a daemon): exec checks run `hull exec` as a child
//! process (as conmon runs runc) with the command's output on a pipe;
//! network checks connect from a short-lived thread that joined the pod's
//! network namespace (a thread's own), so the caller never leaves the host's.
//!
//! Each check ends by its deadline (`timeoutSeconds`): a timed-out exec
//! command is killed with its process group and reaped by `hull exec`.
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Outcome, ProbeAction, ProbeError};
use crate::oci::state::StateRoot;

/// How much of an exec probe's output (stdout and stderr together) is kept
/// for the failure message; the rest is read and dropped.
pub const OUTPUT_LIMIT: usize = 4096;

/// Time a network check's thread is given beyond the probe's timeout.
const GRACE: Duration = Duration::from_secs(2);

/// The container a probe checks.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTarget<'a> {
    /// hull's state root and the container's id, for exec checks.
    pub root: &'a StateRoot,
    /// The hull binary exec checks run (`hull exec`).
    pub hull: &'a Path,
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
/// result should be dropped, not counted against the container.
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
    let rec = target.root.load(id).map_err(|e| ProbeError::Container { id: id.into(), source: Box::new(e) })?;
    // A container that is not running gives no verdict (its exit is seen
    // elsewhere).
    let status = rec.status(target.root);
    if status != crate::oci::state::Status::Running {
        return Err(ProbeError::Container {
            id: id.into(),
            source: Box::new(crate::Error::InvalidState(format!("container is {status}"))),
        });
    }
    // `hull exec ID CMD...` runs the container's own process (user, env,
    // cwd, capabilities...) with the probe's command, in a child process.
    let run = crate::runtime::exec::exec_via_hull(target.hull, &target.root.path, id, command, Some(timeout), OUTPUT_LIMIT, true)
        .map_err(|e| ProbeError::sys("run hull exec for an exec probe", e))?;
    let output = String::from_utf8_lossy(&run.stdout).trim_end().to_string();
    let with_output = |head: String| if output.is_empty() { head } else { format!("{head}: {output}") };
    Ok(match run.exit_code {
        None => Outcome::Failure(with_output(format!("command {command:?} timed out after {}s", timeout.as_secs_f64()))),
        Some(0) => Outcome::Success,
        Some(code) => Outcome::Failure(with_output(format!("command {command:?} exited with code {code}"))),
    })
}

// --- tcpSocket and httpGet ----------------------------------------------

/// Run `check` with the deadline on a short-lived thread that joins the
/// network namespace at `netns`: a network namespace belongs to a thread,
/// so the sockets it makes are the pod's while the rest of the process
/// stays in the host's; the thread ends with the check and is never reused.
fn net_check(netns: &Path, timeout: Duration, check: impl FnOnce(Instant) -> Outcome + Send + 'static) -> Result<Outcome, ProbeError> {
    let ns = std::fs::File::open(netns).map_err(|e| ProbeError::sys(format!("open network namespace {}", netns.display()), e))?;
    let shown = netns.display().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("hull-probe-netns".into())
        .spawn(move || {
            let deadline = Instant::now() + timeout;
            let result = match nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET) {
                Ok(()) => Ok(check(deadline)),
                Err(e) => Err(ProbeError::sys(format!("join network namespace {shown}"), e)),
            };
            let _ = tx.send(result);
        })
        .map_err(|e| ProbeError::sys("start a network probe thread", e))?;
    match rx.recv_timeout(timeout + GRACE) {
        Ok(r) => r,
        Err(_) => Ok(Outcome::Failure(format!("timed out after {}s", timeout.as_secs_f64()))),
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
        None => {
            return Outcome::Failure(format!(
                "Get {url:?}: malformed HTTP response {:?}",
                String::from_utf8_lossy(&got[..got.len().min(80)])
            ))
        }
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
