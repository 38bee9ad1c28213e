//! Pinned network namespaces for pods: a new netns kept alive by a bind
//! mount of its nsfs file onto `<dir>/<name>`, with no process holding it.
//!
//! The namespace is made by a short-lived forked child (unshare + bind
//! mount + exit), never in the caller: the caller stays in the host netns
//! and keeps no extra thread. Every error path removes what it made.
use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::statfs::{statfs, NSFS_MAGIC};

use super::attachment::Attachment;
use super::config::{CniConfig, CniOptions};
use super::error::{NetworkError, Result};

/// How long the netns helper child may take (unshare + one bind mount).
const HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Create a new, empty network namespace pinned at `dir/name` (`dir` is
/// created if needed, mode 0755). Fails if `dir/name` exists.
pub fn create_netns(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = new_netns_file(dir, name)?;
    if let Err(e) = pin_new_netns(&path) {
        // The child may have mounted before failing to report (killed):
        // unmount as well as unlink.
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

/// Fork a child that unshares a new netns and bind-mounts its own
/// /proc/self/ns/net onto `target`, then exits. Its errno comes back over a
/// pipe with the step that failed.
fn pin_new_netns(target: &Path) -> Result<()> {
    let target_c = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| NetworkError::InvalidRequest(format!("netns path {} contains a NUL byte", target.display())))?;
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| NetworkError::sys("pipe", e))?;
    let src = c"/proc/self/ns/net";
    // SAFETY: between fork and _exit the child makes only raw syscalls
    // (unshare, mount, write, _exit), all async-signal-safe, on memory
    // prepared before the fork (the two C strings, a stack array). So this
    // is sound even when the caller has other threads (the test harness):
    // the child takes no lock and allocates nothing.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut report = [0i32; 2];
        // SAFETY: plain syscalls with valid NUL-terminated strings.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                report = [1, *libc::__errno_location()];
            } else if libc::mount(src.as_ptr(), target_c.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0 {
                report = [2, *libc::__errno_location()];
            }
            if report[0] != 0 {
                libc::write(wr.as_raw_fd(), report.as_ptr().cast(), std::mem::size_of_val(&report));
            }
            libc::_exit(report[0]);
        }
    }
    if pid < 0 {
        return Err(NetworkError::sys("fork to create a netns", std::io::Error::last_os_error()));
    }
    drop(wr);
    // The pipe reaches EOF when the child exits (its copy of the write end
    // closes), after 8 bytes if a step failed. A mount that hangs (a target
    // on a dead network filesystem) must not hang hull: bounded wait.
    let mut reader = std::fs::File::from(rd);
    let ready = {
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        let deadline = std::time::Instant::now() + HELPER_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match poll(&mut fds, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)) {
                Err(nix::errno::Errno::EINTR) if !left.is_zero() => continue,
                Ok(n) => break n > 0,
                Err(_) => break false,
            }
        }
    };
    if !ready {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let mut bytes = [0u8; 8];
    let got = if ready { read_full(&mut reader, &mut bytes) } else { 0 };
    // Reap it. ECHILD is possible if the caller reaps every child (a
    // subreaper loop) or ignores SIGCHLD; the result then comes from the
    // pipe and the mount itself, not the exit status.
    // A killed child stuck in the kernel may not die at once: then give up
    // on it after a second rather than block.
    let flags = if ready { None } else { Some(nix::sys::wait::WaitPidFlag::WNOHANG) };
    let mut tries = 0;
    let status = loop {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(nix::sys::wait::WaitStatus::StillAlive) if tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => break other,
        }
    };
    if got == bytes.len() {
        let step = i32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let errno = i32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let what =
            if step == 1 { "unshare(CLONE_NEWNET)".to_string() } else { format!("bind-mount the new netns onto {}", target.display()) };
        return Err(NetworkError::sys(what, std::io::Error::from_raw_os_error(errno)));
    }
    if ready && is_netns(target) {
        return Ok(());
    }
    Err(NetworkError::sys(
        format!("create a netns at {}", target.display()),
        std::io::Error::other(format!("helper child ended with {status:?}")),
    ))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    got
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
