//! Records on disk: one JSON file per sandbox and per container, written
//! atomically (temporary file, fsync, rename, fsync of the directory) and
//! changed only under the object's lock (flock on a `lock` file beside it),
//! so that several threads and processes can share a state directory and a
//! crash leaves either the old record or the new one.
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::config::{ContainerConfig, LinuxResources, SandboxConfig};
use super::error::{ErrorKind, Result, RuntimeError};
use super::id::{ContainerId, SandboxId};
use crate::monitor::exit::ExitRecord;

/// Write `value` as JSON at `path`, atomically and durably.
pub fn write_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| RuntimeError::internal(format!("encode {}: {e}", path.display())))?;
    write_bytes_atomic(path, &bytes)
}

/// [`write_atomic`] without the directory's sync: what is there after a
/// power loss is whole, this version or the one before (or nothing, for a
/// new file). For records whose loss the next open mends, one fsync less.
pub fn write_atomic_no_dir_sync<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| RuntimeError::internal(format!("encode {}: {e}", path.display())))?;
    write_renamed(path, &bytes, Sync::File)
}

/// Write a file whole or not at all: a temp file beside it, synced, renamed.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_renamed(path, bytes, Sync::FileAndDir)
}

/// What [`write_renamed`] syncs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sync {
    Nothing,
    /// The content, before the rename: the file is whole if it is there.
    File,
    /// And the directory after: the rename survives a power loss.
    FileAndDir,
}

fn write_renamed(path: &Path, bytes: &[u8], sync: Sync) -> Result<()> {
    let dir = path.parent().ok_or_else(|| RuntimeError::internal(format!("{} has no parent", path.display())))?;
    // A name of this writer's own: two processes writing one record (a
    // pod's supervisor and a `hull pod` command) never share a temp file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("record");
    let tmp = dir.join(format!(".{name}.{}-{seq}.tmp", std::process::id()));
    let io = |what: &str, e: std::io::Error| RuntimeError::with_source(ErrorKind::Internal, format!("{what} {}", tmp.display()), e);
    let mut f = File::create(&tmp).map_err(|e| io("create", e))?;
    f.write_all(bytes).map_err(|e| io("write", e))?;
    if sync != Sync::Nothing {
        f.sync_all().map_err(|e| io("fsync", e))?;
    }
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
    // The rename is durable once the directory is.
    if sync == Sync::FileAndDir {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A file of the run dir (`/run/hull`, a tmpfs on a node): written whole
/// or not at all (a temp file renamed), but not synced. What is there
/// does not outlive a reboot, so durability across a power loss means
/// nothing for it, and atomicity is all a SIGKILLed writer needs.
pub fn write_run_file<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| RuntimeError::internal(format!("encode {}: {e}", path.display())))?;
    write_run_bytes(path, &bytes)
}

/// [`write_run_file`] of bytes.
pub fn write_run_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_renamed(path, bytes, Sync::Nothing)
}

/// Read a JSON record; NotFound when the file is missing.
pub fn read<T: DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => RuntimeError::not_found(format!("{what} does not exist")),
        _ => RuntimeError::with_source(ErrorKind::Internal, format!("read {}", path.display()), e),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| RuntimeError::internal(format!("{what}: corrupt record {}: {e}", path.display())))
}

/// NotFound as None: for the operations that succeed on what is gone.
pub fn unless_gone<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The ids named by the entries of `dir`, sorted (other names skipped).
pub fn ids_in<T: Ord>(dir: &Path, parse: impl Fn(&str) -> Result<T>) -> Vec<T> {
    let mut ids: Vec<T> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| parse(e.file_name().to_str()?).ok())
        .collect();
    ids.sort();
    ids
}

/// Whether every `key=value` of a selector is among the labels.
pub fn labels_match(selector: &std::collections::BTreeMap<String, String>, labels: &std::collections::BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// An exclusive lock on one object, held until dropped.
pub struct ObjectLock {
    _lock: Flock<File>,
}

/// Lock the object whose directory is `dir`. NotFound when the directory
/// is gone (removed by someone who held the lock before us).
pub fn lock(dir: &Path, what: &str) -> Result<ObjectLock> {
    lock_with(dir, what, FlockArg::LockExclusive, false)
}

/// The creator's lock on an object directory it just made: the only
/// caller that makes the lock file. Everyone else opens it as it is, so a
/// locker racing with a removal cannot leave a lone lock file behind.
pub fn create_lock(dir: &Path, what: &str) -> Result<ObjectLock> {
    lock_with(dir, what, FlockArg::LockExclusive, true)
}

/// Make an object's directory `dir` with its lock file, locked by the
/// caller: made under a temporary name and renamed into place, so that an
/// object's directory never lacks its lock, and one without a record is
/// known to be a dead creator's once its lock is free (see `recover`). A
/// crash before the rename leaves a `.new-*` directory, swept on open.
pub fn create_object_dir(dir: &Path, what: &str) -> Result<ObjectLock> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(RuntimeError::internal(format!("{what}: no directory name")));
    };
    let tmp = parent.join(format!(".new-{}", name.to_string_lossy()));
    let io = |what: String| move |e| RuntimeError::with_source(ErrorKind::Internal, what, e);
    std::fs::create_dir(&tmp).map_err(io(format!("create {}", tmp.display())))?;
    let lock = create_lock(&tmp, what).and_then(|l| {
        std::fs::rename(&tmp, dir).map_err(io(format!("rename {} into place", tmp.display())))?;
        Ok(l)
    });
    if lock.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    lock
}

/// The object's lock if nobody holds it now (None when someone does).
pub fn try_lock(dir: &Path, what: &str) -> Result<Option<ObjectLock>> {
    match lock_with(dir, what, FlockArg::LockExclusiveNonblock, false) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == ErrorKind::FailedPrecondition => Ok(None),
        Err(e) => Err(e),
    }
}

fn lock_with(dir: &Path, what: &str, how: FlockArg, create: bool) -> Result<ObjectLock> {
    let file = std::fs::OpenOptions::new()
        .create(create)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RuntimeError::not_found(format!("{what} does not exist")),
            _ => RuntimeError::with_source(ErrorKind::Internal, format!("open lock of {what}"), e),
        })?;
    let lock = Flock::lock(file, how).map_err(|(_, e)| {
        let kind = if e == nix::errno::Errno::EWOULDBLOCK { ErrorKind::FailedPrecondition } else { ErrorKind::Internal };
        RuntimeError::with_source(kind, format!("lock {what}"), std::io::Error::from(e))
    })?;
    Ok(ObjectLock { _lock: lock })
}

/// Remove an object's directory: first renamed aside in one step (a
/// locker opening it from now on finds nothing), then deleted. Leftovers
/// of a removal cut short are named `.gone-*` and swept by
/// [`sweep_removed`].
pub fn remove_object_dir(dir: &Path) -> std::io::Result<()> {
    remove_object_dirs(&[dir.to_path_buf()])
}

/// [`remove_object_dir`] of several directories, with one read of the
/// mount table; the first error is returned, after every one was tried.
pub fn remove_object_dirs(dirs: &[PathBuf]) -> std::io::Result<()> {
    delete_all(set_aside(dirs).into_iter().map(|(d, was)| Doomed::Tree(d, was)).collect())
}

/// The first step of a removal: each directory renamed aside in one step
/// (or left where it is when the rename fails); returned with the path it
/// had, by which the mount table may still name mounts in it.
fn set_aside(dirs: &[PathBuf]) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for dir in dirs {
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            continue;
        };
        let aside = parent.join(format!(".gone-{}", name.to_string_lossy()));
        match std::fs::rename(dir, &aside) {
            Ok(()) => out.push((aside, dir.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => out.push((dir.clone(), dir.clone())),
        }
    }
    out
}

/// Finishes removals on a thread of its own: a removal returns once its
/// directories are renamed aside (a locker finds nothing from then on),
/// and the thread detaches what may still be mounted in them (normally
/// nothing: a container's and a sandbox's mounts go when they stop) and
/// deletes them, and the files queued with them; their unlinks, a journal
/// update each on a disk, are off the caller's time. Dropping it waits
/// for what is queued. A crash before a tree is deleted leaves a
/// `.gone-*` that [`sweep_removed`] deletes at the next open (and an exit
/// record without its container, see [`sweep_orphan_files`]).
pub struct Reaper {
    /// One removal's trees and files a message.
    queue: Option<std::sync::mpsc::Sender<Vec<Doomed>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum Doomed {
    /// A tree set aside, and the path it had.
    Tree(PathBuf, PathBuf),
    File(PathBuf),
}

/// Delete one removal's trees and files, with one read of the mount
/// table (when there is a tree); the first error, naming its path, after
/// every one was tried (what is missing already is no error).
fn delete_all(doomed: Vec<Doomed>) -> std::io::Result<()> {
    let mut mounts = None;
    let mut result = Ok(());
    for d in doomed {
        let r = match &d {
            Doomed::Tree(dir, was) => remove_unmounted(dir, was, mounts.get_or_insert_with(mount_points)),
            Doomed::File(f) => std::fs::remove_file(f),
        };
        if let Err(e) = r.or_else(ignore_missing) {
            let (Doomed::Tree(p, _) | Doomed::File(p)) = &d;
            if result.is_ok() {
                result = Err(std::io::Error::new(e.kind(), format!("delete {}: {e}", p.display())));
            }
        }
    }
    result
}

/// [`delete_all`] for the reaper, which has nobody to return an error to.
fn delete_logged(doomed: Vec<Doomed>) {
    if let Err(e) = delete_all(doomed) {
        log::warn!("{e}");
    }
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

impl Reaper {
    pub fn start() -> Reaper {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<Doomed>>();
        let thread = std::thread::Builder::new().name("hull-reaper".into()).spawn(move || {
            for doomed in rx {
                delete_logged(doomed);
            }
        });
        match thread {
            Ok(t) => Reaper { queue: Some(tx), thread: Some(t) },
            Err(e) => {
                log::warn!("removals delete their files inline: no thread for it: {e}");
                Reaper { queue: None, thread: None }
            }
        }
    }

    /// [`remove_object_dirs`], all but the renames left to the thread
    /// (done inline when it could not be started), and then `files`.
    pub fn remove(&self, dirs: &[PathBuf], files: &[PathBuf]) {
        let trees = set_aside(dirs).into_iter().map(|(d, was)| Doomed::Tree(d, was));
        let doomed: Vec<Doomed> = trees.chain(files.iter().cloned().map(Doomed::File)).collect();
        match &self.queue {
            Some(q) => {
                if let Err(std::sync::mpsc::SendError(doomed)) = q.send(doomed) {
                    delete_logged(doomed);
                }
            }
            None => delete_logged(doomed),
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Delete the files in `dir` named `<id><suffix>` whose object has no
/// directory in `objects` any more: what a removal cut short by a crash
/// left of it after its directory went.
pub fn sweep_orphan_files(dir: &Path, suffix: &str, objects: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(id) = name.strip_suffix(suffix).filter(|id| !id.is_empty() && !id.starts_with('.')) else {
            continue;
        };
        if !objects.join(id).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Every mount point of this process's mount namespace.
fn mount_points() -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(crate::cgroups::mountinfo::unescape(p)))
        .collect()
}

/// Delete a directory tree (`dir`, once `was`) after
/// [`detach_mounts_in`] it.
fn remove_unmounted(dir: &Path, was: &Path, mounts: &[PathBuf]) -> std::io::Result<()> {
    detach_mounts_in(dir, was, mounts);
    std::fs::remove_dir_all(dir)
}

/// Detach every mount in a directory tree (`dir`, once `was`: the mount
/// table names the mounts in it by either), deepest first. A crash can
/// leave a mount its record never named (a container's rootfs mounted
/// before the record that lists it was written), and remove_dir_all
/// crosses mount points: it would empty a bind-mounted host directory,
/// then stop at the busy mount point.
fn detach_mounts_in(dir: &Path, was: &Path, mounts: &[PathBuf]) {
    let mut points: Vec<PathBuf> = mounts
        .iter()
        .filter_map(|p| if p.starts_with(dir) { Some(p.clone()) } else { p.strip_prefix(was).ok().map(|rest| dir.join(rest)) })
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The record of an object being recovered; None when there is nothing
/// more to do with it. An object directory without a record (its creator
/// died before writing the first; nothing else of it was made) is removed
/// here, with its run directory.
pub fn record_or_remove<T>(loaded: Result<T>, dir: &Path, run: &Path, what: &str) -> Option<T> {
    match loaded {
        Ok(rec) => Some(rec),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            log::warn!("{what}: its creation was interrupted before its record; removing its directory");
            let _ = remove_object_dir(run);
            let _ = remove_object_dir(dir);
            None
        }
        Err(_) => None,
    }
}

/// Delete what removals cut short (by a crash) left renamed aside in
/// `parent`, and the directories of creations that died before they were
/// moved into place (lock free, or never made and a minute old).
pub fn sweep_removed(parent: &Path) {
    let mut mounts = None;
    for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(".gone-") {
            let p = e.path();
            let _ = remove_unmounted(&p, &p, mounts.get_or_insert_with(mount_points));
        } else if name.starts_with(".new-") {
            let path = e.path();
            let dead = match try_lock(&path, "a new object") {
                Ok(Some(_)) => true,
                Ok(None) => false,
                Err(_) => std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > std::time::Duration::from_secs(60))),
            };
            if dead {
                let _ = remove_unmounted(&path, &path, mounts.get_or_insert_with(mount_points));
            }
        }
    }
}

/// The life of a sandbox as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxPhase {
    /// Being made; a crash here leaves a record listing what to undo.
    Creating,
    Ready,
    Stopped,
}

/// The namespaces holder process of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderRecord {
    pub pid: i32,
    pub start_time: u64,
}

impl HolderRecord {
    pub fn alive(&self) -> bool {
        crate::oci::state::process_start_time(self.pid) == Some(self.start_time)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: SandboxId,
    pub config: SandboxConfig,
    pub phase: SandboxPhase,
    pub created_at: SystemTime,
    pub holder: Option<HolderRecord>,
    /// The pinned network namespace (a bind mount to undo).
    pub netns: Option<PathBuf>,
    /// The CNI attachment to DEL (recorded before ADD).
    pub network: Option<crate::network::Attachment>,
    pub ips: Vec<String>,
    /// The pod cgroup (cgroupfs path), and its directories as made (the
    /// ones this layer created are removed with the sandbox).
    pub cgroup_parent: String,
    pub cgroup: Option<crate::cgroups::Cgroup>,
    /// The holder's own leaf below the pod cgroup (as containerd puts the
    /// pause container at `<pod cgroup>/<sandbox id>`): on cgroup v2 the
    /// pod cgroup, parent of the containers' cgroups, may hold no process.
    /// Removed when the holder is stopped.
    #[serde(default)]
    pub holder_cgroup: Option<crate::cgroups::Cgroup>,
    pub log_directory: PathBuf,
    /// Its containers, by id: teardown acts on these and nothing else.
    pub containers: Vec<ContainerId>,
}

/// The life of a container as its record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerPhase {
    /// Being made; also a container launched (see
    /// `Runtime::launch_container`) until its monitor's report is read,
    /// which only the launching process can do: after a crash either is
    /// undone from what the record lists.
    Creating,
    Created,
    Running,
    Exited,
}

/// How a container's rootfs was made, to undo it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootfsRecord {
    /// A read-only root straight from a local directory: nothing mounted.
    Direct(PathBuf),
    /// An overlay over a local directory, mounted at the path.
    Overlay(PathBuf),
    /// An image-store overlay (with its lease) mounted at the path.
    Image { mountpoint: PathBuf, image_root: PathBuf },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: ContainerId,
    pub sandbox_id: SandboxId,
    pub config: ContainerConfig,
    pub phase: ContainerPhase,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub exit: Option<ExitRecord>,
    pub finished_at: Option<SystemTime>,
    /// The resolved image: an image id, or the directory.
    pub image_ref: String,
    pub rootfs: Option<RootfsRecord>,
    pub log_path: PathBuf,
    /// The init on the host and its start time (pid reuse check).
    pub pid: Option<i32>,
    pub pid_start_time: Option<u64>,
    pub monitor_pid: Option<i32>,
    pub monitor_start_time: Option<u64>,
    /// The signal stop sends first (config, image, or SIGTERM).
    pub stop_signal: String,
    pub resources: Option<LinuxResources>,
    /// The bind sources staged from fds under the container's run
    /// directory (see `mounts`), unmounted on removal.
    #[serde(default)]
    pub staged_mounts: Vec<PathBuf>,
    /// The images mounted for the container's image volumes (recorded
    /// before each is mounted), unmounted on removal.
    #[serde(default)]
    pub image_volumes: Vec<RootfsRecord>,
    /// Why a launched container could not be made (its exit reason is
    /// StartError).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run-dir file is written whole through a temp file, which is gone
    /// after, and replaces what was there.
    #[test]
    fn run_files_are_renamed_into_place() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("config.json");
        write_run_file(&f, &serde_json::json!({"a": 1})).unwrap();
        write_run_file(&f, &serde_json::json!({"a": 2})).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert_eq!(v["a"], 2);
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.json")]);
    }

    /// A temp dir with `obj/rootfs` bind-mounted from `host` (which holds
    /// a file `keep`); None without root.
    fn object_with_a_mount(test: &str) -> Option<(tempfile::TempDir, PathBuf)> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped {test}: needs root to mount");
            return None;
        }
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("keep"), "x").unwrap();
        let obj = t.path().join("obj");
        std::fs::create_dir_all(obj.join("rootfs")).unwrap();
        let bind = nix::mount::MsFlags::MS_BIND;
        nix::mount::mount(Some(&host), &obj.join("rootfs"), None::<&str>, bind, None::<&str>).unwrap();
        Some((t, obj))
    }

    /// After a removal of [`object_with_a_mount`]: nothing mounted is
    /// left, the tree is gone, and nothing was deleted through the mount.
    fn assert_removed_whole(t: &tempfile::TempDir, obj: &Path) {
        let still = std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(t.path().to_str().unwrap());
        if still {
            let _ = nix::mount::umount2(&t.path().join(".gone-obj/rootfs"), nix::mount::MntFlags::MNT_DETACH);
        }
        assert!(!still, "a mount is left");
        assert!(!obj.exists() && !t.path().join(".gone-obj").exists());
        assert!(t.path().join("host/keep").exists(), "a file was deleted through the mount");
    }

    /// An object directory with a mount in it (a crash before the record
    /// named it) is removed whole: the mount detached first, nothing
    /// deleted through it.
    #[test]
    fn removing_an_object_dir_detaches_mounts_in_it() {
        let Some((t, obj)) = object_with_a_mount("removing_an_object_dir_detaches_mounts_in_it") else {
            return;
        };
        let result = remove_object_dir(&obj);
        assert_removed_whole(&t, &obj);
        result.unwrap();
    }

    /// The reaper's removal: the directory is gone from its path when the
    /// call returns; the tree (with a mount in it) and the queued file are
    /// deleted by the thread, the mount detached first, nothing deleted
    /// through it.
    #[test]
    fn the_reaper_finishes_removals_behind_the_caller() {
        let Some((t, obj)) = object_with_a_mount("the_reaper_finishes_removals_behind_the_caller") else {
            return;
        };
        let file = t.path().join("obj.json");
        std::fs::write(&file, "{}").unwrap();
        let reaper = Reaper::start();
        reaper.remove(&[obj.clone(), t.path().join("never-made")], std::slice::from_ref(&file));
        assert!(!obj.exists(), "a locker must find nothing once remove returns");
        drop(reaper);
        assert_removed_whole(&t, &obj);
        assert!(!file.exists());
    }

    #[test]
    fn files_of_objects_without_a_directory_are_swept() {
        let t = tempfile::tempdir().unwrap();
        let (objects, files) = (t.path().join("objects"), t.path().join("exits"));
        std::fs::create_dir_all(objects.join("a")).unwrap();
        std::fs::create_dir(&files).unwrap();
        for f in ["a.json", "b.json", "b.other", ".json.tmp"] {
            std::fs::write(files.join(f), "{}").unwrap();
        }
        sweep_orphan_files(&files, ".json", &objects);
        let mut left: Vec<_> = std::fs::read_dir(&files).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, [".json.tmp", "a.json", "b.other"]);
    }

    #[test]
    fn a_locker_after_removal_finds_nothing_and_makes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("obj");
        std::fs::create_dir(&dir).unwrap();
        let held = create_lock(&dir, "obj").unwrap();
        // A waiter that opened the lock file before the removal still gets it.
        let waiter = std::thread::spawn({
            let dir = dir.clone();
            move || lock(&dir, "obj").map(drop).map_err(|e| e.kind())
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        remove_object_dir(&dir).unwrap();
        drop(held);
        let _ = waiter.join().unwrap();
        assert_eq!(lock(&dir, "obj").map(drop).unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0, "nothing is left, no lone lock file");
        // A removal cut short leaves its renamed-aside directory to the sweep.
        std::fs::create_dir_all(root.path().join(".gone-x/y")).unwrap();
        sweep_removed(root.path());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn records_round_trip_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let rec = SandboxRecord {
            id: SandboxId::generate().unwrap(),
            config: SandboxConfig::default(),
            phase: SandboxPhase::Ready,
            created_at: SystemTime::now(),
            holder: Some(HolderRecord { pid: 1, start_time: 2 }),
            netns: Some("/run/x/netns".into()),
            network: None,
            ips: vec!["10.0.0.2".into()],
            cgroup_parent: "/hull/pod-x".into(),
            cgroup: None,
            holder_cgroup: None,
            log_directory: "/var/log/x".into(),
            containers: vec![ContainerId::generate().unwrap()],
        };
        let path = dir.path().join("sandbox.json");
        write_atomic(&path, &rec).unwrap();
        let back: SandboxRecord = read(&path, "sandbox").unwrap();
        assert_eq!((back.id, back.phase, back.containers), (rec.id, rec.phase, rec.containers));
        assert_eq!(back.created_at, rec.created_at);
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("sandbox.json")]);
        let e = read::<SandboxRecord>(&dir.path().join("nope.json"), "sandbox x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        std::fs::write(&path, b"{").unwrap();
        assert_eq!(read::<SandboxRecord>(&path, "sandbox x").unwrap_err().kind(), ErrorKind::Internal);
    }

    #[test]
    fn locks_exclude_each_other_across_threads() {
        let dir = tempfile::tempdir().unwrap();
        drop(create_lock(dir.path(), "obj").unwrap());
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (d, c) = (dir.path().to_path_buf(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _l = lock(&d, "obj").unwrap();
                        let v = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::yield_now();
                        // Nobody else got in while we held the lock.
                        assert_eq!(c.load(std::sync::atomic::Ordering::SeqCst), v + 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let held = lock(dir.path(), "obj").unwrap();
        assert!(try_lock(dir.path(), "obj").unwrap().is_none());
        drop(held);
        assert!(try_lock(dir.path(), "obj").unwrap().is_some());
        assert_eq!(lock(&dir.path().join("gone"), "sandbox x").err().unwrap().kind(), ErrorKind::NotFound);
    }
}
