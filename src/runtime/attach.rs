//! Attaching to a running container's stdio, which its monitor holds (the
//! stdin pipe or pty master and the output fan-out, `monitor::attach`):
//! [`Runtime::attach`] checks the container and names its attach socket;
//! [`AttachPoint::connect`] connects (no process is started, nothing
//! forks) and gives a blocking [`AttachConn`], or an [`AsyncAttach`] for a
//! tokio caller (the streaming server).
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};

use super::error::{Result, RuntimeError};
use super::id::ContainerId;
use super::record::ContainerPhase;
use super::Runtime;
use crate::monitor::attach as proto;

/// Where and how to attach to one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachPoint {
    pub container: ContainerId,
    /// The monitor's attach socket.
    pub socket: PathBuf,
    /// The container has a terminal (its output is one stream; resizes apply).
    pub tty: bool,
    /// The container was created with stdin (input is taken).
    pub stdin: bool,
    pub stdin_once: bool,
}

/// What an attached client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

impl Runtime {
    pub(super) fn attach_socket(&self, id: &ContainerId) -> PathBuf {
        self.container_run_dir(id).join("attach")
    }

    /// The attach point of a running container.
    pub fn attach(&self, id: &ContainerId) -> Result<AttachPoint> {
        let rec = self.live_container(id)?;
        if rec.phase != ContainerPhase::Running {
            return Err(RuntimeError::precondition(format!("container {id} is not running")));
        }
        Ok(AttachPoint {
            container: id.clone(),
            socket: self.attach_socket(id),
            tty: rec.config.tty,
            stdin: rec.config.stdin,
            stdin_once: rec.config.stdin && rec.config.stdin_once,
        })
    }
}

fn parse(packet: &[u8]) -> Option<Output> {
    match packet.split_first() {
        Some((&proto::OUT_STDOUT, d)) => Some(Output::Stdout(d.to_vec())),
        Some((&proto::OUT_STDERR, d)) => Some(Output::Stderr(d.to_vec())),
        _ => None,
    }
}

/// The packets that carry `data` as stdin.
fn stdin_packets(data: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    data.chunks(proto::MAX_PACKET - 1).map(|c| {
        let mut m = Vec::with_capacity(c.len() + 1);
        m.push(proto::IN_STDIN);
        m.extend_from_slice(c);
        m
    })
}

fn resize_packet(rows: u16, cols: u16) -> Vec<u8> {
    let mut m = vec![proto::IN_RESIZE];
    m.extend_from_slice(&rows.to_be_bytes());
    m.extend_from_slice(&cols.to_be_bytes());
    m
}

impl AttachPoint {
    /// Connect to the monitor. `with_stdin`: this client brings input
    /// (with `stdin_once`, the container's stdin closes when it is done).
    pub fn connect(&self, with_stdin: bool) -> std::io::Result<AttachConn> {
        let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
        let (_dir, addr) = proto::socket_addr(&self.socket)?;
        socket::connect(fd.as_raw_fd(), &addr).map_err(|e| {
            let why = match e {
                Errno::ENOENT | Errno::ECONNREFUSED => "the container has ended or its monitor serves no attach socket",
                _ => "connect",
            };
            std::io::Error::new(std::io::Error::from(e).kind(), format!("attach to container {}: {why} ({e})", self.container))
        })?;
        let conn = AttachConn { fd };
        if with_stdin && self.stdin {
            conn.send(&[proto::IN_HELLO_STDIN])?;
        }
        Ok(conn)
    }
}

/// A blocking attach connection. Dropping it detaches.
pub struct AttachConn {
    fd: OwnedFd,
}

impl AttachConn {
    fn send(&self, packet: &[u8]) -> std::io::Result<()> {
        loop {
            match socket::send(self.fd.as_raw_fd(), packet, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next output; None once the container ended (or the monitor
    /// dropped this client).
    pub fn recv(&self) -> std::io::Result<Option<Output>> {
        let mut buf = vec![0u8; proto::MAX_PACKET];
        loop {
            match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    if let Some(o) = parse(&buf[..n]) {
                        return Ok(Some(o));
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Bound [`AttachConn::recv`]'s wait (None: wait as long as it takes);
    /// a recv that waited this long fails with `WouldBlock`.
    pub fn set_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
        let tv = t.map(|t| nix::sys::time::TimeVal::new(t.as_secs() as _, t.subsec_micros() as _));
        socket::setsockopt(&self.fd, socket::sockopt::ReceiveTimeout, &tv.unwrap_or(nix::sys::time::TimeVal::new(0, 0)))?;
        Ok(())
    }

    pub fn write_stdin(&self, data: &[u8]) -> std::io::Result<()> {
        stdin_packets(data).try_for_each(|p| self.send(&p))
    }

    /// This client's input ended.
    pub fn close_stdin(&self) -> std::io::Result<()> {
        self.send(&[proto::IN_EOF])
    }

    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        self.send(&resize_packet(rows, cols))
    }

    /// The same connection for a tokio caller (inside a tokio runtime).
    pub fn into_async(self) -> std::io::Result<AsyncAttach> {
        let flags = nix::fcntl::fcntl(&self.fd, nix::fcntl::FcntlArg::F_GETFL)?;
        nix::fcntl::fcntl(
            &self.fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        // SAFETY: the fd is an OwnedFd the AsyncFd takes over; it is neither
        // replaced nor closed while registered (it closes when it drops).
        Ok(AsyncAttach { fd: unsafe { tokio::io::unix::AsyncFd::register(self.fd)? } })
    }
}

/// An attach connection driven by tokio. Dropping it detaches.
pub struct AsyncAttach {
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
}

impl AsyncAttach {
    async fn send(&self, packet: &[u8]) -> std::io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| {
                socket::send(fd.get_ref().as_raw_fd(), packet, MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT).map_err(Into::into)
            }) {
                Ok(r) => return r.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }

    /// The next output; None once the container ended (or the monitor
    /// dropped this client).
    pub async fn recv(&self) -> std::io::Result<Option<Output>> {
        let mut buf = vec![0u8; proto::MAX_PACKET];
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| socket::recv(fd.get_ref().as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).map_err(std::io::Error::from))
            {
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(n)) => {
                    if let Some(o) = parse(&buf[..n]) {
                        return Ok(Some(o));
                    }
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }

    pub async fn write_stdin(&self, data: &[u8]) -> std::io::Result<()> {
        for p in stdin_packets(data) {
            self.send(&p).await?;
        }
        Ok(())
    }

    pub async fn close_stdin(&self) -> std::io::Result<()> {
        self.send(&[proto::IN_EOF]).await
    }

    pub async fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        self.send(&resize_packet(rows, cols)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets() {
        assert_eq!(resize_packet(33, 101), vec![2, 0, 33, 0, 101]);
        let big = vec![7u8; proto::MAX_PACKET + 10];
        let p: Vec<Vec<u8>> = stdin_packets(&big).collect();
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|m| m[0] == proto::IN_STDIN && m.len() <= proto::MAX_PACKET));
        assert_eq!(parse(b"\x02err"), Some(Output::Stderr(b"err".to_vec())));
        assert_eq!(parse(b"\x09?"), None);
    }
}
