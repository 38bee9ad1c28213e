//! Running OCI hooks: the container state on stdin, the hook's own env,
//! an optional timeout, and the hook's output in the error when it fails.
use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};
use crate::oci::state::SpecState;

/// Which hook list is being run (for messages).
#[derive(Debug, Clone, Copy)]
pub enum HookKind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        })
    }
}

/// Run every hook of a list in order; the first failure stops the list.
pub fn run_all(kind: HookKind, hooks: Option<&Vec<Hook>>, state: &SpecState) -> Result<()> {
    let Some(hooks) = hooks else { return Ok(()) };
    if hooks.is_empty() {
        return Ok(());
    }
    let state_json = serde_json::to_vec(state).map_err(|e| Error::Init(e.to_string()))?;
    for hook in hooks {
        run_one(kind, hook, &state_json)?;
    }
    Ok(())
}

fn run_one(kind: HookKind, hook: &Hook, state_json: &[u8]) -> Result<()> {
    let fail = |message: String| Error::Hook { kind: kind.to_string(), path: hook.path().clone(), message };
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(hook.path());
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // Output goes to an anonymous file so that a chatty hook cannot block on
    // a full pipe while we wait for it; it is quoted in the error.
    let mut output = output_file().map_err(|e| fail(format!("output file: {e}")))?;
    // The state goes in through an anonymous file too, written before the
    // hook starts: a hook that never reads its stdin cannot block us, nor
    // make the write raise SIGPIPE (hull's commands take SIGPIPE's default
    // action, to end quietly when their output's reader goes away).
    let mut input = output_file().map_err(|e| fail(format!("state file: {e}")))?;
    input
        .write_all(state_json)
        .and_then(|()| input.seek(std::io::SeekFrom::Start(0)).map(|_| ()))
        .map_err(|e| fail(format!("state file: {e}")))?;
    cmd.stdin(input)
        .stdout(output.try_clone().map_err(|e| fail(e.to_string()))?)
        .stderr(output.try_clone().map_err(|e| fail(e.to_string()))?);
    let mut child = cmd.spawn().map_err(|e| fail(format!("cannot run: {e}")))?;
    let timeout = hook.timeout().map(|t| Duration::from_secs(t as u64));
    let status = wait_bounded(&mut child, timeout).map_err(|e| {
        let _ = child.kill();
        let _ = child.wait();
        fail(e)
    })?;
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let _ = output.rewind();
    let _ = output.take(4096).read_to_string(&mut text);
    let text = text.trim();
    Err(fail(format!("{status}{}{}", if text.is_empty() { "" } else { ", output: " }, text)))
}

fn output_file() -> std::io::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(c"hook-output", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    Ok(std::fs::File::from(fd))
}

fn wait_bounded(child: &mut std::process::Child, timeout: Option<Duration>) -> std::result::Result<std::process::ExitStatus, String> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if let Some(t) = timeout {
            if start.elapsed() >= t {
                return Err(format!("timed out after {}s", t.as_secs()));
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::state::Status;

    fn hook(json: serde_json::Value) -> Hook {
        serde_json::from_value(json).unwrap()
    }

    fn state() -> SpecState<'static> {
        SpecState {
            oci_version: "1.2.1",
            id: "t",
            status: Status::Creating,
            pid: Some(1),
            bundle: std::path::Path::new("/b"),
            annotations: None,
        }
    }

    #[test]
    fn hook_gets_state_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", out.display())]}));
        run_all(HookKind::Prestart, Some(&vec![h]), &state()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
        assert_eq!(v["id"], "t");
        assert_eq!(v["status"], "creating");
    }

    #[test]
    fn failing_hook_reports_its_output() {
        let h = hook(serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}));
        let err = run_all(HookKind::Poststart, Some(&vec![h]), &state()).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("poststart"), "{err}");
    }

    #[test]
    fn slow_hook_times_out() {
        let h = hook(serde_json::json!({"path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1}));
        let start = Instant::now();
        let err = run_all(HookKind::Prestart, Some(&vec![h]), &state()).unwrap_err().to_string();
        assert!(err.contains("timed out"), "{err}");
        assert!(start.elapsed() < Duration::from_secs(4));
    }
}
