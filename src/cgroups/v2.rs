//! cgroup v2: one directory in the unified hierarchy.
use std::path::Path;

use super::{mkdir_recording, mountinfo, relative_path, Cgroup};
use crate::error::{Error, Result};

pub(super) fn create(cg: &mut Cgroup, cgroups_path: Option<&Path>, id: &str) -> Result<()> {
    let own = mountinfo::own_cgroups(&std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default());
    let rel = relative_path(cgroups_path, id, own.get("").map(String::as_str))?;
    let dir = Path::new("/sys/fs/cgroup").join(rel.strip_prefix("/").unwrap_or(&rel));
    mkdir_recording(&dir, &mut cg.created)?;
    cg.dirs.insert(String::new(), dir);
    Ok(())
}

pub(super) fn set_frozen(cg: &Cgroup, frozen: bool) -> Result<()> {
    let dir = cg.dirs.get("").ok_or_else(|| Error::Cgroup("no v2 cgroup".into()))?;
    let path = dir.join("cgroup.freeze");
    std::fs::write(&path, if frozen { "1" } else { "0" })
        .map_err(|e| Error::Cgroup(format!("write {}: {e}", path.display())))?;
    // cgroup.events reports "frozen 1" once every task has stopped.
    for _ in 0..1000 {
        let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
        let done = events.lines().any(|l| l == if frozen { "frozen 1" } else { "frozen 0" });
        if done {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(Error::Cgroup(format!("{} did not settle", path.display())))
}

pub(super) fn is_frozen(cg: &Cgroup) -> bool {
    cg.dirs
        .get("")
        .and_then(|d| std::fs::read_to_string(d.join("cgroup.freeze")).ok())
        .is_some_and(|s| s.trim() == "1")
}
