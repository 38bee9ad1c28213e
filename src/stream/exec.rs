//! The process behind a streaming exec: `hull exec` run as a child (the
//! daemon never forks), with pipes, or with a pty whose master `hull exec`
//! sends to a console socket this module listens on.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::process::{Child, Command};

use super::protocol::TerminalSize;

/// What to run, resolved by whoever issued the stream's token.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    /// The hull binary (`hull exec` does the namespace work).
    pub hull: PathBuf,
    /// The OCI state root the container lives under, and its OCI id.
    pub state_root: PathBuf,
    pub container: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// How long `hull exec` may take to hand over the pty master.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A running exec. Dropping it kills the process.
pub struct Process {
    child: Child,
    pid_file: PathBuf,
    work: PathBuf,
    pub stdin: Option<Writer>,
    pub stdout: Option<Reader>,
    pub stderr: Option<Reader>,
    master: Option<OwnedFd>,
    done: bool,
}

impl Process {
    /// Start the exec. `work` is a private directory for this session's
    /// console socket and pid file (removed when the process ends).
    pub async fn start(t: &ExecTarget, work: &Path) -> std::io::Result<Process> {
        std::fs::create_dir_all(work)?;
        let pid_file = work.join("pid");
        let mut cmd = Command::new(&t.hull);
        cmd.arg("--root").arg(&t.state_root).arg("exec").arg("--pid-file").arg(&pid_file);
        let listener = if t.tty {
            let sock = work.join("console.sock");
            let l = tokio::net::UnixListener::bind(&sock)?;
            cmd.arg("--tty").arg("--console-socket").arg(&sock);
            Some(l)
        } else {
            None
        };
        cmd.arg(&t.container).arg("--").args(&t.cmd);
        let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        if t.tty {
            // hull exec's own stdio only carries its error messages.
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        } else {
            cmd.stdin(piped(t.stdin)).stdout(piped(t.stdout)).stderr(piped(t.stderr));
        }
        cmd.kill_on_drop(true);
        let child = cmd.spawn()?;
        let mut p =
            Process { stdin: None, stdout: None, stderr: None, master: None, done: false, child, pid_file, work: work.to_path_buf() };
        match listener {
            None => {
                p.stdin = p.child.stdin.take().map(|w| Box::new(w) as Writer);
                p.stdout = p.child.stdout.take().map(|r| Box::new(r) as Reader);
                p.stderr = p.child.stderr.take().map(|r| Box::new(r) as Reader);
            }
            Some(l) => {
                let master = match tokio::time::timeout(CONSOLE_TIMEOUT, receive_master(&l, &mut p.child)).await {
                    Ok(Ok(m)) => m,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(std::io::Error::other("hull exec sent no terminal in time")),
                };
                let file = |fd: &OwnedFd| fd.try_clone().map(|f| tokio::fs::File::from_std(std::fs::File::from(f)));
                p.stdout = Some(Box::new(file(&master)?));
                p.stdin = t.stdin.then(|| file(&master)).transpose()?.map(|f| Box::new(f) as Writer);
                // With a tty, stderr is the terminal too; hull exec's own
                // errors (e.g. no such executable) still come through here.
                p.stderr = p.child.stderr.take().map(|r| Box::new(r) as Reader);
                p.master = Some(master);
            }
        }
        Ok(p)
    }

    /// Apply a terminal size (no-op without a tty).
    pub fn resize(&self, size: TerminalSize) {
        if let Some(m) = &self.master {
            use std::os::fd::AsRawFd;
            let _ = crate::linux::syscall::set_window_size(m.as_fd().as_raw_fd(), size.height, size.width);
        }
    }

    /// Wait for the exec to end; its exit code (128+n for a signal).
    pub async fn wait(&mut self) -> std::io::Result<i32> {
        let status = self.child.wait().await?;
        self.done = true;
        self.cleanup();
        use std::os::unix::process::ExitStatusExt;
        Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    /// Kill the exec'd process (the client went away) and reap `hull exec`.
    pub async fn kill(&mut self) {
        if self.done {
            return;
        }
        // The process is hull exec's child (it is the subreaper and has
        // not reaped it while it runs), so its pid cannot be reused yet.
        for _ in 0..20 {
            if let Some(pid) = std::fs::read_to_string(&self.pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                break;
            }
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
        self.done = true;
        self.cleanup();
    }

    fn cleanup(&mut self) {
        self.master = None;
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

impl Drop for Process {
    /// A session dropped mid-way (idle timeout, server shutdown): the
    /// process goes with it; hull exec then ends (kill_on_drop kills it if not).
    fn drop(&mut self) {
        if !self.done {
            if let Some(pid) = std::fs::read_to_string(&self.pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        self.cleanup();
    }
}

/// Accept hull exec's connection to the console socket and take the
/// master; fails early if hull exec exits first (its error is on stderr).
async fn receive_master(l: &tokio::net::UnixListener, child: &mut Child) -> std::io::Result<OwnedFd> {
    tokio::select! {
        conn = l.accept() => {
            let (s, _) = conn?;
            let s = s.into_std()?;
            s.set_nonblocking(false)?;
            tokio::task::spawn_blocking(move || {
                crate::oci::tty_proxy::receive_master_on(s.as_fd()).map_err(|e| std::io::Error::other(e.to_string()))
            })
            .await
            .map_err(std::io::Error::other)?
        }
        status = child.wait() => {
            let mut msg = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = e.read_to_string(&mut msg).await;
            }
            Err(std::io::Error::other(format!("hull exec ended ({}) before giving a terminal: {}", status?, msg.trim())))
        }
    }
}
