//! Local storage eviction, as the kubelet's eviction manager does it for
//! emptyDir `sizeLimit`: a disk emptyDir is a plain directory (no tmpfs
//! turns the limit into ENOSPC); the supervisor measures its usage now and
//! then, and evicts the pod when a volume holds more than its limit.
//!
//! Measuring walks the tree the containers write, so it trusts nothing in
//! it: every directory is opened beneath its parent's fd with O_NOFOLLOW
//! (a symlink swapped in mid-walk is not followed), the walk stays on the
//! volume's filesystem, counts each hard-linked inode once, and stops at a
//! bounded number of entries and depth (then the usage found so far, a
//! lower bound, is what is judged).
use std::collections::HashSet;
use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Volume;
use nix::dir::{Dir, Type};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode};

use super::validate::parse_quantity;

/// How often the supervisor measures (the kubelet's eviction manager
/// looks every 10 s; a pod supervisor has one pod to look at).
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// At most this many entries are looked at per volume and check.
pub const MAX_ENTRIES: u64 = 200_000;
/// Directories deeper than this are not descended into.
pub const MAX_DEPTH: usize = 64;

/// A disk emptyDir with a size limit.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskLimit {
    pub volume: String,
    pub path: PathBuf,
    pub bytes: u64,
    /// The limit as the manifest wrote it ("1Mi").
    pub shown: String,
}

/// The disk emptyDirs of a pod that have a sizeLimit (Memory ones are
/// tmpfs mounts of that size: the kernel enforces them). `volumes_dir` is
/// where the pod's emptyDirs are.
pub fn limits_of(volumes_dir: &Path, volumes: &[Volume]) -> Vec<DiskLimit> {
    volumes
        .iter()
        .filter_map(|v| {
            let ed = v.empty_dir.as_ref()?;
            if ed.medium.as_deref().is_some_and(|m| !m.is_empty()) {
                return None;
            }
            let q = ed.size_limit.as_ref()?;
            // Validated by `pod run`; the ceiling, as for the tmpfs size.
            let bytes = parse_quantity(&q.0).ok()?.ceil();
            Some(DiskLimit {
                volume: v.name.clone(),
                path: volumes_dir.join(&v.name),
                bytes: if bytes >= u64::MAX as f64 { u64::MAX } else { bytes as u64 },
                shown: q.0.clone(),
            })
        })
        .collect()
}

/// What a walk found: bytes allocated (st_blocks, as du counts them),
/// entries seen, and whether the whole tree was seen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub entries: u64,
    pub complete: bool,
}

struct Walk {
    dev: u64,
    usage: Usage,
    linked: HashSet<u64>,
    max_entries: u64,
}

fn open_dir_at<Fd: AsFd>(parent: Fd, name: &CStr) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(parent, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
}

impl Walk {
    fn count(&mut self, st: &nix::sys::stat::FileStat) {
        // A file with several links is counted once (as du does).
        if st.st_nlink > 1 && (st.st_mode & libc::S_IFMT) != libc::S_IFDIR && !self.linked.insert(st.st_ino) {
            return;
        }
        self.usage.bytes = self.usage.bytes.saturating_add((st.st_blocks as u64).saturating_mul(512));
    }

    fn dir(&mut self, fd: OwnedFd, depth: usize) {
        let Ok(copy) = fd.try_clone() else {
            self.usage.complete = false;
            return;
        };
        let Ok(mut dir) = Dir::from_fd(copy) else {
            self.usage.complete = false;
            return;
        };
        for entry in dir.iter() {
            let Ok(entry) = entry else {
                self.usage.complete = false;
                return;
            };
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            if self.usage.entries >= self.max_entries {
                self.usage.complete = false;
                return;
            }
            self.usage.entries += 1;
            // Gone meanwhile (the container deletes as we walk): skip.
            let Ok(st) = fstatat(&fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) else { continue };
            if st.st_dev != self.dev {
                // Another filesystem mounted inside: not this volume's.
                continue;
            }
            self.count(&st);
            let is_dir = entry.file_type().map_or((st.st_mode & libc::S_IFMT) == libc::S_IFDIR, |t| t == Type::Directory);
            if is_dir {
                if depth >= MAX_DEPTH {
                    self.usage.complete = false;
                    continue;
                }
                // O_NOFOLLOW: swapped for a symlink since the stat, it fails.
                if let Ok(child) = open_dir_at(&fd, name) {
                    self.dir(child, depth + 1);
                }
            }
        }
    }
}

/// The usage of the tree at `root` (not following symlinks, on its own
/// filesystem), looking at no more than `max_entries` entries.
pub fn usage(root: &Path, max_entries: u64) -> std::io::Result<Usage> {
    let fd = nix::fcntl::open(root, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
    let st = fstat(&fd)?;
    let mut w = Walk { dev: st.st_dev, usage: Usage { complete: true, ..Default::default() }, linked: HashSet::new(), max_entries };
    w.count(&st);
    w.dir(fd, 1);
    Ok(w.usage)
}

/// The first volume over its limit, as the eviction message: it names
/// the volume, its usage and the limit.
pub fn exceeded(limits: &[DiskLimit]) -> Option<String> {
    for l in limits {
        let u = match usage(&l.path, MAX_ENTRIES) {
            Ok(u) => u,
            Err(e) => {
                log::warn!("emptyDir volume {:?}: usage not measured: {e}", l.volume);
                continue;
            }
        };
        if !u.complete {
            log::warn!("emptyDir volume {:?}: usage measured on part of it only ({} entries)", l.volume, u.entries);
        }
        if u.bytes > l.bytes {
            return Some(format!(
                "emptyDir volume {:?} uses {} bytes, over its sizeLimit {} ({} bytes)",
                l.volume, u.bytes, l.shown, l.bytes
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_blocks_once_and_follows_no_symlink() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("v");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), vec![1u8; 256 * 1024]).unwrap();
        std::fs::hard_link(root.join("a/b/f"), root.join("a/g")).unwrap();
        // A symlink to a big tree outside: not walked.
        std::os::unix::fs::symlink("/usr", root.join("a/usr")).unwrap();
        let u = usage(&root, MAX_ENTRIES).unwrap();
        assert!(u.complete);
        assert_eq!(u.entries, 5, "{u:?}");
        assert!(u.bytes >= 256 * 1024 && u.bytes < 256 * 1024 + 64 * 1024, "{u:?}");
        // The entry bound: a partial count, said so.
        let part = usage(&root, 2).unwrap();
        assert!(!part.complete && part.entries == 2, "{part:?}");
        // A symlink as the root itself is refused, not followed.
        std::os::unix::fs::symlink("/usr", t.path().join("link")).unwrap();
        assert!(usage(&t.path().join("link"), MAX_ENTRIES).is_err());
    }

    #[test]
    fn limits_are_disk_empty_dirs_with_a_size_and_the_message_names_them() {
        let vols: Vec<Volume> = serde_json::from_value(serde_json::json!([
            {"name": "d", "emptyDir": {"sizeLimit": "100Ki"}},
            {"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            {"name": "n", "emptyDir": {}},
            {"name": "h", "hostPath": {"path": "/tmp"}}
        ]))
        .unwrap();
        let t = tempfile::tempdir().unwrap();
        let limits = limits_of(t.path(), &vols);
        assert_eq!(limits.len(), 1);
        assert_eq!((limits[0].volume.as_str(), limits[0].bytes, limits[0].shown.as_str()), ("d", 102400, "100Ki"));
        std::fs::create_dir(t.path().join("d")).unwrap();
        assert_eq!(exceeded(&limits), None);
        std::fs::write(t.path().join("d/f"), vec![1u8; 200 * 1024]).unwrap();
        let msg = exceeded(&limits).expect("over the limit");
        assert!(msg.contains("\"d\"") && msg.contains("100Ki"), "{msg}");
    }
}
