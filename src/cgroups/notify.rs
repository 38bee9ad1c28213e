//! OOM notifications: v1 through an eventfd registered on
//! memory.oom_control with cgroup.event_control; v2 by watching
//! memory.events with inotify and reading its oom_kill counter.
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::{Cgroup, Layout};
use crate::error::{Error, Result, SysContext};

pub enum OomWatcher {
    V1 {
        efd: EventFd,
        dir: PathBuf,
        // Kept open: the kernel's registration lives as long as both fds.
        _control: File,
    },
    V2 {
        inotify: Inotify,
        dir: PathBuf,
        last: u64,
    },
}

impl OomWatcher {
    pub fn new(cg: &Cgroup) -> Result<OomWatcher> {
        let dir = cg.memory_dir().ok_or_else(|| Error::Cgroup("the memory controller is not available".into()))?;
        match cg.layout {
            Layout::V1 => Self::v1(dir),
            Layout::V2 => Self::v2(dir),
        }
    }

    fn v1(dir: &Path) -> Result<OomWatcher> {
        let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).sys_context(|| "eventfd".into())?;
        let control = File::open(dir.join("memory.oom_control")).sys_context(|| format!("open {}/memory.oom_control", dir.display()))?;
        // "<event fd> <fd of the file to watch>": the kernel then signals
        // the eventfd on every OOM in this cgroup (and when it is removed).
        let line = format!("{} {}", efd.as_fd().as_raw_fd(), control.as_raw_fd());
        std::fs::write(dir.join("cgroup.event_control"), line).sys_context(|| format!("register OOM eventfd in {}", dir.display()))?;
        Ok(OomWatcher::V1 { efd, dir: dir.to_path_buf(), _control: control })
    }

    fn v2(dir: &Path) -> Result<OomWatcher> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).sys_context(|| "inotify_init".into())?;
        inotify
            .add_watch(&dir.join("memory.events"), AddWatchFlags::IN_MODIFY)
            .sys_context(|| format!("watch {}/memory.events", dir.display()))?;
        let last = super::v2::memory::oom_kill_count(dir).unwrap_or(0);
        Ok(OomWatcher::V2 { inotify, dir: dir.to_path_buf(), last })
    }

    /// Wait up to `timeout` for OOM events; returns how many happened.
    pub fn wait(&mut self, timeout: Duration) -> Result<u64> {
        let fd = match &*self {
            OomWatcher::V1 { efd, .. } => efd.as_fd(),
            OomWatcher::V2 { inotify, .. } => inotify.as_fd(),
        };
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let ready = poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], PollTimeout::from(ms));
        match ready {
            Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(0),
            Ok(_) => {}
            Err(e) => return Err(Error::sys("poll OOM notifier", e)),
        }
        match self {
            OomWatcher::V1 { efd, dir, .. } => {
                let n = efd.read().unwrap_or(0);
                // The kernel also signals the eventfd when the cgroup is
                // removed: that is no OOM.
                Ok(if dir.join("memory.oom_control").exists() { n } else { 0 })
            }
            OomWatcher::V2 { inotify, dir, last } => {
                let _ = inotify.read_events();
                let now = super::v2::memory::oom_kill_count(dir).unwrap_or(*last);
                let n = now.saturating_sub(*last);
                *last = now;
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_watcher_counts_new_oom_kills() {
        let t = tempfile::tempdir().unwrap();
        let events = t.path().join("memory.events");
        std::fs::write(&events, "low 0\nhigh 0\nmax 0\noom 1\noom_kill 2\n").unwrap();
        let mut w = OomWatcher::v2(t.path()).unwrap();
        assert_eq!(w.wait(Duration::from_millis(10)).unwrap(), 0, "earlier kills are not reported");
        std::fs::write(&events, "low 0\nhigh 0\nmax 3\noom 2\noom_kill 3\n").unwrap();
        assert_eq!(w.wait(Duration::from_secs(5)).unwrap(), 1);
        std::fs::write(&events, "low 0\nhigh 0\nmax 4\noom 2\noom_kill 3\n").unwrap();
        assert_eq!(w.wait(Duration::from_secs(5)).unwrap(), 0, "a change without a kill");
    }
}
