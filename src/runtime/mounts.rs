//! Bind sources resolved once. Every bind mount of a container's config is
//! opened here (its `sub_path` beneath `host_path`, never leading out of
//! it), its type checked on the opened file, and bound from that fd onto a
//! path under the container's run directory that only hull can change; the
//! OCI spec then names that path. A source in a tree a container can
//! rewrite (a pod volume, a subPath in it) cannot be swapped for a symlink
//! between the check and the mount. The host paths of CDI bind mounts
//! (from the spec files) are staged the same way.
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::config::{ContainerConfig, Mount, SourceType};
use super::error::{Result, RuntimeError};
use crate::linux::bind;

/// Open a mount's source: `host_path` (symlinks followed, once: it is the
/// caller's own path), then `sub_path` beneath it (made as directories when
/// missing), and check what was opened against `source_type`.
pub fn open_source(m: &Mount, field: &str) -> Result<OwnedFd> {
    let host = &m.host_path;
    if !host.is_absolute() {
        return Err(RuntimeError::invalid(format!("container {field}: host_path {} is not absolute", host.display())));
    }
    let opened = if m.sub_path.is_empty() {
        nix::fcntl::open(host, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| match e {
            nix::errno::Errno::ENOENT => RuntimeError::invalid(format!("container {field}: host_path {} does not exist", host.display())),
            e => {
                RuntimeError::with_source(super::ErrorKind::Internal, format!("{field}: open {}", host.display()), std::io::Error::from(e))
            }
        })?
    } else {
        let root = bind::open_root(host).map_err(|e| RuntimeError::from(e).context(format!("container {field}.host_path")))?;
        bind::resolve_source(&root, Path::new(&m.sub_path), true, "volume").map_err(|e| match e {
            crate::Error::InvalidArgument(why) => RuntimeError::invalid(format!("container {field}.sub_path: {why}")),
            e => RuntimeError::from(e).context(format!("container {field}.sub_path")),
        })?
    };
    let st = bind::fstat(&opened).map_err(RuntimeError::from)?;
    check_type(st.st_mode, m.source_type).map_err(|why| RuntimeError::invalid(format!("container {field}: {why}")))?;
    Ok(opened)
}

/// A file mode against a wanted source type.
pub fn check_type(mode: libc::mode_t, want: SourceType) -> std::result::Result<(), String> {
    let (fmt, what) = match want {
        SourceType::Any => return Ok(()),
        SourceType::Directory => (libc::S_IFDIR, "a directory"),
        SourceType::File => (libc::S_IFREG, "a file"),
        SourceType::Socket => (libc::S_IFSOCK, "a socket file"),
        SourceType::CharDevice => (libc::S_IFCHR, "a character device"),
        SourceType::BlockDevice => (libc::S_IFBLK, "a block device"),
    };
    if mode & libc::S_IFMT == fmt {
        Ok(())
    } else {
        Err(format!("the source is not {what}"))
    }
}

/// Stage every bind source of `mounts` under `dir` (`dir/<i>`); returns
/// the mounts with their host paths pointing at the staged copies. Each
/// staged path is pushed to `staged` as soon as it is mounted, so that a
/// failure half-way leaves a list the caller can undo with [`unstage`].
pub fn stage(mounts: &[Mount], dir: &Path, staged: &mut Vec<PathBuf>) -> Result<Vec<Mount>> {
    let mut out = Vec::with_capacity(mounts.len());
    for (i, m) in mounts.iter().enumerate() {
        if m.tmpfs {
            out.push(m.clone());
            continue;
        }
        let target = stage_one(m, &format!("mounts[{i}]"), dir.join(i.to_string()), staged)?;
        out.push(Mount { host_path: target, sub_path: String::new(), source_type: SourceType::Any, ..m.clone() });
    }
    Ok(out)
}

/// Open `m`'s source and bind it from that fd onto `target`.
fn stage_one(m: &Mount, field: &str, target: PathBuf, staged: &mut Vec<PathBuf>) -> Result<PathBuf> {
    let fd = open_source(m, field)?;
    bind::stage(&fd, &target).map_err(|e| RuntimeError::from(e).context(format!("container {field}")))?;
    staged.push(target.clone());
    Ok(target)
}

/// Where [`stage_config`] stages `c`'s sources, in its order: `dir/<i>`
/// for each bind of `mounts`, `dir/cdi-<i>` for each CDI mount (recorded
/// before anything is mounted there).
pub fn staged_paths(c: &ContainerConfig, dir: &Path) -> Vec<PathBuf> {
    let binds = (0..c.mounts.len()).filter(|i| !c.mounts[*i].tmpfs).map(|i| dir.join(i.to_string()));
    binds.chain((0..c.cdi.mounts.len()).map(|i| dir.join(format!("cdi-{i}")))).collect()
}

/// `c` with every bind source staged under `dir`: its mounts' (see
/// [`stage`]) and its CDI mounts' host paths (the spec file's path opened
/// once, its symlinks followed then, as a `host_path` is).
pub fn stage_config(c: ContainerConfig, dir: &Path) -> Result<ContainerConfig> {
    let staged = &mut Vec::new();
    let mounts = stage(&c.mounts, dir, staged)?;
    let mut cdi = c.cdi.clone();
    for (i, m) in cdi.mounts.iter_mut().enumerate() {
        let src = Mount { host_path: m.host_path.clone(), ..Default::default() };
        m.host_path = stage_one(&src, &format!("cdi mounts[{i}] ({})", m.container_path), dir.join(format!("cdi-{i}")), staged)?;
    }
    Ok(ContainerConfig { mounts, cdi, ..c })
}

/// Unmount staged sources (lazily: a container still holding one keeps
/// its own mount, which is not the staged path's).
pub fn unstage(staged: &[PathBuf]) {
    for p in staged.iter().rev() {
        if let Err(e) = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH) {
            if e != nix::errno::Errno::EINVAL && e != nix::errno::Errno::ENOENT {
                log::warn!("unmount {}: {e}", p.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: &Path, sub: &str, t: SourceType) -> Mount {
        Mount { container_path: "/x".into(), host_path: host.into(), sub_path: sub.into(), source_type: t, ..Default::default() }
    }

    #[test]
    fn sub_paths_stay_inside_and_types_are_checked() {
        let t = tempfile::tempdir().unwrap();
        let vol = t.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        std::fs::write(vol.join("f"), "").unwrap();
        std::os::unix::fs::symlink("/etc", vol.join("evil")).unwrap();
        std::os::unix::fs::symlink("../..", vol.join("up")).unwrap();
        for bad in ["evil", "up/x", "../x"] {
            let e = open_source(&m(&vol, bad, SourceType::Any), "mounts[0]").unwrap_err();
            assert!(e.to_string().contains("mounts[0].sub_path") && e.to_string().contains("outside"), "{bad}: {e}");
        }
        open_source(&m(&vol, "a/b", SourceType::Directory), "mounts[0]").unwrap();
        assert!(vol.join("a/b").is_dir(), "a missing subPath is made");
        open_source(&m(&vol, "f", SourceType::File), "mounts[0]").unwrap();
        let e = open_source(&m(&vol, "f", SourceType::Directory), "mounts[0]").unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        let e = open_source(&m(&t.path().join("nope"), "", SourceType::Any), "mounts[2]").unwrap_err();
        assert!(e.to_string().contains("mounts[2]: host_path") && e.to_string().contains("does not exist"), "{e}");
        assert_eq!(e.kind(), crate::runtime::ErrorKind::InvalidArgument);
        open_source(&m(Path::new("/dev/null"), "", SourceType::CharDevice), "m").unwrap();
        assert!(open_source(&m(Path::new("/dev/null"), "", SourceType::Socket), "m").is_err());
    }
}
