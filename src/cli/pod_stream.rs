//! `hull pod exec` (`-i` stdin, `-t` a terminal that follows SIGWINCH, as
//! `hull exec -t`) and `hull pod port-forward` (listen on 127.0.0.1, each
//! connection forwarded to the pod's loopback inside its network
//! namespace, as the streaming server's port-forward does). What they need
//! of a pod is found by [`container_id`] and [`pod_netns`] and nothing else.
use std::fs::File;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::oci::state::StateRoot;
use crate::pod::{self, PodRoots};
use crate::runtime::Runtime;

/// Connections forwarded at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 256;

/// The OCI id of the pod's running container `container` (default: its
/// first app container), and the runtime's OCI state root.
fn container_id(roots: &PodRoots, rt: &Runtime, key: &str, container: Option<&str>) -> Result<(String, StateRoot)> {
    let id = pod::running_container(roots, rt, key, container)?;
    Ok((id.to_string(), rt.oci_root()))
}

/// The pod's network namespace, held open: the holder's, checked to be
/// the sandbox's live holder again after opening (its pid cannot have
/// been reused in between).
fn pod_netns(roots: &PodRoots, rt: &Runtime, key: &str) -> Result<File> {
    let rec = pod::status(roots, rt, key)?;
    let not_running = || Error::InvalidState(format!("the sandbox of pod {key} is not running"));
    let holder = pod::view(rt, rec.clone()).holder_pid.ok_or_else(not_running)?;
    let ns = File::open(format!("/proc/{holder}/ns/net")).map_err(|_| not_running())?;
    match pod::view(rt, rec).holder_pid {
        Some(h) if h == holder => Ok(ns),
        _ => Err(not_running()),
    }
}

/// `hull pod exec [-i] [-t]`: the command in the container, in the
/// foreground. Without `-i` its stdin is /dev/null (as kubectl's).
pub fn exec(roots: &PodRoots, rt: Runtime, key: &str, container: Option<&str>, command: &[String], tty: bool, stdin: bool) -> Result<i32> {
    let (id, oci) = container_id(roots, &rt, key, container)?;
    // The runtime's exit watcher is a thread, and the OCI exec forks:
    // this process is single-threaded again once the runtime is gone.
    drop(rt);
    let rec = oci.load(&id)?;
    let mut process = rec.config.process().clone().unwrap_or_default();
    process.set_args(Some(command.to_vec()));
    process.set_terminal(Some(tty));
    process.set_console_size(None);
    if !stdin {
        let null = File::open("/dev/null").map_err(|e| Error::InvalidState(format!("open /dev/null: {e}")))?;
        nix::unistd::dup2_stdin(&null).map_err(|e| Error::InvalidState(format!("stdin from /dev/null: {e}")))?;
    }
    crate::oci::exec::exec(
        &oci,
        &crate::oci::exec::ExecOptions { id, process, detach: false, pid_file: None, console_socket: None, preserve_fds: 0 },
    )
}

/// `hull pod attach`: our stdin to the container's (when it has one),
/// its output to ours, until its output ends or our input does. With a
/// tty: our terminal raw meanwhile, and its size (now and on SIGWINCH)
/// given to the container's.
pub fn attach(roots: &PodRoots, rt: Runtime, key: &str, container: Option<&str>) -> Result<i32> {
    use crate::runtime::attach::Output;
    let id = pod::running_container(roots, &rt, key, container)?;
    let point = rt.attach(&id).map_err(Error::Runtime)?;
    drop(rt);
    let io = |what: &str, e: std::io::Error| Error::InvalidState(format!("attach to container {}: {what}: {e}", point.container.short()));
    // SIGWINCH is taken by a thread with sigwait: blocked here first, so
    // every thread started below has it blocked too.
    let winch = nix::sys::signal::SigSet::from(nix::sys::signal::Signal::SIGWINCH);
    if point.tty {
        let _ = winch.thread_block();
    }
    let conn = Arc::new(point.connect(point.stdin).map_err(|e| io("connect", e))?);
    let stdin = std::io::stdin();
    let terminal = point.tty && nix::unistd::isatty(&stdin).unwrap_or(false);
    let _raw = terminal.then(|| RawTerminal::enter(&stdin)).flatten();
    if terminal {
        send_window_size(&conn);
        let c = conn.clone();
        std::thread::spawn(move || {
            while winch.wait().is_ok() {
                send_window_size(&c);
            }
        });
    }
    if point.stdin {
        let c = conn.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut input = std::io::stdin().lock();
            loop {
                match std::io::Read::read(&mut input, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if c.write_stdin(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = c.close_stdin();
        });
    }
    use std::io::Write;
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    while let Some(o) = conn.recv().map_err(|e| io("receive", e))? {
        let _ = match o {
            Output::Stdout(d) => out.write_all(&d).and_then(|()| out.flush()),
            Output::Stderr(d) => err.write_all(&d),
        };
    }
    Ok(0)
}

fn send_window_size(conn: &crate::runtime::attach::AttachConn) {
    if let Some((rows, cols)) = crate::oci::tty_proxy::window_size(std::io::stdin().as_raw_fd()) {
        let _ = conn.resize(rows, cols);
    }
}

/// Our terminal in raw mode, restored on drop.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter(stdin: &std::io::Stdin) -> Option<RawTerminal> {
        use nix::sys::termios;
        let saved = termios::tcgetattr(stdin).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin, termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

/// `LOCAL:REMOTE`, `PORT` (the same both sides) or `:REMOTE` (any free
/// local port), as kubectl port-forward takes them.
pub fn parse_ports(spec: &str) -> Result<(u16, u16)> {
    let bad = || Error::InvalidArgument(format!("port-forward {spec:?}: expected LOCAL:REMOTE, PORT or :REMOTE (ports 1-65535)"));
    let port = |s: &str, zero_ok: bool| s.parse::<u16>().ok().filter(|p| *p > 0 || zero_ok).ok_or_else(bad);
    match spec.split_once(':') {
        Some(("", remote)) => Ok((0, port(remote, false)?)),
        Some((local, remote)) => Ok((port(local, true)?, port(remote, false)?)),
        None => {
            let p = port(spec, false)?;
            Ok((p, p))
        }
    }
}

/// `hull pod port-forward POD LOCAL:REMOTE`: runs until interrupted.
pub fn port_forward(roots: &PodRoots, rt: Runtime, key: &str, spec: &str) -> Result<i32> {
    let (local, remote) = parse_ports(spec)?;
    let ns = pod_netns(roots, &rt, key)?;
    drop(rt);
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, local)))
        .map_err(|e| Error::InvalidArgument(format!("listen on 127.0.0.1:{local}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| Error::InvalidState(format!("listener address: {e}")))?;
    println!("Forwarding from {bound} -> {remote}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // The held namespace fd stands for the namespace from now on.
    let netns = PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()));
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            eprintln!("hull: port-forward: {MAX_CONNECTIONS} connections open; refused one");
            continue;
        }
        active.fetch_add(1, Ordering::AcqRel);
        let (netns, active) = (netns.clone(), active.clone());
        std::thread::spawn(move || {
            forward(client, &netns, remote);
            active.fetch_sub(1, Ordering::AcqRel);
        });
    }
    drop(ns);
    Ok(0)
}

/// One forwarded connection, both ways, each direction's end of data
/// passed on as a shutdown of the other side's writing.
fn forward(client: TcpStream, netns: &Path, port: u16) {
    let pod = match crate::stream::portforward::connect_blocking(netns, port) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hull: {}", crate::stream::portforward::error_message(port, &e));
            return;
        }
    };
    let (Ok(client2), Ok(pod2)) = (client.try_clone(), pod.try_clone()) else { return };
    let up = std::thread::spawn(move || copy_then_shutdown(client2, pod2));
    copy_then_shutdown(pod, client);
    let _ = up.join();
}

fn copy_then_shutdown(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!(parse_ports("8080:80").unwrap(), (8080, 80));
        assert_eq!(parse_ports("0:80").unwrap(), (0, 80));
        assert_eq!(parse_ports(":80").unwrap(), (0, 80));
        assert_eq!(parse_ports("5000").unwrap(), (5000, 5000));
        for bad in ["", "0", "80:0", "x:80", "80:", "70000:80", "1:2:3"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }
}
