//! exec_sync: a command run in a container by `hull exec` (a fresh hull
//! process, as conmon runs runc), its output collected up to a bound, and
//! on timeout the command killed (by the pid `hull exec` wrote) and reaped.
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::error::{ErrorKind, Result, RuntimeError};
use super::id::ContainerId;
use super::status::ExecSyncResult;
use super::{Runtime, EXEC_OUTPUT_LIMIT};

/// Read a stream to its end, keeping the first `limit` bytes.
fn read_bounded(mut r: impl Read, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// How long `hull exec` may take to start the command (join the
/// container, fork, exec); the caller's timeout counts from then on, so a
/// loaded machine does not eat a probe's one second before its command runs.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Wait until hull exec wrote the command's pid (it has started) or ended;
/// true if it ended.
fn wait_started(done: &mpsc::Receiver<()>, pid_file: &std::path::Path) -> bool {
    let limit = std::time::Instant::now() + START_LIMIT;
    while !pid_file.exists() && std::time::Instant::now() < limit {
        match done.recv_timeout(Duration::from_millis(5)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return true,
        }
    }
    false
}

/// What one `hull exec` run gave.
#[derive(Debug, Default)]
pub struct ExecRun {
    pub stdout: Vec<u8>,
    /// Empty when stderr was merged into stdout.
    pub stderr: Vec<u8>,
    /// The command's exit code (128+N for a signal death); None on timeout.
    pub exit_code: Option<i32>,
}

/// Run `cmd` in container `id` of the OCI state root `oci_root` through
/// `hull exec` (a child process: nothing forks in the caller), keeping
/// `limit` bytes per stream (stderr merged into stdout if `merge`). When
/// `timeout` has passed since the command started, its process group is
/// killed and reaped by hull exec, and `exit_code` is None.
pub fn exec_via_hull(
    hull: &std::path::Path,
    oci_root: &std::path::Path,
    id: &str,
    cmd: &[String],
    timeout: Option<Duration>,
    limit: usize,
    merge: bool,
) -> std::io::Result<ExecRun> {
    // In the container's own state directory, which goes with it.
    let tag = super::id::SandboxId::generate().map(|i| i.short().to_string()).unwrap_or_default();
    let pid_file = oci_root.join(id).join(format!("exec-{tag}.pid"));
    let mut command = Command::new(hull);
    command
        .arg("--root")
        .arg(oci_root)
        .arg("exec")
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(id)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null());
    let (out_r, out_w) = std::io::pipe()?;
    let err_pipe = if merge {
        command.stderr(Stdio::from(out_w.try_clone()?));
        None
    } else {
        let (r, w) = std::io::pipe()?;
        command.stderr(Stdio::from(w));
        Some(r)
    };
    command.stdout(Stdio::from(out_w));
    let mut child = command.spawn()?;
    // Our copies of the write ends go with `command`.
    drop(command);
    let out_t = std::thread::spawn(move || read_bounded(out_r, limit));
    let err_t = err_pipe.map(|r| std::thread::spawn(move || read_bounded(r, limit)));
    let hull_pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(());
        status
    });
    let timed_out = match timeout {
        Some(t) => !wait_started(&rx, &pid_file) && rx.recv_timeout(t).is_err(),
        None => rx.recv().is_err(),
    };
    if timed_out {
        // The command leads its own session (hull exec makes it so): its
        // group takes what it started with it. hull exec then reaps it and
        // exits. The pid is in the file once the command was started.
        let mut done = false;
        for _ in 0..50 {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .filter(|p| *p > 1)
            {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
            if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                done = true;
                break;
            }
        }
        if !done {
            // Last resort: hull exec itself (our unreaped child, so its pid
            // cannot have been reused).
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(hull_pid), Signal::SIGKILL);
        }
    }
    let status = waiter.join().map_err(|_| std::io::Error::other("exec waiter thread panicked"))?;
    let _ = std::fs::remove_file(&pid_file);
    let stdout = out_t.join().unwrap_or_default();
    let stderr = err_t.map(|t| t.join().unwrap_or_default()).unwrap_or_default();
    let status = status?;
    use std::os::unix::process::ExitStatusExt;
    let exit_code = (!timed_out).then(|| status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)));
    Ok(ExecRun { stdout, stderr, exit_code })
}

impl Runtime {
    /// Run `cmd` in a running container and collect its output; after
    /// `timeout` (None: no limit) the process is killed and reaped and the
    /// error is DeadlineExceeded.
    pub fn exec_sync(&self, id: &ContainerId, cmd: &[String], timeout: Option<Duration>) -> Result<ExecSyncResult> {
        if cmd.is_empty() {
            return Err(RuntimeError::invalid("exec_sync: the command is empty"));
        }
        let rec = self.live_container(id)?;
        if rec.phase != super::record::ContainerPhase::Running {
            return Err(RuntimeError::precondition(format!("container {id} is not running")));
        }
        let run = exec_via_hull(&self.opts.hull, &self.oci_root().path, id.as_str(), cmd, timeout, EXEC_OUTPUT_LIMIT, false)
            .map_err(|e| RuntimeError::with_source(ErrorKind::Internal, format!("exec in container {id}"), e))?;
        match run.exit_code {
            Some(exit_code) => Ok(ExecSyncResult { stdout: run.stdout, stderr: run.stderr, exit_code }),
            None => Err(RuntimeError::new(
                ErrorKind::DeadlineExceeded,
                format!("exec in container {id}: timed out after {:?}", timeout.unwrap_or_default()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_at_the_limit_and_read_to_the_end() {
        let data = vec![7u8; 100_000];
        let kept = read_bounded(&data[..], 1000);
        assert_eq!(kept.len(), 1000);
        assert_eq!(read_bounded(&b"abc"[..], 1000), b"abc");
    }
}
