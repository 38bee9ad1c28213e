//! The container's stdio as the monitor holds it for attaching (as conmon
//! does): the write end of the container's stdin pipe, or the pty master
//! of a `terminal: true` container, and a unix socket of SOCK_SEQPACKET
//! kind in the container's run directory (mode 0600: root only) that fans
//! the container's output out to every attached client and takes their
//! input and terminal sizes.
//!
//! One packet is one message; its first byte says what it is:
//! - monitor → client: [`OUT_STDOUT`] or [`OUT_STDERR`] and the bytes (a
//!   terminal's output is all stdout);
//! - client → monitor: [`IN_STDIN`] and bytes, [`IN_EOF`] (this client's
//!   input ended), [`IN_RESIZE`] and rows, cols as big-endian u16s,
//!   [`IN_HELLO_STDIN`] (this client brings stdin: with `stdin_once`, the
//!   container's stdin closes when it is done).
//!
//! A client leaving (closing its socket) is a detach: the container runs
//! on. Output is never held up by a client: one that lets more than
//! [`CLIENT_QUEUE_LIMIT`] bytes queue up is dropped. Client input waits
//! while the container does not read it (its packets stay in the sockets).
//!
//! Everything here is non-blocking and driven by the monitor's poll loop.
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

use crate::error::{Result, SysContext};

pub const OUT_STDOUT: u8 = 1;
pub const OUT_STDERR: u8 = 2;
pub const IN_STDIN: u8 = 0;
pub const IN_EOF: u8 = 1;
pub const IN_RESIZE: u8 = 2;
pub const IN_HELLO_STDIN: u8 = 3;

/// The largest packet either side sends (its first byte included).
pub const MAX_PACKET: usize = 32 * 1024 + 1;
/// Output queued for one client before it is dropped as too slow.
pub const CLIENT_QUEUE_LIMIT: usize = 2 << 20;
/// Clients attached at once; more are refused (accepted and closed).
pub const MAX_CLIENTS: usize = 16;

/// How the container's stdio is set up (CRI `stdin`, `stdin_once`, `tty`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stdio {
    /// The container's stdin is a pipe the monitor holds (else /dev/null).
    pub stdin: bool,
    /// Close the container's stdin when the first client that brought
    /// stdin is done with it.
    pub stdin_once: bool,
    /// `process.terminal`: the monitor receives and keeps the pty master.
    pub tty: bool,
    /// Where to listen for attaching clients (None: no attaching).
    pub attach_socket: Option<PathBuf>,
}

/// A unix socket address for `path` that works whatever its length: the
/// directory is opened and named through /proc/self/fd (conmon's way
/// around the 108-byte sun_path). The returned fd must live as long as the
/// address is used.
pub fn socket_addr(path: &Path) -> std::io::Result<(OwnedFd, UnixAddr)> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| std::io::Error::other(format!("{}: no file name", path.display())))?;
    let dirfd = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let via = Path::new("/proc/self/fd").join(dirfd.as_raw_fd().to_string()).join(name);
    Ok((dirfd, UnixAddr::new(&via)?))
}

struct Client {
    fd: OwnedFd,
    out: VecDeque<Vec<u8>>,
    queued: usize,
    brought_stdin: bool,
    input_done: bool,
}

/// The attach side of a monitor.
pub struct Hub {
    listener: Option<OwnedFd>,
    path: Option<PathBuf>,
    clients: Vec<Client>,
    /// Where client input goes: the stdin pipe, or the pty master. None
    /// when there is no stdin or it was closed.
    input: Option<OwnedFd>,
    /// The pty master, for window sizes.
    master: Option<OwnedFd>,
    /// Input read from a client and not yet taken by the container.
    pending: Vec<u8>,
    stdin_once: bool,
    buf: Vec<u8>,
}

/// What the poll loop should watch for the hub, in [`Hub::poll_fds`] order.
pub struct Interest<'a> {
    pub fd: BorrowedFd<'a>,
    pub flags: PollFlags,
}

impl Hub {
    /// Listen on `stdio.attach_socket` (if any). `input` is the stdin pipe's
    /// write end or a dup of the pty master; `master` the pty master.
    pub fn new(stdio: &Stdio, input: Option<OwnedFd>, master: Option<OwnedFd>) -> Result<Hub> {
        let mut hub = Hub {
            listener: None,
            path: None,
            clients: Vec::new(),
            input,
            master,
            pending: Vec::new(),
            stdin_once: stdio.stdin_once,
            buf: Vec::new(),
        };
        for fd in hub.input.iter().chain(hub.master.iter()) {
            set_nonblocking(fd)?;
        }
        if let Some(path) = &stdio.attach_socket {
            hub.listener = Some(listen(path)?);
            hub.path = Some(path.clone());
        }
        Ok(hub)
    }

    fn stdin_flags(&self) -> (bool, bool) {
        (!self.pending.is_empty(), self.pending.is_empty())
    }

    /// The fds to poll and what for.
    pub fn poll_fds(&self) -> Vec<Interest<'_>> {
        let (want_input_out, read_clients) = self.stdin_flags();
        let mut v = Vec::with_capacity(self.clients.len() + 2);
        if let Some(l) = &self.listener {
            v.push(Interest { fd: l.as_fd(), flags: PollFlags::POLLIN });
        }
        if let (Some(i), true) = (&self.input, want_input_out) {
            v.push(Interest { fd: i.as_fd(), flags: PollFlags::POLLOUT });
        }
        for c in &self.clients {
            let mut f = PollFlags::empty();
            if read_clients {
                f |= PollFlags::POLLIN;
            }
            if !c.out.is_empty() {
                f |= PollFlags::POLLOUT;
            }
            // POLLHUP/POLLERR are always reported: a vanished client is seen.
            v.push(Interest { fd: c.fd.as_fd(), flags: f });
        }
        v
    }

    /// Act on the poll results for [`Hub::poll_fds`] (same order; nothing
    /// else may change the hub between the two calls).
    pub fn handle(&mut self, revents: &[PollFlags]) {
        let (want_input_out, read_clients) = self.stdin_flags();
        let mut i = 0;
        let mut accept = false;
        if self.listener.is_some() {
            accept = revents.get(i).is_some_and(|e| e.contains(PollFlags::POLLIN));
            i += 1;
        }
        if self.input.is_some() && want_input_out {
            if revents.get(i).is_some_and(|e| !e.is_empty()) {
                self.write_pending();
            }
            i += 1;
        }
        let mut gone = Vec::new();
        for (k, ev) in revents[i.min(revents.len())..].iter().enumerate().take(self.clients.len()) {
            if ev.contains(PollFlags::POLLOUT) && !self.flush_client(k) {
                gone.push(k);
                continue;
            }
            if read_clients && ev.contains(PollFlags::POLLIN) {
                if !self.read_client(k) {
                    gone.push(k);
                }
            } else if ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) && !ev.contains(PollFlags::POLLIN) {
                gone.push(k);
            }
        }
        for k in gone.into_iter().rev() {
            self.detach(k);
        }
        if accept {
            self.accept();
        }
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        loop {
            match socket::accept4(l.as_raw_fd(), SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) {
                Ok(fd) => {
                    // SAFETY: accept4 just returned this fd to us alone.
                    let fd = unsafe { crate::linux::syscall::owned_fd(fd) };
                    if self.clients.len() >= MAX_CLIENTS {
                        log::warn!("{MAX_CLIENTS} clients are attached already: one more refused");
                        continue;
                    }
                    self.clients
                        .push(Client { fd, out: VecDeque::new(), queued: 0, brought_stdin: false, input_done: false });
                }
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    /// Read one packet; false if the client is gone.
    fn read_client(&mut self, k: usize) -> bool {
        self.buf.resize(MAX_PACKET, 0);
        let n = match socket::recv(self.clients[k].fd.as_raw_fd(), &mut self.buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => return true,
            Err(_) => return false,
        };
        let msg = &self.buf[..n];
        match msg[0] {
            IN_STDIN if !self.clients[k].input_done && self.input.is_some() => {
                self.pending.extend_from_slice(&msg[1..]);
                self.write_pending();
            }
            IN_EOF => {
                self.clients[k].input_done = true;
                if self.stdin_once && self.clients[k].brought_stdin {
                    self.close_stdin();
                }
            }
            IN_RESIZE if n >= 5 => {
                let rows = u16::from_be_bytes([msg[1], msg[2]]);
                let cols = u16::from_be_bytes([msg[3], msg[4]]);
                if let Some(m) = &self.master {
                    let _ = crate::linux::syscall::set_window_size(m.as_raw_fd(), rows, cols);
                }
            }
            IN_HELLO_STDIN => self.clients[k].brought_stdin = true,
            _ => {}
        }
        true
    }

    fn detach(&mut self, k: usize) {
        let c = self.clients.remove(k);
        if self.stdin_once && c.brought_stdin {
            self.close_stdin();
        }
    }

    /// The container's stdin gets EOF (a pipe), or takes no more input (a
    /// terminal: the monitor's reading side of the master stays open).
    fn close_stdin(&mut self) {
        if self.master.is_none() {
            // The pipe: what was typed before the close still goes in.
            self.write_pending();
        }
        self.input = None;
        self.pending.clear();
    }

    fn write_pending(&mut self) {
        let Some(fd) = &self.input else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match nix::unistd::write(fd, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    // The container closed its stdin: input has nowhere to go.
                    self.input = None;
                    self.pending.clear();
                    return;
                }
            }
        }
    }

    /// Send what is queued; false if the client is gone.
    fn flush_client(&mut self, k: usize) -> bool {
        let c = &mut self.clients[k];
        while let Some(m) = c.out.front() {
            match socket::send(c.fd.as_raw_fd(), m, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => {
                    c.queued -= m.len();
                    c.out.pop_front();
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return true,
                Err(_) => return false,
            }
        }
        true
    }

    /// Container output: to every client (queued where it cannot go now).
    pub fn broadcast(&mut self, stream: u8, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let mut gone = Vec::new();
        for k in 0..self.clients.len() {
            for chunk in data.chunks(MAX_PACKET - 1) {
                let mut m = Vec::with_capacity(chunk.len() + 1);
                m.push(stream);
                m.extend_from_slice(chunk);
                let c = &mut self.clients[k];
                c.queued += m.len();
                c.out.push_back(m);
            }
            if self.clients[k].queued > CLIENT_QUEUE_LIMIT {
                log::warn!("an attached client fell {} bytes behind the container's output: detached", self.clients[k].queued);
                gone.push(k);
            } else if !self.flush_client(k) {
                gone.push(k);
            }
        }
        for k in gone.into_iter().rev() {
            self.detach(k);
        }
    }

    /// The container is gone: give the clients what is queued (bounded by
    /// `limit`), then close everything and remove the socket.
    pub fn finish(&mut self, limit: std::time::Duration) {
        self.listener = None;
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
        let deadline = std::time::Instant::now() + limit;
        while self.clients.iter().any(|c| !c.out.is_empty()) && std::time::Instant::now() < deadline {
            let mut fds: Vec<nix::poll::PollFd> = self
                .clients
                .iter()
                .filter(|c| !c.out.is_empty())
                .map(|c| nix::poll::PollFd::new(c.fd.as_fd(), PollFlags::POLLOUT))
                .collect();
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16));
            drop(fds);
            let mut gone = Vec::new();
            for k in 0..self.clients.len() {
                if !self.flush_client(k) {
                    gone.push(k);
                }
            }
            for k in gone.into_iter().rev() {
                self.clients.remove(k);
            }
        }
        self.clients.clear();
        self.input = None;
        self.master = None;
    }
}

fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).sys_context(|| "F_GETFL".into())?;
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK)).sys_context(|| "F_SETFL".into())?;
    Ok(())
}

/// Bind the attach socket (root only) and listen.
fn listen(path: &Path) -> Result<OwnedFd> {
    let what = || format!("attach socket {}", path.display());
    let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)
        .sys_context(what)?;
    let (_dir, addr) = socket_addr(path).sys_context(what)?;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).sys_context(what),
        _ => {}
    }
    socket::bind(fd.as_raw_fd(), &addr).sys_context(what)?;
    // Before listen nobody can connect; from then on only root can.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).sys_context(what)?;
    socket::listen(&fd, socket::Backlog::new(16).unwrap_or(socket::Backlog::MAXCONN)).sys_context(what)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(path: &Path) -> OwnedFd {
        let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None).unwrap();
        let (_d, addr) = socket_addr(path).unwrap();
        socket::connect(fd.as_raw_fd(), &addr).unwrap();
        fd
    }

    fn pump(hub: &mut Hub) {
        let flags: Vec<(i32, PollFlags)> = hub.poll_fds().iter().map(|i| (i.fd.as_raw_fd(), i.flags)).collect();
        let mut fds: Vec<nix::poll::PollFd> = flags
            .iter()
            // SAFETY: the fds belong to the hub, alive for this call.
            .map(|(fd, f)| nix::poll::PollFd::new(unsafe { BorrowedFd::borrow_raw(*fd) }, *f))
            .collect();
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16)).unwrap();
        let rev: Vec<PollFlags> = fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect();
        hub.handle(&rev);
    }

    #[test]
    fn fan_out_input_and_stdin_once() {
        let dir = tempfile::tempdir().unwrap();
        // A path longer than sun_path still binds (through /proc/self/fd).
        let deep = dir.path().join("x".repeat(60)).join("y".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let sock = deep.join("attach");
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let stdio = Stdio { stdin: true, stdin_once: true, tty: false, attach_socket: Some(sock.clone()) };
        let mut hub = Hub::new(&stdio, Some(w), None).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o600);
        let a = connect(&sock);
        let b = connect(&sock);
        pump(&mut hub);
        assert_eq!(hub.clients.len(), 2);
        hub.broadcast(OUT_STDOUT, b"hi");
        let mut buf = [0u8; 64];
        for c in [&a, &b] {
            let n = socket::recv(c.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
            assert_eq!(&buf[..n], b"\x01hi");
        }
        // b leaves without stdin: the container's stdin stays open.
        drop(b);
        pump(&mut hub);
        assert_eq!(hub.clients.len(), 1);
        assert!(hub.input.is_some());
        socket::send(a.as_raw_fd(), &[IN_HELLO_STDIN], MsgFlags::empty()).unwrap();
        socket::send(a.as_raw_fd(), b"\x00typed", MsgFlags::empty()).unwrap();
        pump(&mut hub);
        pump(&mut hub);
        // a detaches: with stdin_once the container reads EOF after its input.
        drop(a);
        pump(&mut hub);
        assert!(hub.input.is_none());
        let mut got = Vec::new();
        let mut f = std::fs::File::from(r);
        std::io::Read::read_to_end(&mut f, &mut got).unwrap();
        assert_eq!(got, b"typed");
        hub.finish(std::time::Duration::from_millis(100));
        assert!(!sock.exists());
    }
}
