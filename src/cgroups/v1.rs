//! cgroup v1: one directory per mounted hierarchy, one file per controller
//! in `v1/`.
pub mod blkio;
pub mod cpu;
pub mod cpuacct;
pub mod cpuset;
pub mod hugetlb;
pub mod memory;
pub mod net;
pub mod pids;

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::controller::Controller;
use super::stats::Stats;
use super::{devices::Rule, missing_dirs, mountinfo, relative_path, Cgroup};
use crate::error::{Error, Result};

/// The container's directory in the hierarchy that has controller `name`.
pub(super) fn dir_of<'a>(cg: &'a Cgroup, name: &str) -> Option<&'a Path> {
    cg.dirs.iter().find(|(k, _)| k.split(',').any(|c| c == name)).map(|(_, d)| d.as_path())
}

fn apply_one<C: Controller>(cg: &Cgroup, r: &LinuxResources) -> Result<()> {
    let Some(field) = C::wanted(r) else { return Ok(()) };
    let dir = dir_of(cg, C::NAME).ok_or_else(|| Error::resource(field, format!("the cgroup v1 {} controller is not mounted", C::NAME)))?;
    C::apply(dir, r)
}

/// Apply `linux.resources` (all but devices) to every hierarchy. cpuset
/// first (memory placement), memory before cpu as runc orders them.
pub(super) fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<()> {
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(Error::unsupported("linux.resources.unified", "it needs cgroup v2 and this host uses cgroup v1"));
    }
    apply_one::<cpuset::CpuSet>(cg, r)?;
    apply_one::<memory::Memory>(cg, r)?;
    apply_one::<cpu::Cpu>(cg, r)?;
    apply_one::<pids::Pids>(cg, r)?;
    apply_one::<blkio::Blkio>(cg, r)?;
    apply_one::<hugetlb::Hugetlb>(cg, r)?;
    apply_one::<net::NetCls>(cg, r)?;
    apply_one::<net::NetPrio>(cg, r)?;
    Ok(())
}

fn stats_one<C: Controller>(cg: &Cgroup, s: &mut Stats) {
    if let Some(dir) = dir_of(cg, C::NAME) {
        C::stats(dir, s);
    }
}

pub(super) fn stats(cg: &Cgroup) -> Stats {
    let mut s = Stats::default();
    stats_one::<cpu::Cpu>(cg, &mut s);
    stats_one::<cpuacct::CpuAcct>(cg, &mut s);
    stats_one::<memory::Memory>(cg, &mut s);
    stats_one::<pids::Pids>(cg, &mut s);
    stats_one::<blkio::Blkio>(cg, &mut s);
    stats_one::<hugetlb::Hugetlb>(cg, &mut s);
    s
}

pub(super) fn plan(cg: &mut Cgroup, cgroups_path: Option<&Path>, id: &str) -> Result<()> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::Cgroup(format!("read mountinfo: {e}")))?;
    let own = mountinfo::own_cgroups(&std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default());
    for h in mountinfo::v1_hierarchies(&mi) {
        let rel = relative_path(cgroups_path, id, own.get(&h.name).map(String::as_str))?;
        let dir = dir_in_hierarchy(&h, &rel);
        missing_dirs(&dir, &mut cg.created);
        cg.dirs.insert(h.name, dir);
    }
    if cg.dirs.is_empty() {
        return Err(Error::Cgroup("no cgroup v1 hierarchy is mounted".into()));
    }
    Ok(())
}

/// What a made cgroup needs before a task can join it.
pub(super) fn init(cg: &Cgroup) -> Result<()> {
    match cg.dirs.iter().find(|(name, _)| name.split(',').any(|c| c == "cpuset")) {
        Some((_, dir)) => init_cpuset(dir),
        None => Ok(()),
    }
}

/// The directory for a hierarchy path, accounting for a mount that shows
/// only a subtree of the hierarchy (as inside another container).
fn dir_in_hierarchy(h: &mountinfo::Hierarchy, rel: &Path) -> PathBuf {
    let inside = rel.strip_prefix(&h.mount_root).unwrap_or(rel);
    let inside = inside.strip_prefix("/").unwrap_or(inside);
    h.mount_point.join(inside)
}

/// A new v1 cpuset cgroup starts with empty cpus/mems, and a task cannot
/// join it until they are set: copy them down from the nearest parent that
/// has them, for every level hull created.
fn init_cpuset(dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mut chain = vec![dir.to_path_buf()];
        let mut cur = dir.parent();
        let value = loop {
            let Some(p) = cur else { break String::new() };
            let v = std::fs::read_to_string(p.join(file)).unwrap_or_default();
            if !v.trim().is_empty() {
                break v;
            }
            chain.push(p.to_path_buf());
            cur = p.parent();
        };
        for d in chain.iter().rev() {
            let current = std::fs::read_to_string(d.join(file)).unwrap_or_default();
            if current.trim().is_empty() {
                std::fs::write(d.join(file), value.trim()).map_err(|e| Error::Cgroup(format!("init {}/{file}: {e}", d.display())))?;
            }
        }
    }
    Ok(())
}

pub(super) fn apply_devices(cg: &Cgroup, rules: &[Rule]) -> Result<()> {
    let Some(dir) = cg.dirs.get("devices") else {
        return Err(Error::Cgroup("the devices controller is not mounted".into()));
    };
    // One fd per file for all the rules (a path walk per rule cost ~11 opens
    // per container); each rule is still its own write(2), which is how the
    // kernel parses them, in the order given.
    let mut files: [Option<std::fs::File>; 2] = [None, None];
    for rule in rules {
        let (slot, file) = if rule.allow { (0, "devices.allow") } else { (1, "devices.deny") };
        let line = rule.v1_line();
        let fail = |e: std::io::Error| Error::Cgroup(format!("write {file} {line:?}: {e}"));
        let fd = match &mut files[slot] {
            Some(fd) => fd,
            empty => empty.insert(std::fs::OpenOptions::new().write(true).open(dir.join(file)).map_err(fail)?),
        };
        std::io::Write::write_all(fd, line.as_bytes()).map_err(fail)?;
    }
    Ok(())
}

pub(super) fn set_frozen(cg: &Cgroup, frozen: bool) -> Result<()> {
    let Some(dir) = cg.dirs.get("freezer") else {
        return Err(Error::Cgroup("the freezer controller is not mounted".into()));
    };
    let want = if frozen { "FROZEN" } else { "THAWED" };
    let path = dir.join("freezer.state");
    // Freezing can take a few rounds while tasks are in uninterruptible sleep.
    for _ in 0..1000 {
        std::fs::write(&path, want).map_err(|e| Error::Cgroup(format!("write {}: {e}", path.display())))?;
        let state = std::fs::read_to_string(&path).unwrap_or_default();
        if state.trim() == want {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Err(Error::Cgroup(format!("{} did not reach {want}", path.display())))
}

pub(super) fn is_frozen(cg: &Cgroup) -> bool {
    cg.dirs
        .get("freezer")
        .and_then(|d| std::fs::read_to_string(d.join("freezer.state")).ok())
        .is_some_and(|s| s.trim() == "FROZEN")
}
