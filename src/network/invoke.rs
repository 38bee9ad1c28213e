//! Running one CNI plugin binary: the CNI_* environment, the config on
//! stdin, the result or error JSON on stdout, a time limit.
//!
//! No threads: stdin, stdout and stderr are served from one poll loop, so a
//! caller that forks afterwards (the pod layer) stays single-threaded.
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::error::{NetworkError, Result};
use super::result::CniErrorOutput;

/// Most a plugin may print on stdout or stderr; more is cut off.
const MAX_OUTPUT: usize = 4 << 20;
/// How often the loop looks whether the plugin exited, in case a child it
/// left behind keeps its stdout open.
const EXIT_CHECK: Duration = Duration::from_millis(50);

/// The CNI command (CNI_COMMAND).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Del,
    Check,
}

impl CniCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
            CniCommand::Check => "CHECK",
        }
    }
}

/// What one invocation needs besides the plugin's config.
pub struct Invocation<'a> {
    pub command: CniCommand,
    pub container_id: &'a str,
    /// CNI_NETNS; empty when the namespace is already gone (DEL only).
    pub netns: &'a str,
    pub ifname: &'a str,
    /// CNI_ARGS, already joined ("K=V;K=V").
    pub args: &'a str,
    pub plugin_dirs: &'a [PathBuf],
    pub timeout: Duration,
}

/// The first executable named `plugin` in `dirs`.
pub fn find_plugin(plugin: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter()
        .map(|d| d.join(plugin))
        .find(|p| std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false))
        .ok_or_else(|| NetworkError::PluginNotFound { plugin: plugin.to_string(), dirs: dirs.to_vec() })
}

/// Run `plugin` with `config` on stdin. Returns its stdout on success (the
/// result JSON for ADD, usually empty for DEL and CHECK); a CNI error JSON
/// becomes [`NetworkError::Plugin`] with the plugin's message.
pub fn invoke(plugin: &str, config: &[u8], inv: &Invocation) -> Result<Vec<u8>> {
    let path = find_plugin(plugin, inv.plugin_dirs)?;
    let cni_path = std::env::join_paths(inv.plugin_dirs)
        .map_err(|e| NetworkError::InvalidRequest(format!("plugin dirs cannot form CNI_PATH: {e}")))?;
    log::debug!("CNI {} {plugin} ({}) id={} ifname={}", inv.command.as_str(), path.display(), inv.container_id, inv.ifname);
    let mut cmd = Command::new(&path);
    cmd.env("CNI_COMMAND", inv.command.as_str())
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", &cni_path)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // ETXTBSY: a plugin binary just installed may still be open for writing
    // in some forked-but-not-yet-exec'd process; libcni retries too.
    let mut attempts = 0;
    let mut child = loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 20 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other.map_err(|e| NetworkError::sys(format!("run CNI plugin {}", path.display()), e))?,
        }
    };
    let outcome = exchange(&mut child, config, inv.timeout);
    let (stdout, stderr, status) = match outcome {
        Ok(Some(done)) => done,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(NetworkError::PluginTimeout { plugin: plugin.into(), command: inv.command.as_str(), timeout: inv.timeout });
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(NetworkError::sys(format!("talk to CNI plugin {plugin}"), e));
        }
    };
    if status.success() {
        return Ok(stdout);
    }
    if let Some(err) = CniErrorOutput::parse(&stdout) {
        return Err(NetworkError::Plugin {
            plugin: plugin.into(),
            command: inv.command.as_str(),
            code: err.code,
            msg: err.msg,
            details: err.details,
        });
    }
    let mut output = String::from_utf8_lossy(&stdout).trim().to_string();
    let err_text = String::from_utf8_lossy(&stderr);
    if !err_text.trim().is_empty() {
        if !output.is_empty() {
            output.push_str("; ");
        }
        output.push_str(err_text.trim());
    }
    Err(NetworkError::PluginFailed { plugin: plugin.into(), command: inv.command.as_str(), status: status.to_string(), output })
}

type Done = (Vec<u8>, Vec<u8>, std::process::ExitStatus);

/// Feed stdin, collect stdout and stderr, wait for the exit; `None` when
/// the deadline passed first (the caller kills the plugin).
fn exchange(child: &mut Child, input: &[u8], timeout: Duration) -> std::io::Result<Option<Done>> {
    let deadline = Instant::now() + timeout;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    for fd in [stdin.as_ref().map(|f| f.as_fd()), stdout.as_ref().map(|f| f.as_fd()), stderr.as_ref().map(|f| f.as_fd())]
        .into_iter()
        .flatten()
    {
        let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut written = 0;
    if input.is_empty() {
        stdin = None;
    }
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        let wait = (deadline - now).min(EXIT_CHECK);
        let mut fds = Vec::with_capacity(3);
        if let Some(f) = &stdin {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLOUT));
        }
        if let Some(f) = &stdout {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        if let Some(f) = &stderr {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        if !fds.is_empty() {
            match poll(&mut fds, PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            std::thread::sleep(wait);
        }
        drop(fds);
        if let Some(f) = stdin.as_mut() {
            match f.write(&input[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                // EPIPE: the plugin stopped reading; its exit says why.
                Err(_) => written = input.len(),
            }
            if written >= input.len() {
                stdin = None; // EOF for the plugin
            }
        }
        drain(&mut stdout, &mut out)?;
        drain(&mut stderr, &mut err)?;
        if stdout.is_none() && stderr.is_none() {
            let status = wait_until(child, deadline)?;
            return Ok(status.map(|s| (out, err, s)));
        }
        if let Some(status) = child.try_wait()? {
            // Exited, but something it left behind may hold the pipes:
            // take what is there now and stop.
            drain(&mut stdout, &mut out)?;
            drain(&mut stderr, &mut err)?;
            return Ok(Some((out, err, status)));
        }
    }
}

/// Read what is available; drop the pipe at EOF.
fn drain<R: Read>(pipe: &mut Option<R>, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let Some(r) = pipe.as_mut() else { return Ok(()) };
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => {
                *pipe = None;
                return Ok(());
            }
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<std::process::ExitStatus>> {
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn inv(dirs: &[PathBuf], timeout: Duration) -> Invocation<'_> {
        Invocation {
            command: CniCommand::Add,
            container_id: "c1",
            netns: "/x/ns",
            ifname: "eth0",
            args: "IgnoreUnknown=1",
            plugin_dirs: dirs,
            timeout,
        }
    }

    #[test]
    fn passes_env_and_stdin_and_reads_stdout() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "echoer",
            r#"printf '{"env":"%s %s %s %s %s","stdin":' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS"; cat; printf '}'"#,
        );
        let dirs = vec![dir.path().join("missing"), dir.path().to_path_buf()];
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(300_000));
        let out = invoke("echoer", big.as_bytes(), &inv(&dirs, Duration::from_secs(10))).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["env"], "ADD c1 /x/ns eth0 IgnoreUnknown=1");
        assert_eq!(v["stdin"]["pad"].as_str().unwrap().len(), 300_000);
    }

    #[test]
    fn error_json_and_plain_failures() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "fails", r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"no such bridge","details":"b0"}'; exit 1"#);
        script(dir.path(), "crashes", "echo 'panic: boom' >&2; exit 2");
        let dirs = vec![dir.path().to_path_buf()];
        let e = invoke("fails", b"{}", &inv(&dirs, Duration::from_secs(10))).unwrap_err();
        assert!(matches!(&e, NetworkError::Plugin { code: 11, msg, .. } if msg == "no such bridge"), "{e:?}");
        assert!(e.to_string().contains("no such bridge") && e.to_string().contains("\"fails\" ADD"), "{e}");
        let e = invoke("crashes", b"{}", &inv(&dirs, Duration::from_secs(10))).unwrap_err();
        assert!(e.to_string().contains("panic: boom"), "{e}");
        let e = invoke("absent", b"{}", &inv(&dirs, Duration::from_secs(10))).unwrap_err();
        assert!(matches!(e, NetworkError::PluginNotFound { .. }), "{e:?}");
    }

    #[test]
    fn a_hanging_plugin_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "hangs", "exec sleep 30");
        let dirs = vec![dir.path().to_path_buf()];
        let t = Instant::now();
        let e = invoke("hangs", b"{}", &inv(&dirs, Duration::from_millis(300))).unwrap_err();
        assert!(matches!(e, NetworkError::PluginTimeout { .. }), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
