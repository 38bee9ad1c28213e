//! Programs run at a terminal of the test's own: a pty whose slave is
//! their controlling terminal, and its master read with a bound.
use std::io::Read;
use std::os::unix::io::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::Instant;

use super::WAIT_TIMEOUT;

/// Start `cmd` with the pty `slave` as its stdio and controlling terminal,
/// as a login shell's would be.
pub fn spawn_on_terminal(cmd: &mut Command, slave: &OwnedFd) -> Child {
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: setsid and TIOCSCTTY are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// Read the pty master until `until` appears in the output, EOF/EIO (slave
/// closed) or timeout.
pub fn read_master(master: OwnedFd, until: &str) -> String {
    let mut f = std::fs::File::from(master);
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: poll reads and writes the one pollfd on our stack.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(500) as i32) };
        if r == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&out).contains(until) {
                    break;
                }
            }
            Err(_) => break, // EIO once the slave side is closed
        }
    }
    String::from_utf8_lossy(&out).replace('\r', "")
}
