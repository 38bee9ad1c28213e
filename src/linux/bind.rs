//! Bind mounts whose source lies in a tree someone else can change (a pod
//! volume a container writes to, a host directory): the source is resolved
//! once, kept as an O_PATH fd, and the mount is made from that fd, so a
//! symlink swapped in after the check cannot redirect it. A path that is
//! looked up twice (once to check, once to mount) is a race a container
//! can win with renameat2(RENAME_EXCHANGE).
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::{FileStat, Mode, SFlag};

use super::safe_path::{fd_path, open_beneath, Create};
use crate::error::{Error, Result, SysContext};

/// Open a trusted directory (a volume's root on the host) as an O_PATH fd.
pub fn open_root(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .sys_context(|| format!("open {}", path.display()))
}

/// Resolve `rel` beneath the directory `root` (refusing anything that leads
/// out of it) and return it as an O_PATH fd; missing directories are made
/// when `create_dirs` is set, as kubelet does for a subPath.
pub fn resolve_source(root: &OwnedFd, rel: &Path, create_dirs: bool, what: &str) -> Result<OwnedFd> {
    if rel.is_absolute() {
        return Err(Error::InvalidArgument(format!("{} must be a relative path", rel.display())));
    }
    let create = if create_dirs { Create::Dir } else { Create::Nothing };
    open_beneath(root, rel, create, what)?.ok_or_else(|| Error::InvalidArgument(format!("{} does not exist in the {what}", rel.display())))
}

pub fn fstat(fd: &OwnedFd) -> Result<FileStat> {
    // fstat on an O_PATH fd is allowed (since Linux 3.6).
    nix::sys::stat::fstat(fd).sys_context(|| "fstat bind source".into())
}

pub fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

/// Bind-mount the inode `src` refers to onto `target` (recursively when
/// `recursive`). The source is the fd's /proc/self/fd magic link, which the
/// kernel follows to exactly the dentry and mount the fd holds: there is no
/// name lookup in the source's tree. `target` must be a path nobody else
/// can change (a directory hull owns, or an fd path).
pub fn bind_fd(src: &OwnedFd, target: &Path, recursive: bool) -> Result<()> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    nix::mount::mount(Some(&fd_path(src)), target, None::<&str>, flags, None::<&str>)
        .sys_context(|| format!("bind mount onto {}", target.display()))
}

/// Make `target` (in a directory hull owns) as a directory or an empty file,
/// matching `src`, and bind `src` onto it: a stable path for the bind source
/// that a runtime can then mount by name.
pub fn stage(src: &OwnedFd, target: &Path) -> Result<()> {
    let st = fstat(src)?;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).sys_context(|| format!("create {}", parent.display()))?;
    }
    if is_dir(&st) {
        match std::fs::create_dir(target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::sys(format!("create {}", target.display()), e)),
        }
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(target)
            .sys_context(|| format!("create {}", target.display()))?;
    }
    bind_fd(src, target, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_source_refuses_escapes_and_makes_missing_dirs() {
        let t = tempfile::tempdir().unwrap();
        let vol = t.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        std::os::unix::fs::symlink("/etc", vol.join("abs")).unwrap();
        std::os::unix::fs::symlink("../..", vol.join("up")).unwrap();
        std::os::unix::fs::symlink("a", vol.join("rel")).unwrap();
        let root = open_root(&vol).unwrap();
        for bad in ["abs", "abs/passwd", "up/x", "../x", "a/../../x"] {
            let err = resolve_source(&root, Path::new(bad), true, "volume").unwrap_err().to_string();
            assert!(err.contains("outside the volume"), "{bad}: {err}");
        }
        assert!(resolve_source(&root, Path::new("/etc"), true, "volume").is_err());
        assert!(resolve_source(&root, Path::new("nope"), false, "volume").is_err());
        let fd = resolve_source(&root, Path::new("a/b"), true, "volume").unwrap();
        assert!(vol.join("a/b").is_dir() && is_dir(&fstat(&fd).unwrap()));
        // A symlink that stays inside is followed.
        let fd = resolve_source(&root, Path::new("rel/b"), false, "volume").unwrap();
        assert_eq!(std::fs::read_link(fd_path(&fd)).unwrap(), vol.join("a/b"));
        assert!(!Path::new("/etc/x").exists());
    }
}
