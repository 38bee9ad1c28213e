//! ImageService over hull's image store: PullImage (pulls of one image in
//! flight at once share one download), ImageStatus, ListImages,
//! RemoveImage, ImageFsInfo.
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine;
use k8s_cri::v1 as cri;
use tonic::{Code, Status};
use tracing::info;

use super::config::DaemonConfig;
use super::errors::{from_crate, internal, invalid};
use super::service::blocking;
use crate::image::registry::{self, PullOptions};
use crate::image::store::{ImageRecord, Records, Store};
use crate::image::{Digest, Reference};

/// A pull's outcome, shared by every request that waited on it.
type PullResult = Result<String, (Code, String)>;

pub struct Images {
    store: Store,
    hosts_dir: PathBuf,
    insecure: Vec<String>,
    /// Pulls in flight, by reference and credentials.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<PullResult>>>>,
}

/// Every record naming image `id`.
fn names_of<'a>(recs: &'a Records, id: &Digest) -> Vec<&'a ImageRecord> {
    recs.images.values().filter(|r| &r.config == id).collect()
}

/// The records `key` names: a name (normalised), an id or id prefix, a
/// manifest digest, or `repo@digest` for an image pulled by tag.
fn resolve(store: &Store, recs: &Records, key: &str) -> Vec<ImageRecord> {
    let found = store.find(recs, key);
    if !found.is_empty() {
        return found;
    }
    let Ok(r) = Reference::parse(key) else {
        return Vec::new();
    };
    let Some(d) = &r.digest else {
        return Vec::new();
    };
    recs.images
        .values()
        .filter(|rec| {
            (&rec.manifest == d || rec.index.as_ref() == Some(d)) && Reference::parse(&rec.name).is_ok_and(|n| n.name() == r.name())
        })
        .cloned()
        .collect()
}

fn spec_of(image: Option<cri::ImageSpec>) -> Result<String, Status> {
    let image = image.ok_or_else(|| invalid("image", "missing"))?.image;
    if image.is_empty() {
        return Err(invalid("image.image", "empty"));
    }
    Ok(image)
}

/// The CRI view of image `id`: its tags, its repo digests (what it was
/// pulled by: the index if it came from one), size, and the user its
/// config runs as.
fn image_message(store: &Store, recs: &Records, id: &Digest) -> Result<cri::Image, Status> {
    let names = names_of(recs, id);
    let first = names.first().ok_or_else(|| internal(format!("image {id} has no name")))?;
    let mut tags = BTreeSet::new();
    let mut digests = BTreeSet::new();
    for rec in &names {
        let Ok(r) = Reference::parse(&rec.name) else {
            continue;
        };
        if r.digest.is_none() {
            tags.insert(rec.name.clone());
        }
        digests.insert(format!("{}@{}", r.name(), rec.index.as_ref().unwrap_or(&rec.manifest)));
    }
    let manifest = store.manifest(&first.manifest).map_err(from_crate)?;
    let config = store.config(id).map_err(from_crate)?;
    let size = manifest.layers.iter().map(|l| l.size).sum::<u64>() + manifest.config.size;
    let user = config.config.user.unwrap_or_default();
    let user = user.split(':').next().unwrap_or("");
    let (uid, username) = match user.parse::<i64>() {
        Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
        Err(_) if user.is_empty() => (Some(cri::Int64Value { value: 0 }), String::new()),
        Err(_) => (None, user.to_string()),
    };
    Ok(cri::Image {
        id: id.to_string(),
        repo_tags: tags.into_iter().collect(),
        repo_digests: digests.into_iter().collect(),
        size,
        uid,
        username,
        spec: Some(cri::ImageSpec { image: id.to_string(), ..Default::default() }),
        pinned: false,
    })
}

/// Credentials from a CRI AuthConfig: username/password, or `auth`
/// (base64 of `user:password`), and the two token forms.
fn auth_options(auth: Option<cri::AuthConfig>, opts: &mut PullOptions) -> Result<(), Status> {
    let Some(a) = auth else { return Ok(()) };
    if !a.username.is_empty() {
        opts.credentials = Some((a.username, a.password));
    } else if !a.auth.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|e| invalid("auth.auth", format!("not base64: {e}")))?;
        let text = String::from_utf8(raw).map_err(|_| invalid("auth.auth", "not UTF-8"))?;
        let (u, p) = text.split_once(':').ok_or_else(|| invalid("auth.auth", "expected base64 of user:password"))?;
        opts.credentials = Some((u.to_string(), p.to_string()));
    }
    if !a.identity_token.is_empty() {
        opts.identity_token = Some(a.identity_token);
    }
    if !a.registry_token.is_empty() {
        opts.registry_token = Some(a.registry_token);
    }
    Ok(())
}

impl Images {
    pub fn open(cfg: &DaemonConfig) -> crate::image::error::Result<Images> {
        Ok(Images {
            store: Store::open(&cfg.image_root())?,
            hosts_dir: cfg.hosts_dir.clone(),
            insecure: cfg.insecure_registries.clone(),
            inflight: Mutex::new(HashMap::new()),
        })
    }

    /// The first tag naming image `id`, if any (blocking).
    pub fn first_tag(&self, id: &str) -> Option<String> {
        let id = Digest::parse(id).ok()?;
        let recs = self.store.records().ok()?;
        names_of(&recs, &id).into_iter().map(|r| r.name.clone()).find(|n| !n.contains('@'))
    }

    /// The id of the image `key` names in the store (blocking).
    pub fn resolve_id(&self, key: &str) -> Result<Option<Digest>, Status> {
        let recs = self.store.records().map_err(from_crate)?;
        Ok(resolve(&self.store, &recs, key).first().map(|r| r.config.clone()))
    }

    pub async fn pull(self: Arc<Self>, req: cri::PullImageRequest) -> Result<cri::PullImageResponse, Status> {
        let image = spec_of(req.image)?;
        let reference = Reference::parse(&image).map_err(from_crate)?;
        let mut opts = PullOptions { insecure: self.insecure.clone(), hosts_dir: Some(self.hosts_dir.clone()), ..Default::default() };
        auth_options(req.auth, &mut opts)?;
        // Requests with other credentials do not share a pull: theirs might
        // be the ones that work.
        let key = format!("{reference}\n{:?}\n{:?}\n{:?}", opts.credentials, opts.identity_token, opts.registry_token);
        let cell = {
            let mut m = self.inflight.lock().map_err(|_| internal("pull table lock poisoned"))?;
            m.entry(key.clone()).or_default().clone()
        };
        let store = self.store.clone();
        let result = cell
            .get_or_init(|| async move {
                let started = std::time::Instant::now();
                let r = blocking(move || {
                    let (rec, rep) = registry::pull(&store, &reference, &opts, &crate::image::ingest::NoProgress).map_err(from_crate)?;
                    info!(
                        image = %rec.name, id = %rec.config, fetched_blobs = rep.fetched_blobs, fetched_bytes = rep.fetched_bytes,
                        unpacked_layers = rep.unpacked_layers, ms = started.elapsed().as_millis() as u64, "pulled"
                    );
                    Ok(rec.config.to_string())
                })
                .await;
                r.map_err(|s| (s.code(), s.message().to_string()))
            })
            .await
            .clone();
        // The first to get here forgets the pull: a later request asks the
        // registry again (the tag may have moved).
        if let Ok(mut m) = self.inflight.lock() {
            if m.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                m.remove(&key);
            }
        }
        result
            .map(|image_ref| cri::PullImageResponse { image_ref })
            .map_err(|(code, msg)| Status::new(code, msg))
    }

    /// NotFound is an empty response, as the kubelet expects.
    pub async fn status(self: Arc<Self>, req: cri::ImageStatusRequest) -> Result<cri::ImageStatusResponse, Status> {
        let key = spec_of(req.image)?;
        let verbose = req.verbose;
        blocking(move || {
            let recs = self.store.records().map_err(from_crate)?;
            let Some(rec) = resolve(&self.store, &recs, &key).into_iter().next() else {
                return Ok(cri::ImageStatusResponse::default());
            };
            let image = image_message(&self.store, &recs, &rec.config)?;
            let mut info = HashMap::new();
            if verbose {
                let config: serde_json::Value =
                    crate::image::manifest::parse("config", &self.store.read_blob(&rec.config).map_err(from_crate)?).map_err(from_crate)?;
                let chain = self.store.chain_ids(&rec).map_err(from_crate)?;
                let v = serde_json::json!({"manifest": rec.manifest, "index": rec.index, "chainID": chain.last(), "imageSpec": config});
                info.insert("info".to_string(), v.to_string());
            }
            Ok(cri::ImageStatusResponse { image: Some(image), info })
        })
        .await
    }

    pub async fn list(self: Arc<Self>, req: cri::ListImagesRequest) -> Result<cri::ListImagesResponse, Status> {
        let filter = req.filter.and_then(|f| f.image).map(|i| i.image).filter(|i| !i.is_empty());
        blocking(move || {
            let recs = self.store.records().map_err(from_crate)?;
            let ids: BTreeSet<Digest> = match &filter {
                Some(key) => resolve(&self.store, &recs, key).into_iter().map(|r| r.config).collect(),
                None => recs.images.values().map(|r| r.config.clone()).collect(),
            };
            let images = ids.iter().map(|id| image_message(&self.store, &recs, id)).collect::<Result<Vec<_>, _>>()?;
            Ok(cri::ListImagesResponse { images })
        })
        .await
    }

    /// By tag: that name goes. By id or digest: every name of the image.
    /// Removing what is not there succeeds.
    pub async fn remove(self: Arc<Self>, req: cri::RemoveImageRequest) -> Result<cri::RemoveImageResponse, Status> {
        let key = spec_of(req.image)?;
        blocking(move || {
            let recs = self.store.records().map_err(from_crate)?;
            let found = resolve(&self.store, &recs, &key);
            let by_tag = Reference::parse(&key).is_ok_and(|r| r.digest.is_none() && found.len() == 1 && found[0].name == r.to_string());
            let names: Vec<String> = if by_tag {
                vec![found[0].name.clone()]
            } else {
                let ids: BTreeSet<&Digest> = found.iter().map(|r| &r.config).collect();
                recs.images.values().filter(|r| ids.contains(&r.config)).map(|r| r.name.clone()).collect()
            };
            if names.is_empty() {
                return Ok(cri::RemoveImageResponse {});
            }
            // As containerd's CRI: the image record goes even while a
            // container uses it (the kubelet removes only images no
            // container uses); the content in use stays, kept by the
            // containers' rootfs leases, until they are removed.
            let deleted = self.store.remove_names(&names, false).map_err(from_crate)?;
            info!(names = ?names, deleted = ?deleted.iter().map(|d| d.to_string()).collect::<Vec<_>>(), "removed");
            Ok(cri::RemoveImageResponse {})
        })
        .await
    }

    /// The image store's use, and the rest of the state directory's (the
    /// containers' writable layers and logs).
    pub async fn fs_info(self: Arc<Self>, state_dir: PathBuf) -> Result<cri::ImageFsInfoResponse, Status> {
        blocking(move || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0);
            let usage = |mountpoint: &std::path::Path, bytes: u64, inodes: u64| cri::FilesystemUsage {
                timestamp: now,
                fs_id: Some(cri::FilesystemIdentifier { mountpoint: mountpoint.display().to_string() }),
                used_bytes: Some(cri::UInt64Value { value: bytes }),
                inodes_used: Some(cri::UInt64Value { value: inodes }),
            };
            let images = self.store.usage();
            let root = self.store.root().to_path_buf();
            let (mut bytes, mut inodes) = (0, 0);
            if let Ok(entries) = std::fs::read_dir(&state_dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p == root || root.starts_with(&p) {
                        continue;
                    }
                    let u = crate::image::store::usage_of(&p);
                    bytes += u.bytes;
                    inodes += u.inodes;
                }
            }
            Ok(cri::ImageFsInfoResponse {
                image_filesystems: vec![usage(&root, images.bytes, images.inodes)],
                container_filesystems: vec![usage(&state_dir, bytes, inodes)],
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_forms() {
        let mut o = PullOptions::default();
        auth_options(Some(cri::AuthConfig { username: "u".into(), password: "p".into(), ..Default::default() }), &mut o).unwrap();
        assert_eq!(o.credentials, Some(("u".into(), "p".into())));
        let mut o = PullOptions::default();
        let b = base64::engine::general_purpose::STANDARD.encode("alice:se:cret");
        auth_options(Some(cri::AuthConfig { auth: b, identity_token: "rt".into(), ..Default::default() }), &mut o).unwrap();
        assert_eq!(o.credentials, Some(("alice".into(), "se:cret".into())));
        assert_eq!(o.identity_token.as_deref(), Some("rt"));
        let e = auth_options(Some(cri::AuthConfig { auth: "!!".into(), ..Default::default() }), &mut PullOptions::default()).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().starts_with("auth.auth"), "{}", e.message());
    }
}
