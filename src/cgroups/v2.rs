//! cgroup v2: one directory in the unified hierarchy; one file per
//! controller in `v2/`. cpuset and pids have the same files and formats as
//! in v1 and use the v1 code.
pub mod cpu;
pub mod devices;
pub mod hugetlb;
pub mod io;
pub mod memory;
pub mod unified;

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use super::controller::Controller;
use super::stats::Stats;
use super::v1::{cpuset::CpuSet, pids::Pids};
use super::{missing_dirs, mountinfo, relative_path, Cgroup};
use crate::error::{Error, Result};

/// Controllers hull enables for its containers' subtrees.
const CONTROLLERS: [&str; 6] = ["cpuset", "cpu", "io", "memory", "pids", "hugetlb"];

pub(super) fn plan(cg: &mut Cgroup, cgroups_path: Option<&Path>, id: &str) -> Result<()> {
    let own = mountinfo::own_cgroups(&std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default());
    let rel = relative_path(cgroups_path, id, own.get("").map(String::as_str))?;
    let dir = Path::new(ROOT).join(rel.strip_prefix("/").unwrap_or(&rel));
    missing_dirs(&dir, &mut cg.created);
    cg.dirs.insert(String::new(), dir);
    Ok(())
}

const ROOT: &str = "/sys/fs/cgroup";

/// Enable the controllers down to the made cgroup.
pub(super) fn init(cg: &Cgroup) -> Result<()> {
    if let Some(dir) = cg.dirs.get("") {
        enable_controllers(Path::new(ROOT), dir);
    }
    Ok(())
}

/// A v2 cgroup only has the controllers its parent enabled in
/// cgroup.subtree_control: enable ours on every level from the root down to
/// the container's parent. One write per controller, and failures ignored
/// (a controller the host lacks, or one a threaded subtree refuses); a
/// limit that then cannot be applied fails naming its field.
pub fn enable_controllers(root: &Path, dir: &Path) {
    let Ok(rel) = dir.strip_prefix(root) else { return };
    let mut level = root.to_path_buf();
    for part in rel.iter() {
        let available = std::fs::read_to_string(level.join("cgroup.controllers")).unwrap_or_default();
        for c in CONTROLLERS {
            if available.split_whitespace().any(|a| a == c) {
                let _ = std::fs::write(level.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
        level.push(part);
    }
}

fn apply_one<C: Controller>(dir: &Path, r: &LinuxResources) -> Result<()> {
    if C::wanted(r).is_none() {
        return Ok(());
    }
    C::apply(dir, r)
}

/// Apply `linux.resources` (all but devices) to the container's directory.
pub fn apply_dir(dir: &Path, r: &LinuxResources) -> Result<()> {
    if r.network().is_some() {
        return Err(Error::unsupported("linux.resources.network", "net_cls/net_prio are cgroup v1 controllers"));
    }
    apply_one::<CpuSet>(dir, r)?;
    apply_one::<memory::Memory>(dir, r)?;
    apply_one::<cpu::Cpu>(dir, r)?;
    apply_one::<Pids>(dir, r)?;
    apply_one::<io::Io>(dir, r)?;
    apply_one::<hugetlb::Hugetlb>(dir, r)?;
    apply_one::<unified::Unified>(dir, r)?;
    Ok(())
}

pub(super) fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<()> {
    let dir = cg.dirs.get("").ok_or_else(|| Error::Cgroup("no v2 cgroup".into()))?;
    apply_dir(dir, r)
}

pub fn stats_dir(dir: &Path) -> Stats {
    let mut s = Stats::default();
    cpu::Cpu::stats(dir, &mut s);
    memory::Memory::stats(dir, &mut s);
    Pids::stats(dir, &mut s);
    io::Io::stats(dir, &mut s);
    hugetlb::Hugetlb::stats(dir, &mut s);
    s
}

pub(super) fn stats(cg: &Cgroup) -> Stats {
    cg.dirs.get("").map(|d| stats_dir(d)).unwrap_or_default()
}

pub(super) fn set_frozen(cg: &Cgroup, frozen: bool) -> Result<()> {
    let dir = cg.dirs.get("").ok_or_else(|| Error::Cgroup("no v2 cgroup".into()))?;
    let path = dir.join("cgroup.freeze");
    std::fs::write(&path, if frozen { "1" } else { "0" }).map_err(|e| Error::Cgroup(format!("write {}: {e}", path.display())))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};

    #[test]
    fn enables_controllers_down_to_the_parent() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let dir = root.join("a/b");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(root.join("cgroup.controllers"), "cpu io memory pids").unwrap();
        std::fs::write(root.join("a/cgroup.controllers"), "memory").unwrap();
        enable_controllers(root, &dir);
        // A plain file keeps the last write: one write per controller.
        assert_eq!(std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(), "+pids");
        assert_eq!(std::fs::read_to_string(root.join("a/cgroup.subtree_control")).unwrap(), "+memory");
        assert!(!dir.join("cgroup.subtree_control").exists());
    }

    #[test]
    fn applies_every_controller_file() {
        let t =
            crate::cgroups::controller::fake_cgroup(&["cpu.weight", "cpu.max", "cpuset.cpus", "memory.max", "memory.swap.max", "pids.max"]);
        let r = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().shares(512u64).quota(20000i64).cpus("0").build().unwrap())
            .memory(LinuxMemoryBuilder::default().limit(1i64 << 26).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(10i64).build().unwrap())
            .build()
            .unwrap();
        apply_dir(t.path(), &r).unwrap();
        let r = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap();
        assert_eq!(r("cpu.weight"), "59");
        assert_eq!(r("cpu.max"), "20000 100000");
        assert_eq!(r("cpuset.cpus"), "0");
        assert_eq!(r("memory.max"), "67108864");
        assert_eq!(r("pids.max"), "10");
        assert_eq!(r("memory.swap.max"), "", "swap is not set");
    }

    #[test]
    fn a_missing_controller_file_names_the_field() {
        let t = crate::cgroups::controller::fake_cgroup(&["memory.max"]);
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(10i64).build().unwrap())
            .build()
            .unwrap();
        let err = apply_dir(t.path(), &r).unwrap_err().to_string();
        assert!(err.contains("linux.resources.pids.limit"), "{err}");
    }

    #[test]
    fn network_is_refused_on_v2() {
        let t = tempfile::tempdir().unwrap();
        let r: LinuxResources = serde_json::from_str(r#"{"network":{"classID":1}}"#).unwrap();
        assert!(apply_dir(t.path(), &r).unwrap_err().to_string().contains("linux.resources.network"));
    }
}
