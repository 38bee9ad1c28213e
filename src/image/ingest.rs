//! Bringing an image into the store, from any source of blobs (a registry,
//! an OCI layout, a docker-archive): fetch what is missing (verified),
//! unpack each layer once into its chain-id snapshot, record the name.
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;

use super::digest::Digest;
use super::error::{ImageError, IoContext, Result};
use super::manifest::{self, Descriptor, ImageConfig, Manifest};
use super::store::{temp_name, ImageRecord, Store};
use super::unpack;

/// Where blobs come from.
pub trait BlobSource: Sync {
    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>>;

    /// The blob from byte `offset` if the source can (returns the offset it
    /// actually starts at: `offset` or 0).
    fn open_at(&self, desc: &Descriptor, _offset: u64) -> Result<(Box<dyn Read + Send + '_>, u64)> {
        Ok((self.open(desc)?, 0))
    }
}

/// Progress of blob downloads and unpacking (a progress bar, or nothing).
pub trait Progress: Sync {
    fn begin(&self, _id: &str, _total: u64) {}
    fn advance(&self, _id: &str, _done: u64) {}
    fn finish(&self, _id: &str, _note: &str) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

/// What happened, for the summary line.
#[derive(Debug, Default)]
pub struct IngestReport {
    pub fetched_blobs: usize,
    pub fetched_bytes: u64,
    pub reused_blobs: usize,
    pub unpacked_layers: usize,
    pub reused_snapshots: usize,
}

/// Configs are read whole into memory: refuse absurd ones up front.
const MAX_CONFIG: u64 = 16 << 20;
/// Manifests and indexes likewise (the distribution spec suggests 4 MiB).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// How many blobs to fetch at once.
const PARALLEL_FETCHES: usize = 4;

/// Fetch `desc` into the store unless it is there (verified while written).
pub fn fetch_blob(store: &Store, src: &dyn BlobSource, desc: &Descriptor, what: &str, progress: &dyn Progress) -> Result<bool> {
    let id = desc.digest.short().to_string();
    if store.has_blob(&desc.digest) {
        progress.finish(&id, "already present");
        return Ok(false);
    }
    progress.begin(&id, desc.size);
    store.write_blob_resumable(&desc.digest, desc.size, what, |from| src.open_at(desc, from), |n| progress.advance(&id, n))?;
    progress.finish(&id, "done");
    Ok(true)
}

/// Store the manifest `manifest_digest` (already in the store), fetch its
/// config and layers from `src`, unpack, and record `name` → the image.
pub fn complete(
    store: &Store,
    src: &dyn BlobSource,
    name: &str,
    manifest_digest: &Digest,
    index: Option<Digest>,
    progress: &dyn Progress,
) -> Result<(ImageRecord, IngestReport)> {
    let mut report = IngestReport::default();
    let m = store.manifest(manifest_digest)?;
    if m.config.size > MAX_CONFIG {
        return Err(ImageError::Unsupported(format!("{name}: config of {} bytes (limit {MAX_CONFIG})", m.config.size)));
    }
    if fetch_blob(store, src, &m.config, &format!("{name}: config {}", m.config.digest), &NoProgress)? {
        report.fetched_blobs += 1;
        report.fetched_bytes += m.config.size;
    }
    let config = store.config(&m.config.digest)?;
    if config.rootfs.diff_ids.len() != m.layers.len() {
        return Err(ImageError::Registry {
            reference: name.into(),
            what: format!("config lists {} layers, manifest {}", config.rootfs.diff_ids.len(), m.layers.len()),
        });
    }
    fetch_layers(store, src, name, &m, progress, &mut report)?;
    let (_chain, unpacked, reused) = unpack_image(store, &m, &config, name, progress)?;
    report.unpacked_layers = unpacked;
    report.reused_snapshots = reused;
    let rec = ImageRecord {
        name: name.to_string(),
        manifest: manifest_digest.clone(),
        config: m.config.digest.clone(),
        index,
        created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    };
    store.update_records(|r| {
        r.images.insert(name.to_string(), rec.clone());
        Ok(())
    })?;
    Ok((rec, report))
}

/// Fetch the layers that are missing, a few at a time.
fn fetch_layers(
    store: &Store,
    src: &dyn BlobSource,
    name: &str,
    m: &Manifest,
    progress: &dyn Progress,
    report: &mut IngestReport,
) -> Result<()> {
    let queue = Mutex::new(m.layers.iter().enumerate().collect::<Vec<_>>());
    let results: Mutex<Vec<Result<(bool, u64)>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_FETCHES.min(m.layers.len()) {
            s.spawn(|| loop {
                let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                let Some((i, l)) = next else { break };
                let what = format!("{name}: layer {} ({})", i + 1, l.digest);
                let r = fetch_blob(store, src, l, &what, progress).map(|f| (f, l.size));
                let failed = r.is_err();
                if let Ok(mut v) = results.lock() {
                    v.push(r);
                }
                if failed {
                    // Stop handing out work; the threads in flight finish their blob.
                    if let Ok(mut q) = queue.lock() {
                        q.clear();
                    }
                }
            });
        }
    });
    for r in results.into_inner().unwrap_or_default() {
        let (fetched, size) = r?;
        if fetched {
            report.fetched_blobs += 1;
            report.fetched_bytes += size;
        } else {
            report.reused_blobs += 1;
        }
    }
    Ok(())
}

/// Unpack each layer of `m` not yet unpacked into its chain-id snapshot.
/// A snapshot is built in ingest/ and renamed into snapshots/ when its diff
/// id checked out, so snapshots/ holds complete snapshots only.
pub fn unpack_image(
    store: &Store,
    m: &Manifest,
    config: &ImageConfig,
    name: &str,
    progress: &dyn Progress,
) -> Result<(Vec<Digest>, usize, usize)> {
    let chain = Digest::chain_ids(&config.rootfs.diff_ids);
    let (mut unpacked, mut reused) = (0, 0);
    for (i, (layer, chain_id)) in m.layers.iter().zip(&chain).enumerate() {
        let dir = store.snapshot_dir(chain_id);
        if dir.join("fs").is_dir() {
            reused += 1;
            continue;
        }
        // A concurrent pull of the same layer: wait for it, then reuse.
        let _busy = store.work_lock(&format!("{}.snapshot", chain_id.hex()))?;
        if dir.join("fs").is_dir() {
            reused += 1;
            continue;
        }
        let id = format!("unpack {}", layer.digest.short());
        progress.begin(&id, 0);
        let tmp = store.ingest_dir().join(temp_name("snapshot-"));
        let fs_dir = tmp.join("fs");
        std::fs::create_dir_all(&fs_dir).ctx(|| format!("create {}", fs_dir.display()))?;
        // Locked while unpacked, so prune leaves it alone.
        let _unpacking = super::store::try_lock(&tmp);
        let lowers: Vec<PathBuf> = chain[..i].iter().rev().map(|c| store.snapshot_dir(c).join("fs")).collect();
        let what = format!("{name}: layer {} ({})", i + 1, layer.digest);
        let result = store
            .open_blob(&layer.digest)
            .and_then(|f| unpack::unpack_layer(f, &fs_dir, &lowers, &what))
            .and_then(|diff| {
                let want = &config.rootfs.diff_ids[i];
                if &diff != want {
                    return Err(ImageError::DigestMismatch {
                        what: format!("{what}: uncompressed content (diff id)"),
                        expected: want.to_string(),
                        actual: diff.to_string(),
                    });
                }
                match std::fs::rename(&tmp, &dir) {
                    Ok(()) => Ok(()),
                    // Another pull unpacked the same layer meanwhile.
                    Err(_) if dir.join("fs").is_dir() => {
                        let _ = std::fs::remove_dir_all(&tmp);
                        Ok(())
                    }
                    Err(e) => Err(ImageError::io(format!("rename snapshot into {}", dir.display()), e)),
                }
            });
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        progress.finish(&id, "unpacked");
        unpacked += 1;
    }
    Ok((chain, unpacked, reused))
}

/// The snapshot directories of an image for overlay lowerdirs, top first.
pub fn lower_dirs(store: &Store, rec: &ImageRecord) -> Result<Vec<PathBuf>> {
    let chain = store.chain_ids(rec)?;
    let mut dirs = Vec::with_capacity(chain.len());
    for c in chain.iter().rev() {
        let d = store.snapshot_dir(c).join("fs");
        if !d.is_dir() {
            return Err(ImageError::NotFound(format!("{}: snapshot {c} (run `hull image pull` or `import` again)", rec.name)));
        }
        dirs.push(d);
    }
    Ok(dirs)
}

/// Check a manifest document has the type expected of it.
pub fn check_manifest_type(name: &str, media_type: &str) -> Result<()> {
    if manifest::is_manifest(media_type) || manifest::is_index(media_type) {
        Ok(())
    } else {
        Err(ImageError::Unsupported(format!("{name}: manifest media type {media_type} is not supported (schema1?)")))
    }
}
