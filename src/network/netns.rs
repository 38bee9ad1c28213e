//! Pinned network namespaces for pods: a new netns kept alive by a bind
//! mount of its nsfs file onto `<dir>/<name>`, with no process holding it.
//!
//! The namespace is made by a short-lived thread (unshare + bind mount +
//! exit), never by forking and never in the caller's own threads: they stay
//! in the host netns. Every error path removes what it made.
use std::path::{Path, PathBuf};

use nix::sys::statfs::{statfs, NSFS_MAGIC};

use super::attachment::Attachment;
use super::config::{CniConfig, CniOptions};
use super::error::{NetworkError, Result};

/// How long the netns helper thread may take (unshare + one bind mount).
const HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Create a new, empty network namespace pinned at `dir/name` (`dir` is
/// created if needed, mode 0755). Fails if `dir/name` exists.
pub fn create_netns(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = new_netns_file(dir, name)?;
    if let Err(e) = pin_new_netns(&path) {
        // The thread may have mounted before the wait gave up: unmount as
        // well as unlink.
        let _ = remove_netns(&path);
        return Err(e);
    }
    Ok(path)
}

/// The empty file a netns is bind-mounted onto.
fn new_netns_file(dir: &Path, name: &str) -> Result<PathBuf> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(NetworkError::InvalidRequest(format!("netns name {name:?} is not a file name")));
    }
    std::fs::create_dir_all(dir).map_err(|e| NetworkError::sys(format!("create {}", dir.display()), e))?;
    let path = dir.join(name);
    // create_new: an existing file (a live pod's netns) is never reused.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| NetworkError::sys(format!("create netns file {}", path.display()), e))?;
    Ok(path)
}

/// A pod's netns: [`create_netns`] then [`loopback_up`], removed again if
/// bringing lo up fails. The loopback attachment needs no DEL: it goes away
/// with the namespace.
pub fn create_pod_netns(dir: &Path, name: &str, opts: &CniOptions) -> Result<PathBuf> {
    let path = create_netns(dir, name)?;
    if let Err(e) = loopback_up(&path, name, opts) {
        let _ = remove_netns(&path);
        return Err(e);
    }
    Ok(path)
}

/// Pin an existing network namespace (e.g. a sandbox holder's
/// `/proc/<pid>/ns/net`) at `dir/name` with a bind mount. Use the pinned
/// path for CNI: a record naming `/proc/<pid>/ns/net` would, after the
/// holder died and its pid was reused, point DEL at someone else's netns.
pub fn pin_netns(src: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    if !is_netns(src) {
        return Err(NetworkError::InvalidRequest(format!("{} is not a network namespace", src.display())));
    }
    let path = new_netns_file(dir, name)?;
    if let Err(e) = nix::mount::mount(Some(src), &path, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>) {
        let _ = remove_netns(&path);
        return Err(NetworkError::sys(format!("bind-mount {} onto {}", src.display(), path.display()), e));
    }
    Ok(path)
}

/// True when `path` is the network namespace hull itself runs in (the
/// host's, for the CLI): CNI must never configure that one.
pub fn is_own_netns(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), std::fs::metadata("/proc/self/ns/net")) {
        (Ok(a), Ok(b)) => is_netns(path) && a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Unmount and unlink a pinned netns. Idempotent: a missing file or one
/// that is no longer a mount point is fine.
pub fn remove_netns(path: &Path) -> Result<()> {
    // MNT_DETACH: a process still inside the namespace (a container being
    // torn down) must not make the removal fail; the namespace itself goes
    // away when its last user does.
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(NetworkError::sys(format!("unmount netns {}", path.display()), e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetworkError::sys(format!("remove netns file {}", path.display()), e)),
    }
}

/// True when `path` is a network namespace file (nsfs), i.e. a pinned
/// netns that still exists.
pub fn is_netns(path: &Path) -> bool {
    statfs(path).map(|s| s.filesystem_type() == NSFS_MAGIC).unwrap_or(false)
}

/// Bring `lo` up in the netns with the loopback plugin (a built-in network
/// "cni-loopback" on ifname "lo"). Returns the attachment record, whose DEL
/// (not needed before removing the netns) sets lo down again.
pub fn loopback_up(netns: &Path, container_id: &str, opts: &CniOptions) -> Result<Attachment> {
    let mut att = CniConfig::loopback(opts).attachment(container_id, netns, "lo");
    att.add()?;
    Ok(att)
}

/// Make a new netns in a short-lived thread and bind-mount that thread's
/// `/proc/thread-self/ns/net` onto `target`. A network namespace is a
/// per-task attribute, so `unshare(CLONE_NEWNET)` moves only that thread;
/// the caller's threads stay in their namespace, and nothing forks (the
/// caller may be a threaded daemon). The thread exits at once: the mount
/// is what keeps the namespace alive.
fn pin_new_netns(target: &Path) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = target.to_path_buf();
    let worker = std::thread::Builder::new()
        .name("hull-netns".into())
        .spawn(move || {
            let result = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| NetworkError::sys("unshare(CLONE_NEWNET)", e))
                .and_then(|()| {
                    nix::mount::mount(Some("/proc/thread-self/ns/net"), &path, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
                        .map_err(|e| NetworkError::sys(format!("bind-mount the new netns onto {}", path.display()), e))
                });
            let _ = tx.send(result);
        })
        .map_err(|e| NetworkError::sys("start a thread to create a netns", e))?;
    // A mount that hangs (a target on a dead network filesystem) must not
    // hang hull: a bounded wait, after which the thread is left to finish
    // on its own (it holds nothing but its namespace).
    match rx.recv_timeout(HELPER_TIMEOUT) {
        Ok(result) => {
            // Joined, so the thread is gone (the kernel clears its tid at
            // exit): a caller that is otherwise single-threaded is so again
            // and may fork.
            let _ = worker.join();
            result?;
        }
        Err(_) => {
            return Err(NetworkError::sys(
                format!("create a netns at {}", target.display()),
                std::io::Error::from(std::io::ErrorKind::TimedOut),
            ))
        }
    }
    if is_netns(target) {
        return Ok(());
    }
    Err(NetworkError::sys(
        format!("create a netns at {}", target.display()),
        std::io::Error::other("the bind mount is not a network namespace"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_names() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "a/b", ".", ".."] {
            assert!(matches!(create_netns(dir.path(), bad), Err(NetworkError::InvalidRequest(_))));
        }
        // Removing something that is not there is fine.
        remove_netns(&dir.path().join("absent")).unwrap();
        assert!(!is_netns(&dir.path().join("absent")));
        assert!(!is_netns(dir.path()));
        assert!(is_own_netns(Path::new("/proc/self/ns/net")));
        assert!(!is_own_netns(dir.path()));
        let e = pin_netns(dir.path(), dir.path(), "x").unwrap_err();
        assert!(e.to_string().contains("not a network namespace"), "{e}");
        assert!(!dir.path().join("x").exists());
    }
}
