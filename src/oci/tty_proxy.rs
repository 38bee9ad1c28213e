//! A foreground terminal for `run` and `exec -t` without --console-socket:
//! hull receives the pty master itself and copies between its own
//! stdin/stdout and the container's terminal, as runc does.
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use nix::sys::termios::{self, SetArg, Termios};

use crate::error::{Error, Result, SysContext};

/// Hull's end of an in-process console socket; the other end is handed to
/// create/exec in place of a connected --console-socket.
pub struct ConsoleReceiver {
    ours: OwnedFd,
}

pub fn console_pair() -> Result<(ConsoleReceiver, OwnedFd)> {
    let (a, b) =
        socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).sys_context(|| "console socketpair".into())?;
    Ok((ConsoleReceiver { ours: a }, b))
}

impl ConsoleReceiver {
    /// The pty master the container's init (or exec'd process) sent.
    pub fn receive_master(&self) -> Result<OwnedFd> {
        receive_master_on(self.ours.as_fd())
    }
}

/// Receive the pty master sent (with SCM_RIGHTS) on a connected unix
/// socket, as a console socket's listener does.
pub fn receive_master_on(sock: std::os::fd::BorrowedFd<'_>) -> Result<OwnedFd> {
    let mut name = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .sys_context(|| "receive pty master".into())?;
    for c in msg.cmsgs().sys_context(|| "pty master message".into())? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(Error::Init("no pty master received".into()))
}

/// A running copy between our stdio and the pty; restores the terminal
/// mode of our stdin when dropped.
pub struct Proxy {
    saved: Option<Termios>,
    output: Option<JoinHandle<()>>,
    /// Kept to apply our terminal's size changes (SIGWINCH).
    master: OwnedFd,
}

impl Proxy {
    pub fn start(master: OwnedFd) -> Result<Proxy> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
            copy_window_size(stdin.as_raw_fd(), master.as_raw_fd());
        }
        let mut reader = std::fs::File::from(master.try_clone().sys_context(|| "dup pty master".into())?);
        let resize = master.try_clone().sys_context(|| "dup pty master".into())?;
        let mut writer = std::fs::File::from(master);
        // Input: runs until hull exits (a blocked read on stdin is harmless).
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut input = std::io::stdin().lock();
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || writer.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        // Output: ends when every slave fd is closed (read gives EIO).
        let output = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut out = std::io::stdout();
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = out.flush();
            }
        });
        Ok(Proxy { saved, output: Some(output), master: resize })
    }

    /// Wait for the foreground process with this proxy following our
    /// terminal's size.
    pub fn wait(proxy: Option<&Proxy>, pid: i32, set: &nix::sys::signal::SigSet) -> i32 {
        match proxy {
            Some(p) => super::wait::wait_forwarding_with(pid, set, Some(&|| p.resize_from_stdin())),
            None => super::wait::wait_forwarding(pid, set),
        }
    }

    /// Our terminal changed size (SIGWINCH): give the container's the same.
    pub fn resize_from_stdin(&self) {
        if self.saved.is_some() {
            copy_window_size(std::io::stdin().as_raw_fd(), self.master.as_raw_fd());
        }
    }

    /// Let the output drain after the process exited (bounded: a leftover
    /// background process may keep the pty open).
    pub fn finish(mut self, limit: Duration) {
        if let Some(h) = self.output.take() {
            let start = Instant::now();
            while !h.is_finished() && start.elapsed() < limit {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

fn copy_window_size(from: i32, to: i32) {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills the struct on our stack; TIOCSWINSZ reads it.
    unsafe {
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// The window size (rows, columns) of the terminal at `fd`, if it is one.
pub fn window_size(fd: i32) -> Option<(u16, u16)> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills the struct on our stack.
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some((ws.ws_row, ws.ws_col))
}
