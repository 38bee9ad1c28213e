//! Starting hull's helper processes from a possibly multi-threaded caller:
//! the hull binary is exec'd with a hidden subcommand and a pipe as its
//! stdout, on which it reports `ok ...` or `err MESSAGE` and then closes
//! (it moves the pipe off stdout and makes its own session first thing,
//! see `monitor::take_ready_fd`). Nothing runs between fork and exec,
//! which is what makes this sound with other threads running (and lets
//! std use posix_spawn); the helper forks its long-lived process itself
//! (it is single-threaded), so nothing it leaves running is our child and
//! no zombie waits for us.
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use super::error::{ErrorKind, Result, RuntimeError};

/// Run `cmd` (a hull helper, `--ready-fd 1`) with the report pipe as its
/// stdout; return what follows `ok `.
pub fn run_reporting(mut cmd: Command, what: &str) -> Result<String> {
    let (r, w) = std::io::pipe().map_err(|e| RuntimeError::with_source(ErrorKind::Internal, format!("{what}: pipe"), e))?;
    let w: OwnedFd = w.into();
    cmd.stdin(Stdio::null()).stdout(Stdio::from(w)).stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| RuntimeError::with_source(ErrorKind::Internal, format!("{what}: start hull"), e))?;
    // Our copy of the write end goes, so EOF means the helper is done.
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
