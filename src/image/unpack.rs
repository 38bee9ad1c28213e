//! Unpacking a layer (tar, gzip or zstd) into a snapshot directory in
//! overlayfs form: whiteouts `.wh.NAME` become 0/0 character devices and
//! opaque markers `.wh..wh..opq` the `trusted.overlay.opaque` xattr, so the
//! snapshots of an image stack as overlay lowerdirs.
//!
//! A layer is untrusted input. Names with `..` or a leading `/` are
//! refused outright; every parent directory is resolved with openat2
//! (RESOLVE_IN_ROOT, through `linux::safe_path`), so a symlink planted by an
//! earlier entry resolves inside the snapshot and never on the host; the
//! last component is created with *at() calls relative to that parent and
//! O_NOFOLLOW / O_EXCL, after removing what was there, so nothing is written
//! through a symlink; hard-link targets are resolved the same way without
//! following a final symlink.
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstatat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::digest::{Digest, HashingReader};
use super::error::{ImageError, IoContext, Result};
use crate::linux::safe_path::{self, Create};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What a layer stream is compressed with, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A reader of the uncompressed tar stream of a layer blob.
pub fn decompress<'a>(blob: impl Read + 'a, what: &str) -> Result<Box<dyn Read + 'a>> {
    let mut r = BufReader::with_capacity(256 * 1024, blob);
    let head = r.fill_buf().ctx(|| format!("read {what}"))?;
    Ok(match detect(head) {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r).ctx(|| format!("zstd {what}"))?),
    })
}

/// Unpack `blob` into the (existing, empty) directory `dest`. `lowers` are
/// the snapshots below, top first: directories this layer creates only
/// implicitly take their owner and mode from there. Returns the diff id
/// (digest of the uncompressed tar), for the caller to check against the
/// image config.
pub fn unpack_layer(blob: impl Read, dest: &Path, lowers: &[PathBuf], layer: &str) -> Result<Digest> {
    let mut hashing = HashingReader::new(decompress(blob, layer)?);
    let root: OwnedFd = nix::fcntl::open(dest, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("open {}", dest.display()))?;
    // The lower snapshots are read (for implicit directories' attributes)
    // through the same in-root resolution: their symlinks lead nowhere else.
    let lowers = lowers
        .iter()
        .filter_map(|l| nix::fcntl::open(l, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).ok())
        .collect();
    let mut u = Unpacker { root, lowers, layer, dir_times: BTreeMap::new() };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive.entries().ctx(|| format!("read {layer}"))?;
        for entry in entries {
            let entry = entry.ctx(|| format!("read tar entry of {layer}"))?;
            u.entry(entry)?;
        }
    }
    // The diff id covers the whole stream, trailing zero blocks included.
    std::io::copy(&mut hashing, &mut std::io::sink()).ctx(|| format!("read {layer}"))?;
    // Directory mtimes last: creating entries inside them changed them.
    for (path, mtime) in std::mem::take(&mut u.dir_times).into_iter().rev() {
        let (parent, name) = u.parent_of(&path)?;
        let t = TimeSpec::new(mtime as i64, 0);
        utimensat(parent.as_fd(), name.as_os_str(), &t, &t, UtimensatFlags::NoFollowSymlink)
            .ctx(|| format!("set mtime of {}", path.display()))?;
    }
    Ok(hashing.finish().0)
}

struct Unpacker<'a> {
    root: OwnedFd,
    lowers: Vec<OwnedFd>,
    layer: &'a str,
    dir_times: BTreeMap<PathBuf, u64>,
}

/// A tar name as a relative path of normal components, or why not.
fn clean_name(raw: &[u8]) -> std::result::Result<PathBuf, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute name");
    }
    if raw.contains(&0) {
        return Err("NUL in name");
    }
    let mut out = PathBuf::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("'..' in name"),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

fn ignore_enoent(r: nix::Result<()>) -> nix::Result<()> {
    match r {
        Err(Errno::ENOENT) => Ok(()),
        other => other,
    }
}

impl Unpacker<'_> {
    fn hostile(&self, entry: &Path, why: impl Into<String>) -> ImageError {
        ImageError::HostileLayer { layer: self.layer.into(), entry: entry.display().to_string(), why: why.into() }
    }

    fn resolve(&self, path: &Path, create: Create) -> Result<Option<OwnedFd>> {
        safe_path::open_in_root(&self.root, path, create).map_err(|e| ImageError::Resolve { path: path.to_path_buf(), source: Box::new(e) })
    }

    /// The parent directory of `path` (created if missing) and the name.
    fn parent_of(&self, path: &Path) -> Result<(OwnedFd, OsString)> {
        let name = path.file_name().ok_or_else(|| self.hostile(path, "no file name"))?.to_os_string();
        let parent = path.parent().unwrap_or(Path::new(""));
        Ok((self.ensure_dir(parent)?, name))
    }

    /// Resolve directory `dir` inside the snapshot, creating missing ones
    /// with the owner and mode they have in the layers below.
    fn ensure_dir(&self, dir: &Path) -> Result<OwnedFd> {
        if let Some(fd) = self.resolve(dir, Create::Nothing)? {
            return Ok(fd);
        }
        let mut sofar = PathBuf::new();
        let mut parent = self.resolve(Path::new(""), Create::Nothing)?.expect("snapshot root exists");
        for comp in dir.iter() {
            sofar.push(comp);
            if let Some(fd) = self.resolve(&sofar, Create::Nothing)? {
                parent = fd;
                continue;
            }
            let lower = self.lowers.iter().find_map(|l| {
                let fd = safe_path::open_in_root(l, &sofar, Create::Nothing).ok()??;
                nix::sys::stat::fstat(fd.as_fd()).ok()
            });
            let (mode, uid, gid) = match lower {
                Some(st) if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR => {
                    (st.st_mode & 0o7777, st.st_uid, st.st_gid)
                }
                _ => (0o755, 0, 0),
            };
            match mkdirat(parent.as_fd(), comp, Mode::from_bits_truncate(0o700)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(ImageError::io(format!("{}: mkdir {}", self.layer, sofar.display()), e)),
            }
            fchownat(parent.as_fd(), comp, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW)
                .ctx(|| format!("{}: chown {}", self.layer, sofar.display()))?;
            fchmodat(parent.as_fd(), comp, Mode::from_bits_truncate(mode), FchmodatFlags::FollowSymlink)
                .ctx(|| format!("{}: chmod {}", self.layer, sofar.display()))?;
            parent = self
                .resolve(&sofar, Create::Nothing)?
                .ok_or_else(|| self.hostile(&sofar, "a symlink on the path does not lead to a directory inside the layer"))?;
        }
        Ok(parent)
    }

    /// Remove whatever is at `name` in `parent` (not following symlinks),
    /// unless it is a directory and `keep_dir`.
    fn clear(&self, parent: &OwnedFd, name: &OsStr, keep_dir: bool, path: &Path) -> Result<bool> {
        match fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(ImageError::io(format!("{}: stat {}", self.layer, path.display()), e)),
            Ok(st) if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR => {
                if keep_dir {
                    return Ok(true);
                }
                self.remove_tree(path)?;
                Ok(false)
            }
            Ok(_) => {
                ignore_enoent(unlinkat(parent.as_fd(), name, UnlinkatFlags::NoRemoveDir))
                    .ctx(|| format!("{}: replace {}", self.layer, path.display()))?;
                Ok(false)
            }
        }
    }

    /// Remove a directory tree of this snapshot. The path was resolved in
    /// the root, and std's remove_dir_all does not follow symlinks.
    fn remove_tree(&self, path: &Path) -> Result<()> {
        let fd = self.resolve(path, Create::Nothing)?.ok_or_else(|| self.hostile(path, "vanished"))?;
        let p = safe_path::fd_path(&fd);
        let real = std::fs::read_link(&p).ctx(|| format!("resolve {}", path.display()))?;
        drop(fd);
        std::fs::remove_dir_all(&real).ctx(|| format!("{}: remove {}", self.layer, path.display()))
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let shown = PathBuf::from(OsStr::from_bytes(&raw));
        let path = clean_name(&raw).map_err(|why| self.hostile(&shown, why))?;
        let kind = entry.header().entry_type();
        if path.as_os_str().is_empty() {
            return Ok(()); // "./": the snapshot root keeps its own attributes
        }
        let header = entry.header().clone();
        let uid = header.uid().map_err(|e| self.hostile(&path, format!("uid: {e}")))? as u32;
        let gid = header.gid().map_err(|e| self.hostile(&path, format!("gid: {e}")))? as u32;
        let mode = Mode::from_bits_truncate(header.mode().map_err(|e| self.hostile(&path, format!("mode: {e}")))? & 0o7777);
        let mtime = header.mtime().unwrap_or(0);
        let (parent, name) = self.parent_of(&path)?;
        let name_bytes = name.as_bytes();

        if name_bytes == OPAQUE.as_bytes() {
            let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
            let f = self.open_dir_rw(&dir)?;
            set_xattr(&f, OPAQUE_XATTR, b"y").ctx(|| format!("{}: mark {} opaque", self.layer, dir.display()))?;
            return Ok(());
        }
        if let Some(target) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if target.is_empty() || target.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                return Err(self.hostile(&path, "unknown whiteout form"));
            }
            let target = OsStr::from_bytes(target);
            let tpath = path.with_file_name(target);
            self.clear(&parent, target, false, &tpath)?;
            mknodat(parent.as_fd(), target, SFlag::S_IFCHR, Mode::empty(), nix::sys::stat::makedev(0, 0))
                .ctx(|| format!("{}: whiteout {}", self.layer, tpath.display()))?;
            return Ok(());
        }

        let xattrs = pax_xattrs(&mut entry).map_err(|e| self.hostile(&path, e))?;
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                if !self.clear(&parent, &name, true, &path)? {
                    mkdirat(parent.as_fd(), name.as_os_str(), Mode::from_bits_truncate(0o700))
                        .ctx(|| format!("{}: mkdir {}", self.layer, path.display()))?;
                }
                self.owner_mode(&parent, &name, &path, uid, gid, Some(mode))?;
                if !xattrs.is_empty() {
                    let f = self.open_dir_rw(&path)?;
                    self.apply_xattrs(&f, &xattrs, &path)?;
                }
                self.dir_times.insert(path, mtime);
            }
            T::Regular | T::Continuous => {
                self.clear(&parent, &name, false, &path)?;
                let fd = openat(
                    parent.as_fd(),
                    name.as_os_str(),
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .ctx(|| format!("{}: create {}", self.layer, path.display()))?;
                let mut f = File::from(fd);
                std::io::copy(&mut entry, &mut f).ctx(|| format!("{}: write {}", self.layer, path.display()))?;
                self.apply_xattrs(&f, &xattrs, &path)?;
                self.owner_mode(&parent, &name, &path, uid, gid, Some(mode))?;
                let t = TimeSpec::new(mtime as i64, 0);
                nix::sys::stat::futimens(f.as_fd(), &t, &t).ctx(|| format!("{}: mtime {}", self.layer, path.display()))?;
            }
            T::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| self.hostile(&path, "symlink without target"))?;
                self.clear(&parent, &name, false, &path)?;
                // The target is only text in the snapshot: every later lookup
                // through it is resolved inside the root.
                symlinkat(OsStr::from_bytes(&target), parent.as_fd(), name.as_os_str())
                    .ctx(|| format!("{}: symlink {}", self.layer, path.display()))?;
                self.owner_mode(&parent, &name, &path, uid, gid, None)?;
                let t = TimeSpec::new(mtime as i64, 0);
                utimensat(parent.as_fd(), name.as_os_str(), &t, &t, UtimensatFlags::NoFollowSymlink)
                    .ctx(|| format!("{}: mtime {}", self.layer, path.display()))?;
            }
            T::Link => {
                let raw_target = entry.link_name_bytes().ok_or_else(|| self.hostile(&path, "hard link without target"))?;
                // Hard-link targets are names in the same archive; a leading
                // "/" means the layer's root, as Docker reads them.
                let trimmed: &[u8] = &raw_target[raw_target.iter().take_while(|b| **b == b'/').count()..];
                let target = clean_name(trimmed).map_err(|why| self.hostile(&path, format!("hard link target: {why}")))?;
                if target.as_os_str().is_empty() {
                    return Err(self.hostile(&path, "hard link to the root"));
                }
                let (tparent, tname) = self.parent_of(&target)?;
                let st = fstatat(tparent.as_fd(), tname.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| self.hostile(&path, format!("hard link target {}: {e}", target.display())))?;
                if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR {
                    return Err(self.hostile(&path, "hard link to a directory"));
                }
                self.clear(&parent, &name, false, &path)?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink.
                linkat(tparent.as_fd(), tname.as_os_str(), parent.as_fd(), name.as_os_str(), AtFlags::empty())
                    .ctx(|| format!("{}: link {} to {}", self.layer, path.display(), target.display()))?;
            }
            T::Char | T::Block | T::Fifo => {
                let kind_flag = match kind {
                    T::Char => SFlag::S_IFCHR,
                    T::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.clear(&parent, &name, false, &path)?;
                mknodat(
                    parent.as_fd(),
                    name.as_os_str(),
                    kind_flag,
                    Mode::from_bits_truncate(0o600),
                    nix::sys::stat::makedev(major.into(), minor.into()),
                )
                .ctx(|| format!("{}: mknod {}", self.layer, path.display()))?;
                self.owner_mode(&parent, &name, &path, uid, gid, Some(mode))?;
                let t = TimeSpec::new(mtime as i64, 0);
                utimensat(parent.as_fd(), name.as_os_str(), &t, &t, UtimensatFlags::NoFollowSymlink)
                    .ctx(|| format!("{}: mtime {}", self.layer, path.display()))?;
            }
            // pax/GNU metadata records are consumed by the tar reader;
            // anything else (sockets, sparse files...) has no place in a layer.
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
            other => return Err(self.hostile(&path, format!("unsupported entry type {other:?}"))),
        }
        Ok(())
    }

    fn owner_mode(&self, parent: &OwnedFd, name: &OsStr, path: &Path, uid: u32, gid: u32, mode: Option<Mode>) -> Result<()> {
        fchownat(parent.as_fd(), name, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::AT_SYMLINK_NOFOLLOW)
            .ctx(|| format!("{}: chown {}", self.layer, path.display()))?;
        if let Some(mode) = mode {
            // After chown, which clears set-id bits. The name was just made
            // by us with O_EXCL / mkdirat / mknodat, so it is not a symlink.
            fchmodat(parent.as_fd(), name, mode, FchmodatFlags::FollowSymlink)
                .ctx(|| format!("{}: chmod {}", self.layer, path.display()))?;
        }
        Ok(())
    }

    /// A readable fd on a directory of the snapshot (xattrs need one; O_PATH won't do).
    fn open_dir_rw(&self, dir: &Path) -> Result<File> {
        let fd = self.ensure_dir(dir)?;
        let real = openat(fd.as_fd(), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .ctx(|| format!("{}: open {}", self.layer, dir.display()))?;
        Ok(File::from(real))
    }

    fn apply_xattrs(&self, f: &File, xattrs: &[(String, Vec<u8>)], path: &Path) -> Result<()> {
        for (k, v) in xattrs {
            match set_xattr(f, k, v) {
                Ok(()) => {}
                // Filesystems without that namespace (or security.* without
                // the LSM): containerd skips these too.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {
                    log::warn!("{}: {}: xattr {k} not set: {e}", self.layer, path.display());
                }
                Err(e) => return Err(ImageError::io(format!("{}: xattr {k} on {}", self.layer, path.display()), e)),
            }
        }
        Ok(())
    }
}

fn set_xattr(f: &File, name: &str, value: &[u8]) -> std::io::Result<()> {
    use xattr::FileExt;
    f.set_xattr(name, value)
}

/// The `SCHILY.xattr.*` records of an entry's pax header.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::result::Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(|e| format!("pax header: {e}"))? {
        for ext in exts {
            let ext = ext.map_err(|e| format!("pax header: {e}"))?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                if name == OPAQUE_XATTR || name.starts_with("trusted.overlay.") {
                    return Err(format!("overlay xattr {name} in a layer"));
                }
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
