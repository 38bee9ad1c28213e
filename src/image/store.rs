//! The content store under the image root (default /var/lib/hull/images):
//!
//! ```text
//! blobs/sha256/<hex>      manifests, configs, layers: named by their digest
//! ingest/                 blobs being written (temp files, renamed when verified)
//! snapshots/<chain hex>/  one unpacked layer each, keyed by chain id
//! leases/<name>           who uses which images and snapshots (see lease.rs)
//! images.json             image records: name -> manifest, config
//! lock                    flock held while records change or prune runs
//! ```
//!
//! A blob only appears under blobs/ once its digest and size are verified,
//! by a rename; a failed or interrupted write leaves at most a temp file
//! in ingest/, which prune removes.
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::digest::{Digest, HashingReader};
use super::error::{ImageError, IoContext, Result};
use super::manifest::{self, ImageConfig, Manifest};

pub const DEFAULT_ROOT: &str = "/var/lib/hull/images";

/// One name of an image: `docker.io/library/busybox:latest` → these digests.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    pub name: String,
    /// The platform manifest the image runs from.
    pub manifest: Digest,
    /// The image id, as Docker shows it.
    pub config: Digest,
    /// The index / manifest list it was selected from, if any (kept for export).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    pub created: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Records {
    pub images: BTreeMap<String, ImageRecord>,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name for a temp file or directory unique to this process and call.
pub fn temp_name(prefix: &str) -> String {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}-{n}-{nanos}", std::process::id())
}

/// What a blob is expected to be, if known (from a descriptor).
#[derive(Clone, Debug)]
pub struct Expect<'a> {
    pub digest: &'a Digest,
    pub size: Option<u64>,
}

/// What prune removed.
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    pub blobs: usize,
    pub snapshots: usize,
    pub temp: usize,
    pub bytes: u64,
}

/// Disk use of the store, for `hull image df` and CRI's ImageFsInfo.
#[derive(Debug, Default, Serialize)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

impl Store {
    /// Open (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        use std::os::unix::fs::PermissionsExt;
        for d in ["blobs/sha256", "ingest", "snapshots", "leases"] {
            fs::create_dir_all(root.join(d)).ctx(|| format!("create {}", root.join(d).display()))?;
        }
        // Snapshots hold images' files as they are, set-uid binaries and
        // device nodes included: only root may reach them on the host (the
        // overlay reads lower dirs with the mounter's credentials, so
        // containers are not affected), as containerd does.
        let modes = [("", 0o711), ("blobs", 0o700), ("ingest", 0o700), ("snapshots", 0o700), ("leases", 0o700)];
        for (d, mode) in modes {
            let p = root.join(d);
            let current = fs::metadata(&p).ctx(|| format!("stat {}", p.display()))?.permissions().mode() & 0o7777;
            if current != mode {
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).ctx(|| format!("chmod {}", p.display()))?;
            }
        }
        Ok(Store { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    pub fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    pub fn snapshot_dir(&self, chain: &Digest) -> PathBuf {
        self.root.join("snapshots").join(chain.hex())
    }

    pub fn leases_dir(&self) -> PathBuf {
        self.root.join("leases")
    }

    /// Write a blob from `src`, verifying digest and size as it streams.
    /// Without `expect`, the blob is named by what was written. `progress`
    /// is called with the bytes written so far.
    pub fn write_blob(
        &self,
        src: impl Read,
        expect: Option<Expect<'_>>,
        what: &str,
        mut progress: impl FnMut(u64),
    ) -> Result<(Digest, u64)> {
        // Two pulls of the same blob: the second waits for the first and
        // then finds the blob there.
        let _busy = match &expect {
            Some(e) => Some(self.work_lock(&format!("{}.blob", e.digest.hex()))?),
            None => None,
        };
        if let Some(e) = &expect {
            if self.has_blob(e.digest) {
                let size = fs::metadata(self.blob_path(e.digest)).ctx(|| format!("stat blob {}", e.digest))?.len();
                progress(size);
                return Ok((e.digest.clone(), size));
            }
        }
        let tmp = self.ingest_dir().join(temp_name("blob-"));
        let result = self.write_blob_to(&tmp, src, expect.as_ref(), what, &mut progress);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_blob_to(
        &self,
        tmp: &Path,
        src: impl Read,
        expect: Option<&Expect<'_>>,
        what: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(Digest, u64)> {
        let file = File::create(tmp).ctx(|| format!("create {}", tmp.display()))?;
        // Locked while written, so prune leaves it alone.
        let mut file = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| ImageError::io(format!("lock {}", tmp.display()), e))?;
        // Never read more than the descriptor allows: a registry cannot
        // make us fill the disk with an endless blob.
        let limit = expect.and_then(|e| e.size).map_or(u64::MAX, |s| s.saturating_add(1));
        let mut reader = HashingReader::new(src.take(limit));
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ImageError::io(format!("read {what}"), e)),
            };
            file.write_all(&buf[..n]).ctx(|| format!("write {}", tmp.display()))?;
            progress(reader.count());
        }
        let (digest, size) = reader.finish();
        if let Some(e) = expect {
            if let Some(want) = e.size {
                if size != want {
                    return Err(ImageError::SizeMismatch { what: what.into(), expected: want, actual: size });
                }
            }
            if &digest != e.digest {
                return Err(ImageError::DigestMismatch { what: what.into(), expected: e.digest.to_string(), actual: digest.to_string() });
            }
        }
        file.sync_all().ctx(|| format!("sync {}", tmp.display()))?;
        drop(file);
        let dest = self.blob_path(&digest);
        fs::rename(tmp, &dest).ctx(|| format!("rename blob into {}", dest.display()))?;
        Ok((digest, size))
    }

    /// Write blob `digest` of `size` bytes from `open(offset)`, keeping
    /// what arrived in `ingest/<hex>.partial` if the stream breaks, so the
    /// next attempt resumes from there when the source can (`open` returns
    /// the offset it really starts at; 0 starts over). A digest or size
    /// mismatch removes the partial file: it cannot be trusted to resume.
    pub fn write_blob_resumable<'s, R: Read + 's>(
        &self,
        digest: &Digest,
        size: u64,
        what: &str,
        open: impl FnOnce(u64) -> Result<(R, u64)>,
        mut progress: impl FnMut(u64),
    ) -> Result<(Digest, u64)> {
        let _busy = self.work_lock(&format!("{}.blob", digest.hex()))?;
        if self.has_blob(digest) {
            progress(size);
            return Ok((digest.clone(), size));
        }
        let partial = self.ingest_dir().join(format!("{}.partial", digest.hex()));
        let file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&partial)
            .ctx(|| format!("open {}", partial.display()))?;
        let file = Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| ImageError::io(format!("lock {}", partial.display()), e))?;
        let mut have = file.metadata().ctx(|| format!("stat {}", partial.display()))?.len();
        if have >= size {
            have = 0; // complete yet not renamed: it failed verification or was cut short
        }
        let (src, start) = open(have)?;
        let start = if start == have { have } else { 0 };
        let result = (|| -> std::result::Result<(Digest, u64), (ImageError, bool)> {
            use sha2::Digest as _;
            use std::io::Seek;
            let keep = |e: ImageError| (e, true);
            let mut f: &File = &file;
            f.set_len(start).ctx(|| format!("truncate {}", partial.display())).map_err(keep)?;
            f.seek(std::io::SeekFrom::Start(0)).ctx(|| format!("seek {}", partial.display())).map_err(keep)?;
            let mut hasher = sha2::Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            // Hash what an earlier attempt left, then append to it.
            let mut left = start;
            while left > 0 {
                let want = buf.len().min(left as usize);
                let n = f.read(&mut buf[..want]).ctx(|| format!("read {}", partial.display())).map_err(keep)?;
                if n == 0 {
                    return Err((ImageError::io(format!("read {}", partial.display()), std::io::ErrorKind::UnexpectedEof), false));
                }
                hasher.update(&buf[..n]);
                left -= n as u64;
            }
            let mut src = src.take(size - start + 1);
            let mut count = start;
            loop {
                let n = match src.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err((ImageError::io(format!("read {what}"), e), true)),
                };
                f.write_all(&buf[..n]).ctx(|| format!("write {}", partial.display())).map_err(keep)?;
                hasher.update(&buf[..n]);
                count += n as u64;
                progress(count);
            }
            if count != size {
                // Cut short: keep it to resume. Too long: useless.
                return Err((ImageError::SizeMismatch { what: what.into(), expected: size, actual: count }, count < size));
            }
            let actual = Digest::from_hasher(hasher);
            if &actual != digest {
                return Err((
                    ImageError::DigestMismatch { what: what.into(), expected: digest.to_string(), actual: actual.to_string() },
                    false,
                ));
            }
            file.sync_all().ctx(|| format!("sync {}", partial.display())).map_err(keep)?;
            fs::rename(&partial, self.blob_path(digest)).ctx(|| format!("rename blob {digest}")).map_err(keep)?;
            Ok((digest.clone(), size))
        })();
        match result {
            Ok(v) => Ok(v),
            Err((e, keep)) => {
                if !keep {
                    let _ = fs::remove_file(&partial);
                }
                Err(e)
            }
        }
    }

    pub fn put_bytes(&self, data: &[u8], expect: Option<Expect<'_>>, what: &str) -> Result<Digest> {
        self.write_blob(data, expect, what, |_| {}).map(|(d, _)| d)
    }

    /// Read a small blob (manifest, config) whole, re-checking its digest:
    /// the store is trusted only as far as its content matches its names.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let data = fs::read(self.blob_path(d)).ctx(|| format!("read blob {d}"))?;
        let actual = Digest::of(&data);
        if &actual != d {
            return Err(ImageError::DigestMismatch {
                what: format!("stored blob {d}"),
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(data)
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        File::open(self.blob_path(d)).ctx(|| format!("open blob {d}"))
    }

    pub fn manifest(&self, d: &Digest) -> Result<Manifest> {
        manifest::parse(&format!("manifest {d}"), &self.read_blob(d)?)
    }

    pub fn config(&self, d: &Digest) -> Result<ImageConfig> {
        manifest::parse(&format!("config {d}"), &self.read_blob(d)?)
    }

    /// Serialise work on one key (a blob or snapshot being made) across
    /// processes: an flock on `ingest/<key>.lock`, held by the guard.
    pub fn work_lock(&self, key: &str) -> Result<WorkLock> {
        let path = self.ingest_dir().join(format!("{key}.lock"));
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("open {}", path.display()))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| ImageError::io(format!("lock {}", path.display()), e))?;
        Ok(WorkLock { path, _lock: lock })
    }

    /// Held (shared) by pulls, imports and mounts for their whole run, and
    /// (exclusive) by prune: blobs and snapshots written but not yet
    /// recorded are never collected under a pull's feet.
    pub fn gc_guard(&self, exclusive: bool) -> Result<Flock<File>> {
        let path = self.root.join("gc.lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("open {}", path.display()))?;
        let arg = if exclusive { FlockArg::LockExclusive } else { FlockArg::LockShared };
        Flock::lock(f, arg).map_err(|(_, e)| ImageError::io(format!("lock {}", path.display()), e))
    }

    /// Hold the store lock for the life of the returned guard.
    pub fn lock(&self) -> Result<Flock<File>> {
        let path = self.root.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("open {}", path.display()))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| ImageError::io(format!("lock {}", path.display()), e))
    }

    pub fn records(&self) -> Result<Records> {
        let path = self.root.join("images.json");
        match fs::read(&path) {
            Ok(data) => manifest::parse("images.json", &data),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Records::default()),
            Err(e) => Err(ImageError::io(format!("read {}", path.display()), e)),
        }
    }

    /// Change the records under the store lock; written to a temp file and
    /// renamed, so a reader never sees half a file.
    pub fn update_records<T>(&self, f: impl FnOnce(&mut Records) -> Result<T>) -> Result<T> {
        let _lock = self.lock()?;
        let mut recs = self.records()?;
        let out = f(&mut recs)?;
        let path = self.root.join("images.json");
        let tmp = self.root.join(temp_name(".images.json-"));
        let data = serde_json::to_vec_pretty(&recs).map_err(|e| ImageError::json("encode images.json", e))?;
        fs::write(&tmp, data).ctx(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, &path).ctx(|| format!("rename {}", path.display()))?;
        Ok(out)
    }

    /// Find an image by name (normalised) or by id / id prefix (config digest).
    pub fn find(&self, recs: &Records, key: &str) -> Vec<ImageRecord> {
        if let Ok(r) = super::reference::Reference::parse(key) {
            if let Some(rec) = recs.images.get(&r.to_string()) {
                return vec![rec.clone()];
            }
        }
        if let Some(rec) = recs.images.get(key) {
            return vec![rec.clone()];
        }
        let hex = key.strip_prefix("sha256:").unwrap_or(key);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found: Vec<ImageRecord> = recs
                .images
                .values()
                .filter(|r| r.config.hex().starts_with(hex) || r.manifest.hex().starts_with(hex))
                .cloned()
                .collect();
            let ids: BTreeSet<_> = found.iter().map(|r| r.config.clone()).collect();
            if ids.len() > 1 {
                found.clear(); // ambiguous prefix: the caller reports "not found"
            }
            return found;
        }
        Vec::new()
    }

    /// Remove image names. When no name is left for an image, its blobs
    /// and snapshots are garbage-collected (as `docker rmi` deletes the
    /// image); returns the ids of the images so deleted. With
    /// `refuse_in_use`, taking away an image a lease uses (a pod's, a
    /// mounted rootfs's) is refused naming both, and nothing is removed.
    pub fn remove_names(&self, names: &[String], refuse_in_use: bool) -> Result<Vec<Digest>> {
        let (removed, remaining) = self.update_records(|recs| {
            if refuse_in_use {
                let leases = self.leases()?;
                if let Some((image, owners)) = super::lease::in_use(&leases, recs, names) {
                    let owners = owners.join(", ");
                    return Err(ImageError::InUse(format!("image {image} is in use by {owners}: remove them first")));
                }
            }
            let removed: Vec<ImageRecord> = names.iter().filter_map(|n| recs.images.remove(n)).collect();
            Ok((removed, recs.images.values().map(|r| r.config.clone()).collect::<BTreeSet<_>>()))
        })?;
        let deleted: BTreeSet<Digest> = removed.into_iter().map(|r| r.config).filter(|id| !remaining.contains(id)).collect();
        if !deleted.is_empty() {
            self.prune()?;
        }
        Ok(deleted.into_iter().collect())
    }

    /// Chain ids of an image's layers, bottom first.
    pub fn chain_ids(&self, rec: &ImageRecord) -> Result<Vec<Digest>> {
        Ok(Digest::chain_ids(&self.config(&rec.config)?.rootfs.diff_ids))
    }

    /// Remove blobs, snapshots and temp files no image record or lease
    /// refers to.
    pub fn prune(&self) -> Result<PruneReport> {
        let _gc = self.gc_guard(true)?;
        let _lock = self.lock()?;
        let recs = self.records()?;
        let mut keep_blobs = BTreeSet::new();
        let mut keep_snaps = BTreeSet::new();
        for rec in recs.images.values() {
            keep_blobs.insert(rec.manifest.hex().to_string());
            keep_blobs.insert(rec.config.hex().to_string());
            if let Some(i) = &rec.index {
                keep_blobs.insert(i.hex().to_string());
            }
            if let Ok(m) = self.manifest(&rec.manifest) {
                keep_blobs.extend(m.layers.iter().map(|l| l.digest.hex().to_string()));
            }
            if let Ok(chain) = self.chain_ids(rec) {
                keep_snaps.extend(chain.iter().map(|c| c.hex().to_string()));
            }
        }
        for (_, lease) in self.leases()? {
            keep_snaps.extend(lease.snapshots);
        }
        let mut report = PruneReport::default();
        for name in read_dir_names(&self.root.join("blobs/sha256"))? {
            if !keep_blobs.contains(&name) {
                let p = self.root.join("blobs/sha256").join(&name);
                report.bytes += fs::symlink_metadata(&p).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&p).ctx(|| format!("remove {}", p.display()))?;
                report.blobs += 1;
            }
        }
        for name in read_dir_names(&self.root.join("snapshots"))? {
            if !keep_snaps.contains(&name) {
                let p = self.root.join("snapshots").join(&name);
                report.bytes += usage_of(&p).bytes;
                fs::remove_dir_all(&p).ctx(|| format!("remove {}", p.display()))?;
                report.snapshots += 1;
            }
        }
        for name in read_dir_names(&self.ingest_dir())? {
            let p = self.ingest_dir().join(&name);
            // In use (a write, an unpack, or a lock held by one): skip.
            let Some(_held) = try_lock(&p) else { continue };
            report.bytes += usage_of(&p).bytes;
            let r = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            r.ctx(|| format!("remove {}", p.display()))?;
            report.temp += 1;
        }
        Ok(report)
    }

    pub fn usage(&self) -> Usage {
        usage_of(&self.root)
    }
}

/// A held work lock. The lock file is removed before the lock is released:
/// whoever waited on it (or comes later and makes a new one) then re-checks
/// for the finished blob or snapshot; at worst, after a failure, two
/// writers redo the same work, which the atomic renames make harmless.
pub struct WorkLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Drop for WorkLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Lock `p` (a file or directory) without waiting; None if someone holds it
/// (or it vanished).
pub fn try_lock(p: &Path) -> Option<Flock<File>> {
    let f = File::open(p).ok()?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock).ok()
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).ctx(|| format!("read {}", dir.display()))? {
        let e = e.ctx(|| format!("read {}", dir.display()))?;
        out.push(e.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Bytes (allocated blocks) and inodes under `path`, hard links counted once.
pub fn usage_of(path: &Path) -> Usage {
    let mut seen = BTreeSet::new();
    let mut u = Usage::default();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = fs::symlink_metadata(&p) else { continue };
        if !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        u.inodes += 1;
        u.bytes += md.blocks() * 512;
        if md.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_verified_and_atomic() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let good = Digest::of(b"hello");
        let d = s.put_bytes(b"hello", Some(Expect { digest: &good, size: Some(5) }), "blob").unwrap();
        assert_eq!(d, good);
        assert_eq!(s.read_blob(&d).unwrap(), b"hello");

        let other = Digest::of(b"other");
        let err = s.put_bytes(b"evil!", Some(Expect { digest: &other, size: Some(5) }), "layer x").unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(!s.has_blob(&other));
        assert!(!s.has_blob(&Digest::of(b"evil!")));
        let err = s.put_bytes(b"hello!", Some(Expect { digest: &other, size: Some(5) }), "layer y").unwrap_err();
        assert!(matches!(err, ImageError::SizeMismatch { .. }), "{err}");
        // Nothing half-written is left behind.
        assert_eq!(fs::read_dir(s.ingest_dir()).unwrap().count(), 0);
        assert_eq!(fs::read_dir(t.path().join("blobs/sha256")).unwrap().count(), 1);
    }

    #[test]
    fn store_dirs_are_root_only() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("images");
        Store::open(&root).unwrap();
        let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(""), 0o711);
        assert_eq!(mode("snapshots"), 0o700);
        assert_eq!(mode("blobs"), 0o700);
    }

    #[test]
    fn interrupted_write_leaves_no_blob() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "peer went away"));
                }
                self.0 -= 1;
                buf[0] = b'x';
                Ok(1)
            }
        }
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let err = s.write_blob(Failing(10), None, "layer z", |_| {}).unwrap_err();
        assert!(err.to_string().contains("layer z"), "{err}");
        assert_eq!(fs::read_dir(t.path().join("blobs/sha256")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(s.ingest_dir()).unwrap().count(), 0);
    }

    #[test]
    fn concurrent_writes_of_one_blob_share_the_work() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let data = vec![7u8; 1 << 20];
        let d = Digest::of(&data);
        struct Slow<'a>(&'a [u8]);
        impl Read for Slow<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                std::thread::sleep(std::time::Duration::from_millis(2));
                let n = buf.len().min(self.0.len()).min(64 * 1024);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let reads = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|sc| {
            for _ in 0..3 {
                sc.spawn(|| {
                    let r = Slow(&data);
                    s.write_blob(r, Some(Expect { digest: &d, size: Some(data.len() as u64) }), "blob", |n| {
                        reads.fetch_max(n, Ordering::Relaxed);
                    })
                    .unwrap();
                });
            }
            // A prune meanwhile must not remove a blob being written.
            std::thread::sleep(std::time::Duration::from_millis(5));
            s.prune().unwrap();
        });
        assert!(s.has_blob(&d));
        assert_eq!(s.read_blob(&d).unwrap().len(), data.len());
        assert_eq!(fs::read_dir(t.path().join("blobs/sha256")).unwrap().count(), 1);
        assert_eq!(fs::read_dir(s.ingest_dir()).unwrap().count(), 0);
    }

    #[test]
    fn resumable_writes() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let d = Digest::of(&data);
        let size = data.len() as u64;
        struct Cut<'a>(&'a [u8], usize);
        impl Read for Cut<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.1 == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut"));
                }
                let n = buf.len().min(self.0.len()).min(self.1);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                self.1 -= n;
                Ok(n)
            }
        }
        // Cut after 30000 bytes: kept as partial.
        let err = s
            .write_blob_resumable(&d, size, "layer", |from| Ok((Cut(&data[from as usize..], 30_000), from)), |_| {})
            .unwrap_err();
        assert!(err.to_string().contains("cut"), "{err}");
        let partial = s.ingest_dir().join(format!("{}.partial", d.hex()));
        assert_eq!(fs::metadata(&partial).unwrap().len(), 30_000);
        // A source that cannot resume starts over (offset 0), cut again at 50000.
        s.write_blob_resumable(&d, size, "layer", |_| Ok((Cut(&data[..], 50_000), 0)), |_| {}).unwrap_err();
        assert_eq!(fs::metadata(&partial).unwrap().len(), 50_000);
        // Resumed from 50000 to the end.
        let mut asked = None;
        s.write_blob_resumable(
            &d,
            size,
            "layer",
            |from| {
                asked = Some(from);
                Ok((&data[from as usize..], from))
            },
            |_| {},
        )
        .unwrap();
        assert_eq!(asked, Some(50_000));
        assert_eq!(s.read_blob(&d).unwrap(), data);
        assert!(!partial.exists());
        // Wrong content after a resume: the partial is dropped, no blob.
        let other = Digest::of(b"x");
        s.write_blob_resumable(&other, 3, "layer", |_| Ok((&b"ab"[..], 0)), |_| {}).unwrap_err();
        let err = s
            .write_blob_resumable(&other, 3, "layer", |from| Ok((&b"abc"[from as usize..], from)), |_| {})
            .unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(!s.has_blob(&other));
        assert_eq!(fs::read_dir(s.ingest_dir()).unwrap().count(), 0);
    }

    #[test]
    fn records_and_prune() {
        let t = tempfile::tempdir().unwrap();
        let s = Store::open(t.path()).unwrap();
        let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config = s.put_bytes(cfg, None, "config").unwrap();
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{config}","size":{}}},"layers":[]}}"#,
            manifest::OCI_CONFIG,
            cfg.len()
        );
        let man = s.put_bytes(m.as_bytes(), None, "manifest").unwrap();
        let junk = s.put_bytes(b"junk", None, "junk").unwrap();
        fs::create_dir(s.snapshot_dir(&junk)).unwrap();
        fs::write(s.ingest_dir().join("partial"), b"x").unwrap();
        for name in ["docker.io/library/a:latest", "docker.io/library/a:v1"] {
            s.update_records(|r| {
                r.images.insert(
                    name.into(),
                    ImageRecord { name: name.into(), manifest: man.clone(), config: config.clone(), index: None, created: String::new() },
                );
                Ok(())
            })
            .unwrap();
        }
        let recs = s.records().unwrap();
        assert_eq!(s.find(&recs, "a").len(), 1);
        assert_eq!(s.find(&recs, "a:v1")[0].name, "docker.io/library/a:v1");
        assert_eq!(s.find(&recs, config.short()).len(), 2);
        assert!(s.find(&recs, "b").is_empty());
        let rep = s.prune().unwrap();
        assert_eq!((rep.blobs, rep.snapshots, rep.temp), (1, 1, 1));
        assert!(s.has_blob(&man) && s.has_blob(&config) && !s.has_blob(&junk));
        assert!(s.usage().inodes > 0);
    }
}
