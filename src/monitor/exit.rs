//! The record a monitor leaves when its container exits.
use std::path::Path;

use nix::sys::wait::WaitStatus;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SysContext};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// The exit status, or 128+signal for a signal death.
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub started_at: String,
    pub finished_at: String,
    pub oom_killed: bool,
    /// CRI's reason: Completed, Error or OOMKilled.
    pub reason: String,
}

impl ExitRecord {
    pub fn from_status(status: WaitStatus, started_at: String, oom_killed: bool) -> ExitRecord {
        let (exit_code, signal) = match status {
            WaitStatus::Exited(_, c) => (c, None),
            WaitStatus::Signaled(_, s, _) => (128 + s as i32, Some(s as i32)),
            _ => (255, None),
        };
        let reason = if oom_killed {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        ExitRecord {
            exit_code,
            signal,
            started_at,
            finished_at: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            oom_killed,
            reason: reason.into(),
        }
    }

    /// Write atomically: a reader sees the whole record or none.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        std::fs::write(&tmp, bytes).sys_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).sys_context(|| format!("rename {}", path.display()))
    }

    pub fn load(path: &Path) -> Option<ExitRecord> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    #[test]
    fn signal_deaths_are_128_plus_n_and_oom_wins_the_reason() {
        let r = ExitRecord::from_status(WaitStatus::Signaled(Pid::from_raw(1), Signal::SIGKILL, false), "t".into(), true);
        assert_eq!((r.exit_code, r.signal, r.reason.as_str()), (137, Some(9), "OOMKilled"));
        let r = ExitRecord::from_status(WaitStatus::Exited(Pid::from_raw(1), 0), "t".into(), false);
        assert_eq!(r.reason, "Completed");
        let dir = tempfile::tempdir().unwrap();
        r.save(&dir.path().join("exit.json")).unwrap();
        assert_eq!(ExitRecord::load(&dir.path().join("exit.json")), Some(r));
    }
}
