//! Starting hull's helper processes from a possibly multi-threaded caller:
//! the hull binary is exec'd with a hidden subcommand and a pipe on fd 3 on
//! which it reports `ok ...` or `err MESSAGE` and then closes. Between fork
//! and exec the child only calls dup2 and setsid (async-signal-safe), which
//! is what makes this sound with other threads running; the helper forks
//! its long-lived process itself (it is single-threaded), so nothing it
//! leaves running is our child and no zombie waits for us.
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};

use super::error::{ErrorKind, Result, RuntimeError};

/// Run `cmd` (a hull helper) with the report pipe on fd 3, in a session of
/// its own; return what follows `ok `.
pub fn run_reporting(mut cmd: Command, what: &str) -> Result<String> {
    let (r, w) = std::io::pipe().map_err(|e| RuntimeError::with_source(ErrorKind::Internal, format!("{what}: pipe"), e))?;
    let w: OwnedFd = w.into();
    let raw = w.as_raw_fd();
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: the closure runs between fork and exec and only calls dup2
    // and setsid, both async-signal-safe; it allocates nothing.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| RuntimeError::with_source(ErrorKind::Internal, format!("{what}: start hull"), e))?;
    // Our copy of the write end goes, so EOF means the helper is done.
    drop(w);
    drop(cmd);
    let mut r = r;
    let answer = crate::monitor::read_report(&mut r);
    // The first process exits once its long-lived child reported.
    let status = child.wait();
    match answer.split_once(' ') {
        Some(("ok", rest)) => Ok(rest.trim().to_string()),
        Some(("err", msg)) => Err(RuntimeError::internal(format!("{what}: {msg}"))),
        _ => Err(RuntimeError::internal(format!("{what}: hull exited ({status:?}) without a result"))),
    }
}
