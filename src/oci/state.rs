//! Container records on disk (`<root>/<id>/state.json`) and the status
//! derived from them and from the live process.
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::error::{Error, Result, SysContext};

/// The runtime-spec version hull implements.
pub const OCI_VERSION: &str = "1.2.1";

/// File whose presence means "created, not started": init blocks opening it.
pub const EXEC_FIFO: &str = "exec.fifo";
const STATE_FILE: &str = "state.json";

/// The `--root` used when none is given (runc's is /run/runc).
pub const DEFAULT_ROOT: &str = "/run/hull";

/// Lifecycle status, as the runtime-spec names it (plus runc's "paused").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What hull remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Its start time (field 22 of /proc/pid/stat), to tell a recycled pid.
    pub pid_start_time: u64,
    /// RFC 3339 creation time.
    pub created: String,
    pub owner: String,
    pub cgroup: Option<Cgroup>,
    pub config: Spec,
    /// Whether the OOM killer killed a process of the container, recorded
    /// once it has stopped by whoever sees it first (`run`'s wait, `state`,
    /// `delete`) from the memory cgroup's oom_kill counter. None: not known yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_killed: Option<bool>,
    /// linux.netDevices moved into the container, moved back on delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net_devices: Vec<crate::linux::netdev::Moved>,
}

/// The spec's state object, given to hooks on stdin.
#[derive(Debug, Clone, Serialize)]
pub struct SpecState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<&'a HashMap<String, String>>,
}

/// `hull state` / `hull list --format json` output, as runc prints it.
#[derive(Debug, Clone, Serialize)]
pub struct StateOutput {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
    /// hull's extra field (runc has none): for a stopped container, whether
    /// the OOM killer killed one of its processes.
    #[serde(rename = "oomKilled", skip_serializing_if = "Option::is_none")]
    pub oom_killed: Option<bool>,
}

/// The directory that holds every container's record.
#[derive(Debug, Clone)]
pub struct StateRoot {
    pub path: PathBuf,
}

impl StateRoot {
    pub fn new(path: impl Into<PathBuf>) -> StateRoot {
        StateRoot { path: path.into() }
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.path.join(id)
    }

    /// The tag that sets this root's containers apart in default cgroup
    /// paths: None for the default root, else `hull-<12 hex>` from a
    /// SHA-256 of the canonical root path (the same root however it is
    /// spelled; two roots colliding in 48 bits is not a case to design
    /// for). The root must exist.
    pub fn cgroup_tag(&self) -> Result<Option<String>> {
        use sha2::Digest as _;
        let canonical = std::fs::canonicalize(&self.path).sys_context(|| format!("resolve state root {}", self.path.display()))?;
        let default = std::fs::canonicalize(DEFAULT_ROOT).unwrap_or_else(|_| PathBuf::from(DEFAULT_ROOT));
        if canonical == default {
            return Ok(None);
        }
        let digest = sha2::Sha256::digest(std::os::unix::ffi::OsStrExt::as_bytes(canonical.as_os_str()));
        Ok(Some(format!("hull-{}", &format!("{digest:x}")[..12])))
    }

    /// Make `<root>/<id>`, failing if the id is taken (the mkdir is the lock).
    pub fn claim(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        std::fs::create_dir_all(&self.path).sys_context(|| format!("create state root {}", self.path.display()))?;
        let dir = self.container_dir(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::AlreadyExists(id.to_string())),
            Err(e) => Err(Error::sys(format!("create {}", dir.display()), e)),
        }
    }

    pub fn load(&self, id: &str) -> Result<ContainerRecord> {
        validate_id(id)?;
        let path = self.container_dir(id).join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound(id.to_string())),
            Err(e) => return Err(Error::sys(format!("read {}", path.display()), e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::InvalidState(format!("corrupt state {}: {e}", path.display())))
    }

    /// Write the record atomically (temp file + rename).
    pub fn save(&self, rec: &ContainerRecord) -> Result<()> {
        let dir = self.container_dir(&rec.id);
        let tmp = dir.join(".state.json.tmp");
        let bytes = serde_json::to_vec(rec).map_err(|e| Error::InvalidState(e.to_string()))?;
        let mut f = std::fs::File::create(&tmp).sys_context(|| format!("create {}", tmp.display()))?;
        f.write_all(&bytes).sys_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(STATE_FILE)).sys_context(|| "rename state file".into())?;
        Ok(())
    }

    /// Ids of all containers with a record, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let entries = match std::fs::read_dir(&self.path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(Error::sys(format!("read {}", self.path.display()), e)),
        };
        for e in entries.flatten() {
            if e.path().join(STATE_FILE).exists() {
                if let Some(name) = e.file_name().to_str() {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// Ids become directory names: refuse anything that could leave the root.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("invalid container id {id:?}: use letters, digits, '_', '-', '.', '+'")))
    }
}

/// Start time of a process (clock ticks since boot), or None if it is gone.
/// One read into a stack buffer (the line is well under 1 KiB: 52 numbers
/// and a 16-byte name), parsed as bytes: the name is the program's first
/// 15 bytes, which may end inside a UTF-8 sequence.
pub fn process_start_time(pid: i32) -> Option<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let mut buf = [0u8; 2048];
    let mut len = 0;
    // Bounded: each pass fills more of the buffer or ends at EOF.
    while len < buf.len() && !buf[..len].ends_with(b"\n") {
        match file.read(&mut buf[len..]).ok()? {
            0 => break,
            n => len += n,
        }
    }
    parse_start_time(&buf[..len])
}

/// The start time (field 22) of a /proc/PID/stat line; None for a zombie
/// or a dead task.
fn parse_start_time(stat: &[u8]) -> Option<u64> {
    // The command name may contain spaces and parentheses: skip to the last ')'.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // The first field is the state (field 3); the start time is 19 later.
    if matches!(fields.next()?, "Z" | "X") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

impl ContainerRecord {
    /// True while the recorded init process is alive (not a zombie, not recycled).
    pub fn init_alive(&self) -> bool {
        self.pid > 0 && process_start_time(self.pid) == Some(self.pid_start_time)
    }

    pub fn status(&self, root: &StateRoot) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if root.container_dir(&self.id).join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if self.cgroup.as_ref().is_some_and(|c| c.is_frozen()) {
            return Status::Paused;
        }
        Status::Running
    }

    pub fn annotations(&self) -> Option<&HashMap<String, String>> {
        self.config.annotations().as_ref().filter(|a| !a.is_empty())
    }

    pub fn spec_state(&self, status: Status) -> SpecState<'_> {
        SpecState {
            oci_version: OCI_VERSION,
            id: &self.id,
            status,
            pid: (status != Status::Stopped && self.pid > 0).then_some(self.pid),
            bundle: &self.bundle,
            annotations: self.annotations(),
        }
    }

    pub fn output(&self, root: &StateRoot) -> StateOutput {
        let status = self.status(root);
        StateOutput {
            oci_version: OCI_VERSION.into(),
            id: self.id.clone(),
            pid: if status == Status::Stopped { 0 } else { self.pid },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.annotations().cloned(),
            oom_killed: if status == Status::Stopped { self.oom_killed } else { None },
        }
    }

    /// Once the container has stopped, read and keep whether it was
    /// OOM-killed (the counter lives in its memory cgroup, which goes away
    /// on delete). Returns the value known now.
    pub fn observe_oom(&mut self, root: &StateRoot) -> Option<bool> {
        if self.oom_killed.is_none() && self.observe_oom_unsaved(root).is_some() {
            if let Err(e) = root.save(self) {
                log::warn!("cannot record the OOM state of {}: {e}", self.id);
            }
        }
        self.oom_killed
    }

    /// [`Self::observe_oom`] for a record about to be removed (delete):
    /// not written back, which would only cost a file write.
    pub fn observe_oom_unsaved(&mut self, root: &StateRoot) -> Option<bool> {
        if self.oom_killed.is_none() && self.status(root) == Status::Stopped {
            self.oom_killed = self.cgroup.as_ref().and_then(|c| c.oom_kill_count()).map(|n| n > 0);
        }
        self.oom_killed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_past_any_command_name() {
        let line = |comm: &[u8], state: &str| {
            let mut l = b"42 (".to_vec();
            l.extend_from_slice(comm);
            l.extend_from_slice(format!(") {state} 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10").as_bytes());
            l
        };
        assert_eq!(parse_start_time(&line(b"sh", "S")), Some(987654));
        // The first 15 bytes of "\u{43f}\u{440}\u{43e}\u{433}\u{440}\u{430}\u{43c}\u{43c}\u{430}" end
        // inside a character, and a name may hold ") ".
        assert_eq!(parse_start_time(&line(b"\xd0\xbf\xd1\x80\xd0", "R")), Some(987654));
        assert_eq!(parse_start_time(&line(b"a) Z (b", "S")), Some(987654));
        assert_eq!(parse_start_time(&line(b"sh", "Z")), None);
        assert_eq!(parse_start_time(&line(b"sh", "X")), None);
        assert_eq!(parse_start_time(b"42 (sh) S 1 2"), None);
        assert_eq!(parse_start_time(b""), None);
    }

    #[test]
    fn start_time_of_a_live_process_with_a_cut_utf8_name() {
        // exec names the process after the program's first 15 bytes: here
        // they end inside the eighth two-byte character.
        let dir = std::env::temp_dir().join(format!("hull-comm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let program = dir.join("\u{43f}\u{440}\u{43e}\u{433}\u{440}\u{430}\u{43c}\u{43c}\u{430}");
        std::fs::copy("/bin/sleep", &program).unwrap();
        let spawned = std::process::Command::new(&program).arg("30").spawn();
        let _ = std::fs::remove_dir_all(&dir);
        let mut child = spawned.unwrap();
        let pid = child.id() as i32;
        // spawn returns once the child has let go of our memory, which
        // exec does before it renames the process: wait for the new name.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
        while std::str::from_utf8(&comm).is_ok() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
        }
        let started = process_start_time(pid);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(std::str::from_utf8(&comm).is_err(), "{comm:?}");
        assert!(started.is_some_and(|t| t > 0));
        assert_eq!(process_start_time(pid), None);
    }

    #[test]
    fn ids_that_could_escape_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        validate_id("abc-1_2.3").unwrap();
    }

    /// A root's cgroup tag depends on the root itself, not on how its path
    /// is spelled; the default root has none (its containers keep `/<id>`).
    #[test]
    fn cgroup_tags_tell_roots_apart() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::os::unix::fs::symlink(&a, t.path().join("link")).unwrap();
        let tag = |p: PathBuf| StateRoot::new(p).cgroup_tag().unwrap().unwrap();
        let ta = tag(a.clone());
        assert_eq!(ta.len(), "hull-".len() + 12);
        assert!(ta.starts_with("hull-") && ta[5..].bytes().all(|c| c.is_ascii_hexdigit()), "{ta}");
        assert_ne!(ta, tag(b));
        assert_eq!(ta, tag(t.path().join("link")));
        assert_eq!(ta, tag(t.path().join("b/../a")));
        if Path::new(DEFAULT_ROOT).is_dir() {
            assert_eq!(StateRoot::new(DEFAULT_ROOT).cgroup_tag().unwrap(), None);
        }
        assert!(StateRoot::new(t.path().join("missing")).cgroup_tag().is_err());
    }

    #[test]
    fn own_start_time_is_readable() {
        assert!(process_start_time(std::process::id() as i32).is_some());
        assert!(process_start_time(i32::MAX).is_none());
    }

    #[test]
    fn claim_is_exclusive() {
        let t = tempfile::tempdir().unwrap();
        let root = StateRoot::new(t.path());
        root.claim("a").unwrap();
        assert!(matches!(root.claim("a"), Err(Error::AlreadyExists(_))));
        assert!(matches!(root.load("a"), Err(Error::NotFound(_))));
    }
}
