//! Resolving untrusted paths (mount destinations, device paths) inside the
//! container's rootfs with openat2(RESOLVE_IN_ROOT): symlinks and ".." are
//! resolved as if the rootfs were "/", so nothing can point outside it.
//! Bind sources in a tree someone else writes (a volume's subPath) are
//! resolved with RESOLVE_BENEATH instead: a path leading out is refused.
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};

/// What to create at a missing destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Nothing,
    Dir,
    File,
}

/// How a path is kept inside its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Symlinks and ".." are clamped at the root, as if it were "/".
    InRoot,
    /// Anything leading out of the root (an absolute symlink, ".." above
    /// it) fails with EXDEV.
    Beneath,
}

fn resolve_flags(scope: Scope) -> ResolveFlag {
    let s = match scope {
        Scope::InRoot => ResolveFlag::RESOLVE_IN_ROOT,
        Scope::Beneath => ResolveFlag::RESOLVE_BENEATH,
    };
    s | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

/// openat2 as O_PATH, retried on EAGAIN: the kernel returns it when a
/// rename elsewhere raced a ".." step, rather than risk an escape.
fn open_path(root: &OwnedFd, rel: &Path, scope: Scope) -> nix::Result<OwnedFd> {
    let how = || OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(resolve_flags(scope));
    let mut tries = 0;
    loop {
        match openat2(root.as_fd(), rel, how()) {
            Err(Errno::EAGAIN) if tries < 64 => tries += 1,
            other => return other,
        }
    }
}

/// Open `path` (absolute or relative, interpreted inside `root`) as an
/// O_PATH fd, creating missing directories (and the last component as `create`
/// says). Returns ENOENT as `None` when `create` is Nothing.
pub fn open_in_root(root: &OwnedFd, path: &Path, create: Create) -> Result<Option<OwnedFd>> {
    open_scoped(root, path, create, Scope::InRoot, "rootfs")
}

/// Open `path` beneath `root` (a volume) as an O_PATH fd; a path that
/// leads out of it is refused ("leads outside"). Missing components are
/// created as `create` says, each with *at() on a parent resolved the same way.
pub fn open_beneath(root: &OwnedFd, path: &Path, create: Create, what: &str) -> Result<Option<OwnedFd>> {
    open_scoped(root, path, create, Scope::Beneath, what)
}

fn open_scoped(root: &OwnedFd, path: &Path, create: Create, scope: Scope, what: &str) -> Result<Option<OwnedFd>> {
    let rel = relative(path);
    let fail = |p: &Path, e: Errno| -> Error {
        if e == Errno::EXDEV {
            Error::InvalidArgument(format!("{} leads outside the {what}", p.display()))
        } else {
            Error::sys(format!("resolve {} in {what}", p.display()), e)
        }
    };
    match open_path(root, &rel, scope) {
        Ok(fd) => return Ok(Some(fd)),
        Err(Errno::ENOENT) if create != Create::Nothing => {}
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(fail(path, e)),
    }
    // Walk down from the deepest component that exists, creating what is
    // missing. Each parent is itself resolved in the root, and each name
    // created with *at() relative to it, so a symlink planted on the way
    // can only lead somewhere inside the root.
    let comps: Vec<&std::ffi::OsStr> = rel.iter().collect();
    let (start, mut parent) = deepest_existing(root, &comps, scope).map_err(|(p, e)| fail(&p, e))?;
    let mut sofar: PathBuf = comps[..start].iter().collect();
    for (i, name) in comps.iter().enumerate().skip(start) {
        sofar.push(name);
        let last = i + 1 == comps.len();
        let want_file = last && create == Create::File;
        // The first missing one was just seen missing; one after it may
        // exist all the same (a ".." step).
        if i > start {
            match open_path(root, &sofar, scope) {
                Ok(fd) => {
                    parent = fd;
                    continue;
                }
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(fail(&sofar, e)),
            }
        }
        let made = if want_file {
            nix::fcntl::openat(
                parent.as_fd(),
                *name,
                OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop)
        } else {
            nix::sys::stat::mkdirat(parent.as_fd(), *name, Mode::from_bits_truncate(0o755))
        };
        match made {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(Error::sys(format!("create {} in {what}", sofar.display()), e)),
        }
        parent = open_path(root, &sofar, scope).map_err(|e| fail(&sofar, e))?;
    }
    Ok(Some(parent))
}

/// The longest leading part of `comps` (the whole of it is known missing)
/// that exists, resolved in the root: (its length, its fd). Searched from
/// the longest down, as a missing destination usually lacks its last
/// component only.
fn deepest_existing(root: &OwnedFd, comps: &[&std::ffi::OsStr], scope: Scope) -> std::result::Result<(usize, OwnedFd), (PathBuf, Errno)> {
    for len in (1..comps.len()).rev() {
        let prefix: PathBuf = comps[..len].iter().collect();
        match open_path(root, &prefix, scope) {
            Ok(fd) => return Ok((len, fd)),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err((prefix, e)),
        }
    }
    nix::unistd::dup(root).map(|fd| (0, fd)).map_err(|e| (PathBuf::from("."), e))
}

/// The path of an fd for calls that take paths (mount targets): the
/// kernel follows this magic link to exactly the inode we resolved.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Split a path into (parent, file name) for creating a node.
pub fn parent_and_name(path: &Path) -> Result<(PathBuf, std::ffi::OsString)> {
    let rel = relative(path);
    let name = rel
        .file_name()
        .ok_or_else(|| Error::Config(format!("{} has no file name", path.display())))?
        .to_os_string();
    Ok((rel.parent().map(Path::to_path_buf).unwrap_or_default(), name))
}

/// Drop the leading "/" and "." components; keep ".." for the kernel to clamp.
fn relative(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_fd(p: &Path) -> OwnedFd {
        nix::fcntl::open(p, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
    }

    #[test]
    fn symlink_escape_stays_inside_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("evil")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        let fd = root_fd(&root);
        // "evil" points at a host path: inside the root it dangles, and
        // hull refuses rather than following it out.
        let err = open_in_root(&fd, Path::new("/evil/made"), Create::Dir).unwrap_err();
        assert!(err.to_string().contains("evil"), "{err}");
        assert!(!outside.join("made").exists(), "created outside the root");
        open_in_root(&fd, Path::new("/up/x/file"), Create::File).unwrap().unwrap();
        assert!(root.join("x/file").is_file());
    }

    /// Several missing components, one of them "..": each is made below
    /// the last one that exists, the ".." step taken as the kernel does.
    #[test]
    fn missing_components_are_made_from_the_deepest_existing() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("e")).unwrap();
        let fd = root_fd(t.path());
        open_in_root(&fd, Path::new("/e/a/b/../c/f"), Create::File).unwrap().unwrap();
        assert!(t.path().join("e/a/b").is_dir());
        assert!(t.path().join("e/a/c/f").is_file());
        assert!(!t.path().join("e/a/b/c").exists());
        // Everything missing: made from the root.
        open_in_root(&fd, Path::new("x/y"), Create::Dir).unwrap().unwrap();
        assert!(t.path().join("x/y").is_dir());
    }

    #[test]
    fn missing_without_create_is_none() {
        let t = tempfile::tempdir().unwrap();
        let fd = root_fd(t.path());
        assert!(open_in_root(&fd, Path::new("/nope"), Create::Nothing).unwrap().is_none());
    }
}
