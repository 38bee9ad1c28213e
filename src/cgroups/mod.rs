//! Placing a container in its cgroup(s), and removing them.
//!
//! A thin layer of our own rather than cgroups-rs: cgroups-rs 0.5 pins an old
//! nix, and what the runtime needs here is small — find the hierarchies,
//! create the directories, move pids, list/freeze/kill, remove. Each
//! hierarchy type has its own file: [`v1`] (one directory per controller
//! hierarchy, this machine) and [`v2`] (the unified hierarchy).
//!
//! Resource limits (`linux.resources`) are applied by one file per
//! controller behind [`controller::Controller`]: `v1/` and `v2/` side by
//! side. What hull does not implement is refused by [`check_supported`],
//! naming the field, before anything is created.
pub mod controller;
pub mod devices;
pub mod mountinfo;
pub mod notify;
pub mod stats;
pub mod systemd;
pub mod v1;
pub mod v2;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Swap in use by a cgroup, and its swap limit (None: unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwapUsage {
    pub usage: u64,
    pub limit: Option<u64>,
}

/// Which cgroup layout the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// v1 controllers, possibly with an empty cgroup2 mount beside them (hybrid).
    V1,
    /// The unified cgroup2 hierarchy with the controllers.
    V2,
}

/// Refuse resource settings hull does not apply, and values that are
/// invalid whatever the kernel says, naming the field. Runs before anything
/// is created.
pub fn check_supported(resources: &LinuxResources) -> Result<()> {
    check_resources(resources, detect_layout())
}

pub fn check_resources(r: &LinuxResources, layout: Layout) -> Result<()> {
    if r.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        return Err(Error::unsupported("linux.resources.rdma", "the rdma controller is not implemented"));
    }
    if let Some(m) = r.memory() {
        #[allow(deprecated)]
        if m.kernel().is_some() {
            return Err(Error::unsupported("linux.resources.memory.kernel", "kernel memory limits are obsolete (kernel 5.4)"));
        }
        if m.kernel_tcp().is_some() {
            return Err(Error::unsupported("linux.resources.memory.kernelTCP", "kernel memory limits are not implemented"));
        }
        if m.check_before_update().is_some() {
            return Err(Error::unsupported("linux.resources.memory.checkBeforeUpdate", "not implemented"));
        }
        for (field, v) in [("limit", m.limit()), ("swap", m.swap()), ("reservation", m.reservation())] {
            if v.is_some_and(|v| v < -1) {
                return Err(Error::resource(
                    format!("linux.resources.memory.{field}"),
                    format!("{} is not a byte count or -1", v.unwrap_or(0)),
                ));
            }
        }
        if m.swappiness().is_some_and(|s| s > 100) {
            return Err(Error::resource("linux.resources.memory.swappiness", format!("{} is not in 0-100", m.swappiness().unwrap_or(0))));
        }
    }
    if let Some(b) = r.block_io() {
        for (field, w) in [("weight", b.weight()), ("leafWeight", b.leaf_weight())] {
            if w.is_some_and(|w| w != 0 && !(10..=1000).contains(&w)) {
                return Err(Error::resource(format!("linux.resources.blockIO.{field}"), format!("{} is not in 10-1000", w.unwrap_or(0))));
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        v1::hugetlb::check_page_size(h.page_size())?;
    }
    if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
        if layout == Layout::V1 {
            return Err(Error::unsupported("linux.resources.unified", "it needs cgroup v2 and this host uses cgroup v1"));
        }
        for k in u.keys() {
            v2::unified::check_key(k)?;
        }
    }
    Ok(())
}

/// The host's layout: v2 when /sys/fs/cgroup itself is cgroup2.
pub fn detect_layout() -> Layout {
    match nix::sys::statfs::statfs("/sys/fs/cgroup") {
        Ok(st) if st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => Layout::V2,
        _ => Layout::V1,
    }
}

/// A container's cgroup: one directory per hierarchy (v1), or one (v2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cgroup {
    pub layout: Layout,
    /// Hierarchy name (v1 controller list such as "cpu,cpuacct" or
    /// "name=systemd"; "" for v2) → the container's directory in it.
    pub dirs: BTreeMap<String, PathBuf>,
    /// Directories hull created (deepest last), removed again on delete.
    pub created: Vec<PathBuf>,
}

/// Where the container's cgroup goes, relative to each hierarchy's root:
/// absolute cgroupsPath as given, a relative one under hull's own cgroup,
/// none → "/<id>".
///
/// The last is the default of hull's default `--root` only: runc (1.1)
/// puts a container without cgroupsPath at `<id>` below its caller's own
/// cgroup (`/<id>` for a caller in the root cgroup), and crun (1.8) at
/// `/<id>`, neither telling two `--root` directories apart (crun puts two
/// containers of one id in one cgroup without a word). `oci::create` gives
/// a container of any other root the absolute `/hull-<root hash>-<id>`
/// instead, so the same id under two roots gets two cgroups.
pub fn relative_path(cgroups_path: Option<&Path>, id: &str, own: Option<&str>) -> Result<PathBuf> {
    let p = match cgroups_path {
        None => PathBuf::from("/").join(id),
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => PathBuf::from(own.unwrap_or("/")).join(p),
    };
    // Normalise and refuse ".." so the path cannot climb out of the hierarchy.
    let mut clean = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => clean.push(n),
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            _ => return Err(Error::Config(format!("linux.cgroupsPath: {} must not contain \"..\"", p.display()))),
        }
    }
    if clean == Path::new("/") {
        return Err(Error::Config("linux.cgroupsPath: must not be the root cgroup".into()));
    }
    Ok(clean)
}

impl Cgroup {
    /// Create the container's cgroup directories. On error, whatever was
    /// created is removed again.
    pub fn create(cgroups_path: Option<&Path>, id: &str) -> Result<Cgroup> {
        let cg = Cgroup::plan(cgroups_path, id)?;
        cg.make()?;
        Ok(cg)
    }

    /// The cgroup `create` would make, made of nothing yet: its `created`
    /// lists the directories missing now. A caller that must undo a
    /// creation cut short records this first; `remove` of it removes what
    /// exists of those.
    pub fn plan(cgroups_path: Option<&Path>, id: &str) -> Result<Cgroup> {
        let layout = detect_layout();
        let mut cg = Cgroup { layout, dirs: BTreeMap::new(), created: Vec::new() };
        match layout {
            Layout::V1 => v1::plan(&mut cg, cgroups_path, id)?,
            Layout::V2 => v2::plan(&mut cg, cgroups_path, id)?,
        }
        Ok(cg)
    }

    /// Make the directories of a [`Cgroup::plan`]. `created` stays as
    /// planned, so that a plan recorded before the call is the record of
    /// what it made: a parent made meanwhile by someone else is listed too
    /// (harmless: a parent is removed only when empty), and a leaf made
    /// meanwhile is refused (it belongs to another container: two creators
    /// raced for one cgroup). On error, what this call made is removed.
    pub fn make(&self) -> Result<()> {
        let mut made = Vec::new();
        let mut result = Ok(());
        for d in &self.created {
            match std::fs::create_dir(d) {
                Ok(()) => made.push(d.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && self.dirs.values().any(|l| l == d) => {
                    result = Err(Error::Cgroup(format!("{} was made by another meanwhile: it belongs to another container", d.display())));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    result = Err(Error::Cgroup(format!("create {}: {e}", d.display())));
                    break;
                }
            }
        }
        let result = result.and_then(|()| match self.layout {
            Layout::V1 => v1::init(self),
            Layout::V2 => v2::init(self),
        });
        if let Err(e) = result {
            let _ = Cgroup { created: made, ..self.clone() }.remove();
            return Err(e);
        }
        Ok(())
    }

    /// Move a process into every hierarchy of this cgroup.
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        for dir in self.dirs.values() {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())
                .map_err(|e| Error::Cgroup(format!("add pid {pid} to {}: {e}", dir.display())))?;
        }
        Ok(())
    }

    /// Apply `linux.resources` other than the device list.
    pub fn apply_resources(&self, resources: &LinuxResources) -> Result<()> {
        match self.layout {
            Layout::V1 => v1::apply(self, resources),
            Layout::V2 => v2::apply(self, resources),
        }
    }

    /// The container's current resource usage.
    pub fn stats(&self) -> stats::Stats {
        match self.layout {
            Layout::V1 => v1::stats(self),
            Layout::V2 => v2::stats(self),
        }
    }

    /// The memory cgroup directory (v1) or the unified one (v2).
    pub fn memory_dir(&self) -> Option<&Path> {
        match self.layout {
            Layout::V1 => v1::dir_of(self, "memory"),
            Layout::V2 => self.dirs.get("").map(PathBuf::as_path),
        }
    }

    /// How many processes the OOM killer killed in this cgroup (None when
    /// the memory controller or its counter is missing, or the cgroup is gone).
    pub fn oom_kill_count(&self) -> Option<u64> {
        let dir = self.memory_dir()?;
        match self.layout {
            Layout::V1 => v1::memory::oom_kill_count(dir),
            Layout::V2 => v2::memory::oom_kill_count(dir),
        }
    }

    /// The cgroup's swap use (None without swap accounting: v1 without
    /// `memory.memsw.*`, v2 without `memory.swap.current`).
    pub fn swap_usage(&self) -> Option<SwapUsage> {
        let dir = self.memory_dir()?;
        match self.layout {
            Layout::V1 => v1::memory::swap_usage(dir),
            Layout::V2 => v2::memory::swap_usage(dir),
        }
    }

    /// Apply the device rules (v1 devices controller, v2 eBPF filter).
    pub fn apply_devices(&self, resources: Option<&LinuxResources>, extra: &[devices::Rule]) -> Result<()> {
        let mut rules: Vec<devices::Rule> = resources
            .and_then(|r| r.devices().as_ref())
            .map(|d| d.iter().map(devices::Rule::from_spec).collect())
            .unwrap_or_default();
        if rules.is_empty() {
            return Ok(());
        }
        rules.extend(devices::default_allowed());
        rules.extend_from_slice(extra);
        match self.layout {
            Layout::V1 => v1::apply_devices(self, &rules),
            Layout::V2 => {
                let dir = self.dirs.get("").ok_or_else(|| Error::Cgroup("no v2 cgroup".into()))?;
                v2::devices::apply(dir, &rules)
            }
        }
    }

    /// The pids in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = self.procs_dir()?;
        let text = std::fs::read_to_string(dir.join("cgroup.procs"))
            .map_err(|e| Error::Cgroup(format!("read {}/cgroup.procs: {e}", dir.display())))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    fn procs_dir(&self) -> Result<&Path> {
        ["pids", "freezer", "memory", "devices", ""]
            .iter()
            .find_map(|k| self.dirs.get(*k))
            .or_else(|| self.dirs.values().next())
            .map(|p| p.as_path())
            .ok_or_else(|| Error::Cgroup("container has no cgroup".into()))
    }

    /// Freeze or thaw every process in the cgroup.
    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        match self.layout {
            Layout::V1 => v1::set_frozen(self, frozen),
            Layout::V2 => v2::set_frozen(self, frozen),
        }
    }

    pub fn is_frozen(&self) -> bool {
        match self.layout {
            Layout::V1 => v1::is_frozen(self),
            Layout::V2 => v2::is_frozen(self),
        }
    }

    /// Signal every process in the cgroup. Frozen first so that a forking
    /// process cannot escape the loop, then thawed so the signal is handled.
    /// A cgroup with no process of its own is left alone: nothing listed
    /// can fork, and the freeze and thaw cost milliseconds even then (5 to
    /// 20 ms of v1 freezer writes per RemovePodSandbox on this test VM,
    /// for a pod cgroup emptied by StopPodSandbox).
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) -> Result<()> {
        if self.pids()?.is_empty() {
            return Ok(());
        }
        let froze = self.set_frozen(true).is_ok();
        let result = self.pids().map(|pids| {
            for pid in pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
            }
        });
        if froze {
            self.set_frozen(false)?;
        }
        result
    }

    /// Remove the directories hull created. Processes must be gone; a cgroup
    /// still busy for a moment (exiting tasks) is retried for up to 2 s.
    pub fn remove(&self) -> Result<()> {
        let mut first_error = None;
        for dir in self.created.iter().rev() {
            let leaf = self.dirs.values().any(|d| d == dir);
            if leaf {
                if let Err(e) = rmdir_retrying(dir, Duration::from_secs(2)) {
                    first_error.get_or_insert(Error::Cgroup(format!("remove {}: {e}", dir.display())));
                }
            } else {
                // A parent hull made may be shared by later containers (a
                // pod's cgroup): remove it only if it is empty now.
                let _ = std::fs::remove_dir(dir);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn rmdir_retrying(dir: &Path, limit: Duration) -> std::io::Result<()> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < limit => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The directories `mkdir -p dir` would make, outermost first, added to
/// `missing`.
fn missing_dirs(dir: &Path, missing: &mut Vec<PathBuf>) {
    let mut these = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        these.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    missing.extend(these.into_iter().rev());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_path_is_slash_id() {
        assert_eq!(relative_path(None, "abc", None).unwrap(), PathBuf::from("/abc"));
    }

    #[test]
    fn relative_path_goes_under_own_cgroup() {
        let p = relative_path(Some(Path::new("a/b")), "x", Some("/user.slice")).unwrap();
        assert_eq!(p, PathBuf::from("/user.slice/a/b"));
    }

    /// The v2 dispatch of a Cgroup, against a fake unified directory.
    #[test]
    fn v2_cgroup_applies_reports_and_counts_ooms() {
        let t = controller::fake_cgroup(&["memory.max", "memory.swap.max", "pids.max", "cpu.weight", "cpu.max"]);
        std::fs::write(t.path().join("memory.current"), "8192").unwrap();
        std::fs::write(t.path().join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
        std::fs::write(t.path().join("pids.current"), "3").unwrap();
        let cg = Cgroup { layout: Layout::V2, dirs: BTreeMap::from([(String::new(), t.path().to_path_buf())]), created: Vec::new() };
        let r: LinuxResources =
            serde_json::from_str(r#"{"memory": {"limit": 1048576, "swap": 2097152}, "pids": {"limit": 5}, "cpu": {"shares": 2048}}"#)
                .unwrap();
        check_resources(&r, Layout::V2).unwrap();
        cg.apply_resources(&r).unwrap();
        let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap();
        assert_eq!(read("memory.max"), "1048576");
        assert_eq!(read("memory.swap.max"), "1048576");
        assert_eq!(read("pids.max"), "5");
        assert_eq!(read("cpu.weight"), "174");
        let stats = cg.stats();
        assert_eq!(stats.memory.usage.usage, 8192);
        assert_eq!(stats.memory.usage.limit, 1048576);
        assert_eq!(stats.pids.current, 3);
        assert_eq!(stats.pids.limit, 5);
        assert_eq!(cg.oom_kill_count(), Some(1));
        assert_eq!(cg.swap_usage(), None, "no memory.swap.current");
        std::fs::write(t.path().join("memory.swap.current"), "4096").unwrap();
        assert_eq!(cg.swap_usage(), Some(SwapUsage { usage: 4096, limit: Some(1048576) }));
        std::fs::write(t.path().join("memory.swap.max"), "max\n").unwrap();
        assert_eq!(cg.swap_usage(), Some(SwapUsage { usage: 4096, limit: None }));
    }

    /// An empty cgroup is not frozen and thawed to be signalled; one with
    /// a process still is frozen first (a fake v1 freezer: its state file
    /// keeps what was last written).
    #[test]
    fn signal_all_freezes_only_a_cgroup_with_processes() {
        let t = tempfile::tempdir().unwrap();
        let cg =
            Cgroup { layout: Layout::V1, dirs: BTreeMap::from([("freezer".to_string(), t.path().to_path_buf())]), created: Vec::new() };
        let state = t.path().join("freezer.state");
        std::fs::write(t.path().join("cgroup.procs"), "").unwrap();
        std::fs::write(&state, "untouched").unwrap();
        cg.signal_all(nix::sys::signal::Signal::SIGCONT).unwrap();
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "untouched", "an empty cgroup is not frozen");
        // A pid that cannot exist (above pid_max's ceiling): the signal fails
        // quietly, the freeze and the thaw happen.
        std::fs::write(t.path().join("cgroup.procs"), "2147483646\n").unwrap();
        cg.signal_all(nix::sys::signal::Signal::SIGCONT).unwrap();
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "THAWED", "frozen, then thawed");
    }

    #[test]
    fn checks_name_the_field() {
        let bad = |json: &str, layout: Layout| {
            let r: LinuxResources = serde_json::from_str(json).unwrap();
            check_resources(&r, layout).unwrap_err().to_string()
        };
        assert!(bad(r#"{"memory": {"kernel": 1}}"#, Layout::V1).contains("linux.resources.memory.kernel"));
        assert!(bad(r#"{"memory": {"swappiness": 101}}"#, Layout::V1).contains("swappiness"));
        assert!(bad(r#"{"memory": {"limit": -2}}"#, Layout::V1).contains("linux.resources.memory.limit"));
        assert!(bad(r#"{"unified": {"memory.high": "1"}}"#, Layout::V1).contains("linux.resources.unified"));
        assert!(bad(r#"{"unified": {"../x.y": "1"}}"#, Layout::V2).contains("linux.resources.unified"));
        assert!(bad(r#"{"rdma": {"mlx": {"hcaHandles": 1}}}"#, Layout::V2).contains("linux.resources.rdma"));
        let ok: LinuxResources = serde_json::from_str(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#).unwrap();
        check_resources(&ok, Layout::V2).unwrap();
    }

    #[test]
    fn dotdot_is_refused() {
        assert!(relative_path(Some(Path::new("/a/../../etc")), "x", None).is_err());
        assert!(relative_path(Some(Path::new("/")), "x", None).is_err());
    }

    /// `make` leaves `created` as planned (the plan recorded before it is
    /// the record of what it made); a leaf made by someone else between
    /// plan and make is refused and left alone, a parent made meanwhile is
    /// taken as it is.
    #[test]
    fn make_keeps_the_plan_and_refuses_a_leaf_made_meanwhile() {
        let t = tempfile::tempdir().unwrap();
        // Outside the cgroup2 root: make's controller set-up does nothing.
        let plan = |name: &str| {
            let leaf = t.path().join(name).join("leaf");
            Cgroup { layout: Layout::V2, dirs: BTreeMap::from([(String::new(), leaf.clone())]), created: vec![t.path().join(name), leaf] }
        };
        let cg = plan("a");
        let before = cg.created.clone();
        cg.make().unwrap();
        assert_eq!(cg.created, before);
        assert!(t.path().join("a/leaf").is_dir());
        cg.remove().unwrap();
        assert!(!t.path().join("a").exists(), "an empty parent it made goes too");
        // A parent made by another meanwhile: taken as it is.
        let cg = plan("b");
        std::fs::create_dir(t.path().join("b")).unwrap();
        cg.make().unwrap();
        assert!(t.path().join("b/leaf").is_dir());
        // The leaf made by another meanwhile: refused, and left to it.
        let cg = plan("c");
        std::fs::create_dir_all(t.path().join("c/leaf")).unwrap();
        let e = cg.make().unwrap_err().to_string();
        assert!(e.contains("another container"), "{e}");
        assert!(t.path().join("c/leaf").is_dir());
    }
}
