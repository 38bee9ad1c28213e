//! The copy fallback where overlayfs is unavailable: an image's snapshots
//! merged into a plain directory, bottom layer first, whiteouts (0/0
//! character devices) deleting and opaque directories clearing what the
//! layers below put there.
//!
//! The target is written like a layer is unpacked: every parent resolved
//! inside the target with openat2 RESOLVE_IN_ROOT (a symlink from a lower
//! layer cannot lead a later write onto the host), names created with
//! *at() calls after removing what was there.
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstatat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::error::{ImageError, IoContext, Result};
use crate::linux::safe_path::{self, Create};

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Merge `lowers` (top first, as overlay lowerdirs are given) into `target`.
pub fn copy_rootfs(lowers: &[PathBuf], target: &Path) -> Result<()> {
    std::fs::create_dir_all(target).ctx(|| format!("create {}", target.display()))?;
    let root = nix::fcntl::open(target, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("open {}", target.display()))?;
    for snap in lowers.iter().rev() {
        let mut c = Copier { root: &root, snap, links: HashMap::new() };
        c.dir(Path::new(""))?;
    }
    Ok(())
}

struct Copier<'a> {
    root: &'a OwnedFd,
    snap: &'a Path,
    /// (dev, ino) of multiply-linked source files → their path in the target.
    links: HashMap<(u64, u64), PathBuf>,
}

fn is_dir_at(parent: &OwnedFd, name: &OsStr) -> Option<bool> {
    match fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Some(SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR),
        Err(_) => None,
    }
}

impl Copier<'_> {
    fn resolve(&self, rel: &Path) -> Result<OwnedFd> {
        safe_path::open_in_root(self.root, rel, Create::Nothing)
            .map_err(|e| ImageError::Resolve { path: rel.to_path_buf(), source: Box::new(e) })?
            .ok_or_else(|| ImageError::Unsupported(format!("{}: not a directory in the merged rootfs", rel.display())))
    }

    /// Remove `name` in `parent` (a tree if a directory), not following symlinks.
    fn remove(&self, parent: &OwnedFd, name: &OsStr, rel: &Path) -> Result<()> {
        match is_dir_at(parent, name) {
            None => Ok(()),
            Some(false) => match unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(ImageError::io(format!("remove {}", rel.display()), e)),
            },
            Some(true) => {
                let fd = self.resolve(rel)?;
                let real = std::fs::read_link(safe_path::fd_path(&fd)).ctx(|| format!("resolve {}", rel.display()))?;
                drop(fd);
                std::fs::remove_dir_all(&real).ctx(|| format!("remove {}", rel.display()))
            }
        }
    }

    fn meta(&self, parent: &OwnedFd, name: &OsStr, rel: &Path, md: &std::fs::Metadata, chmod: bool) -> Result<()> {
        fchownat(parent.as_fd(), name, Some(Uid::from_raw(md.uid())), Some(Gid::from_raw(md.gid())), AtFlags::AT_SYMLINK_NOFOLLOW)
            .ctx(|| format!("chown {}", rel.display()))?;
        if chmod {
            fchmodat(parent.as_fd(), name, Mode::from_bits_truncate(md.mode() & 0o7777), FchmodatFlags::FollowSymlink)
                .ctx(|| format!("chmod {}", rel.display()))?;
        }
        let t = TimeSpec::new(md.mtime(), md.mtime_nsec());
        utimensat(parent.as_fd(), name, &t, &t, UtimensatFlags::NoFollowSymlink).ctx(|| format!("set times of {}", rel.display()))
    }

    fn dir(&mut self, rel: &Path) -> Result<()> {
        let src = self.snap.join(rel);
        let mut entries: Vec<_> = std::fs::read_dir(&src)
            .ctx(|| format!("read {}", src.display()))?
            .collect::<std::io::Result<Vec<_>>>()
            .ctx(|| format!("read {}", src.display()))?;
        entries.sort_by_key(|e| e.file_name());
        let parent = self.resolve(rel)?;
        for e in entries {
            let name = e.file_name();
            let relp = rel.join(&name);
            let path = e.path();
            let md = std::fs::symlink_metadata(&path).ctx(|| format!("stat {}", path.display()))?;
            let ft = md.file_type();
            if ft.is_char_device() && md.rdev() == 0 {
                self.remove(&parent, &name, &relp)?; // whiteout
                continue;
            }
            if ft.is_dir() {
                let opaque = xattr::get(&path, OPAQUE_XATTR).ok().flatten().is_some_and(|v| v == b"y");
                if is_dir_at(&parent, &name) != Some(true) || opaque {
                    self.remove(&parent, &name, &relp)?;
                    mkdirat(parent.as_fd(), name.as_os_str(), Mode::from_bits_truncate(0o700))
                        .ctx(|| format!("mkdir {}", relp.display()))?;
                }
                self.dir(&relp)?;
                self.meta(&parent, &name, &relp, &md, true)?;
                continue;
            }
            self.remove(&parent, &name, &relp)?;
            if ft.is_file() {
                let key = (md.dev(), md.ino());
                if md.nlink() > 1 {
                    if let Some(first) = self.links.get(&key) {
                        let fp = first.parent().unwrap_or(Path::new(""));
                        let fparent = self.resolve(fp)?;
                        let fname = first.file_name().unwrap_or_default();
                        linkat(fparent.as_fd(), fname, parent.as_fd(), name.as_os_str(), AtFlags::empty())
                            .ctx(|| format!("link {}", relp.display()))?;
                        continue;
                    }
                    self.links.insert(key, relp.clone());
                }
                let fd = openat(
                    parent.as_fd(),
                    name.as_os_str(),
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .ctx(|| format!("create {}", relp.display()))?;
                let mut out = File::from(fd);
                let mut input = File::open(&path).ctx(|| format!("open {}", path.display()))?;
                std::io::copy(&mut input, &mut out).ctx(|| format!("copy {}", relp.display()))?;
                drop(out);
                self.meta(&parent, &name, &relp, &md, true)?;
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path).ctx(|| format!("read {}", path.display()))?;
                symlinkat(&target, parent.as_fd(), name.as_os_str()).ctx(|| format!("symlink {}", relp.display()))?;
                self.meta(&parent, &name, &relp, &md, false)?;
            } else {
                let kind = if ft.is_char_device() {
                    SFlag::S_IFCHR
                } else if ft.is_block_device() {
                    SFlag::S_IFBLK
                } else if ft.is_fifo() {
                    SFlag::S_IFIFO
                } else {
                    continue; // sockets are not content
                };
                mknodat(parent.as_fd(), name.as_os_str(), kind, Mode::from_bits_truncate(0o600), md.rdev())
                    .ctx(|| format!("mknod {}", relp.display()))?;
                self.meta(&parent, &name, &relp, &md, true)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn merges_with_whiteouts_and_opaque_dirs() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (mknod, trusted.* xattrs)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (l1, l2, out) = (t.path().join("l1"), t.path().join("l2"), t.path().join("out"));
        let host = t.path().join("host");
        std::fs::create_dir_all(&host).unwrap();
        std::fs::create_dir_all(l1.join("etc")).unwrap();
        std::fs::create_dir_all(l1.join("data")).unwrap();
        std::fs::write(l1.join("etc/keep"), "1").unwrap();
        std::fs::write(l1.join("etc/gone"), "1").unwrap();
        std::fs::write(l1.join("data/old"), "1").unwrap();
        std::fs::set_permissions(l1.join("etc/keep"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink(&host, l1.join("link")).unwrap();
        std::fs::hard_link(l1.join("etc/keep"), l1.join("etc/keep2")).unwrap();
        std::fs::create_dir_all(l2.join("etc")).unwrap();
        std::fs::create_dir_all(l2.join("data")).unwrap();
        nix::sys::stat::mknod(&l2.join("etc/gone"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
        xattr::set(l2.join("data"), OPAQUE_XATTR, b"y").unwrap();
        std::fs::write(l2.join("data/new"), "2").unwrap();
        // A later layer's directory under a lower symlink to the host.
        std::fs::create_dir_all(l2.join("link")).unwrap();
        std::fs::write(l2.join("link/pwned"), "x").unwrap();
        copy_rootfs(&[l2.clone(), l1.clone()], &out).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("etc/keep")).unwrap(), "1");
        assert_eq!(std::fs::metadata(out.join("etc/keep")).unwrap().mode() & 0o7777, 0o4755);
        assert_eq!(std::fs::metadata(out.join("etc/keep")).unwrap().ino(), std::fs::metadata(out.join("etc/keep2")).unwrap().ino());
        assert!(!out.join("etc/gone").exists());
        assert!(!out.join("data/old").exists());
        assert_eq!(std::fs::read_to_string(out.join("data/new")).unwrap(), "2");
        // The directory replaced the symlink; nothing reached the host.
        assert!(out.join("link/pwned").is_file());
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0);
    }
}
