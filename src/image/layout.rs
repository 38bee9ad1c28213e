//! Offline paths: import of an OCI image layout (directory or tarball) or
//! a docker-archive (`docker save`) tarball, and export to an OCI layout.
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::digest::Digest;
use super::error::{ImageError, IoContext, Result};
use super::ingest::{self, BlobSource, NoProgress};
use super::manifest::{self, Descriptor, Index, Platform};
use super::reference::Reference;
use super::store::{temp_name, Expect, ImageRecord, Store};

/// Blobs of an OCI layout directory.
struct LayoutSource {
    dir: PathBuf,
}

impl LayoutSource {
    fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }
    fn read(&self, desc: &Descriptor) -> Result<Vec<u8>> {
        if desc.size > ingest::MAX_MANIFEST {
            return Err(ImageError::Unsupported(format!(
                "{}: manifest of {} bytes (limit {})",
                desc.digest,
                desc.size,
                ingest::MAX_MANIFEST
            )));
        }
        let mut data = Vec::new();
        self.open(desc)?
            .take(desc.size + 1)
            .read_to_end(&mut data)
            .ctx(|| format!("read {}", self.path(&desc.digest).display()))?;
        Ok(data)
    }
}

impl BlobSource for LayoutSource {
    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let p = self.path(&desc.digest);
        Ok(Box::new(File::open(&p).ctx(|| format!("open {}", p.display()))?))
    }
}

/// Import every image of an OCI layout directory or tarball, or of a
/// docker-archive tarball. `name` names the image when the archive has
/// no name for it (or replaces the repository when it has only a tag).
pub fn import(store: &Store, path: &Path, name: Option<&str>) -> Result<Vec<ImageRecord>> {
    let _gc = store.gc_guard(false)?;
    let md = fs::metadata(path).ctx(|| format!("import {}", path.display()))?;
    if md.is_dir() {
        return import_layout(store, path, name);
    }
    // A tarball: unpacked (by the tar crate, which refuses names leading
    // outside) into a temp directory of the store, then read as a directory.
    let tmp = store.ingest_dir().join(temp_name("import-"));
    fs::create_dir(&tmp).ctx(|| format!("create {}", tmp.display()))?;
    let result = (|| {
        let f = File::open(path).ctx(|| format!("open {}", path.display()))?;
        let reader = super::unpack::decompress(f, &path.display().to_string())?;
        let mut ar = tar::Archive::new(reader);
        ar.set_preserve_permissions(false);
        ar.set_unpack_xattrs(false);
        ar.unpack(&tmp).ctx(|| format!("unpack {}", path.display()))?;
        if tmp.join("index.json").is_file() {
            import_layout(store, &tmp, name)
        } else if tmp.join("manifest.json").is_file() {
            import_docker_archive(store, &tmp, name)
        } else {
            Err(ImageError::InvalidArgument(format!(
                "{}: neither an OCI layout (index.json) nor a docker-archive (manifest.json)",
                path.display()
            )))
        }
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// The full image name for an archive's ref: a full reference as is, a
/// bare tag joined to `name`'s repository.
fn image_name(ref_name: Option<&str>, name: Option<&str>, what: &str) -> Result<String> {
    let r = match (ref_name, name) {
        (Some(r), Some(n)) if !r.contains('/') && !r.contains(':') => {
            let base = Reference::parse(n)?;
            format!("{}:{r}", base.name())
        }
        (_, Some(n)) => n.to_string(),
        (Some(r), None) if is_full_name(r) => r.to_string(),
        (Some(r), None) => {
            return Err(ImageError::InvalidArgument(format!("{what} is named only by the tag {r:?}; give a name with --name")));
        }
        (None, None) => {
            return Err(ImageError::InvalidArgument(format!("{what} has no name; give one with --name")));
        }
    };
    Ok(Reference::parse(&r)?.to_string())
}

/// An OCI ref.name may be a full reference or only a tag.
fn is_full_name(r: &str) -> bool {
    r.contains('/') || r.contains(':') || r.contains('@')
}

fn import_layout(store: &Store, dir: &Path, name: Option<&str>) -> Result<Vec<ImageRecord>> {
    let index_path = dir.join("index.json");
    let data = fs::read(&index_path).ctx(|| format!("read {}", index_path.display()))?;
    let top: Index = manifest::parse(&index_path.display().to_string(), &data)?;
    let src = LayoutSource { dir: dir.to_path_buf() };
    let mut out = Vec::new();
    let several = top.manifests.len() > 1;
    for desc in &top.manifests {
        let ref_name = desc.annotations.get(manifest::ANNOTATION_REF_NAME).map(String::as_str);
        // With several named images, --name only completes bare tags.
        let n = if several && ref_name.is_some_and(is_full_name) { None } else { name };
        let img = image_name(ref_name, n, &format!("{} image {}", dir.display(), desc.digest))?;
        let (manifest_digest, index) = resolve_platform(store, &src, desc, &img)?;
        let (rec, _) = ingest::complete(store, &src, &img, &manifest_digest, index, &NoProgress)?;
        out.push(rec);
    }
    Ok(out)
}

/// Store the document `desc` points at; for an index, also the manifest it
/// has for this host. Returns (manifest digest, index digest).
fn resolve_platform(store: &Store, src: &LayoutSource, desc: &Descriptor, img: &str) -> Result<(Digest, Option<Digest>)> {
    let data = src.read(desc)?;
    store.put_bytes(&data, Some(Expect { digest: &desc.digest, size: Some(desc.size) }), &format!("{img}: manifest"))?;
    let mt = manifest::sniff_media_type(&data).unwrap_or_else(|| desc.media_type.clone());
    ingest::check_manifest_type(img, &mt)?;
    if !manifest::is_index(&mt) {
        return Ok((desc.digest.clone(), None));
    }
    let index: Index = manifest::parse(&format!("{img}: index"), &data)?;
    let host = Platform::host();
    let chosen = index
        .select(&host)
        .ok_or_else(|| ImageError::NoPlatform { reference: img.to_string(), platform: host.to_string() })?;
    let mdata = src.read(chosen)?;
    store.put_bytes(&mdata, Some(Expect { digest: &chosen.digest, size: Some(chosen.size) }), &format!("{img}: manifest"))?;
    Ok((chosen.digest.clone(), Some(desc.digest.clone())))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// A file of the extracted archive, by its name in manifest.json.
fn archive_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let rel = Path::new(name);
    if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(ImageError::InvalidArgument(format!("docker-archive: bad file name {name:?}")));
    }
    Ok(dir.join(rel))
}

fn import_docker_archive(store: &Store, dir: &Path, name: Option<&str>) -> Result<Vec<ImageRecord>> {
    let mpath = dir.join("manifest.json");
    let data = fs::read(&mpath).ctx(|| format!("read {}", mpath.display()))?;
    let entries: Vec<DockerArchiveEntry> = manifest::parse("docker-archive manifest.json", &data)?;
    let mut out = Vec::new();
    for e in &entries {
        let put = |file: &str, what: &str| -> Result<(Digest, u64, Vec<u8>)> {
            let p = archive_file(dir, file)?;
            let f = File::open(&p).ctx(|| format!("open {}", p.display()))?;
            let mut head = [0u8; 4];
            let _ = File::open(&p).and_then(|mut h| h.read(&mut head));
            let (d, size) = store.write_blob(f, None, what, |_| {})?;
            Ok((d, size, head.to_vec()))
        };
        let (config, config_size, _) = put(&e.config, "docker-archive config")?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let (d, size, head) = put(l, &format!("docker-archive layer {l}"))?;
            let media_type = match super::unpack::detect(&head) {
                super::unpack::Compression::Gzip => manifest::OCI_LAYER_GZIP,
                super::unpack::Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                super::unpack::Compression::None => manifest::OCI_LAYER,
            };
            layers.push(Descriptor { media_type: media_type.into(), digest: d, size, platform: None, annotations: BTreeMap::new() });
        }
        let m = manifest::Manifest {
            schema_version: 2,
            media_type: Some(manifest::OCI_MANIFEST.into()),
            config: Descriptor {
                media_type: manifest::OCI_CONFIG.into(),
                digest: config,
                size: config_size,
                platform: None,
                annotations: BTreeMap::new(),
            },
            layers,
            annotations: BTreeMap::new(),
        };
        let mbytes = serde_json::to_vec(&m).map_err(|err| ImageError::json("encode manifest", err))?;
        let mdigest = store.put_bytes(&mbytes, None, "manifest")?;
        let tags: Vec<Option<&str>> = match &e.repo_tags {
            Some(t) if !t.is_empty() => t.iter().map(|s| Some(s.as_str())).collect(),
            _ => vec![None],
        };
        let src = LayoutSource { dir: dir.to_path_buf() }; // every blob is in the store already
        for t in tags {
            let n = if entries.len() > 1 && t.is_some() { None } else { name };
            let img = image_name(t, n, "docker-archive image")?;
            let (rec, _) = ingest::complete(store, &src, &img, &mdigest, None, &NoProgress)?;
            out.push(rec);
        }
    }
    Ok(out)
}

/// Write the image `rec` into the OCI layout `dir` (created, or added to),
/// named by its full reference in the ref.name annotation.
pub fn export(store: &Store, rec: &ImageRecord, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir.join("blobs/sha256")).ctx(|| format!("create {}", dir.display()))?;
    let m = store.manifest(&rec.manifest)?;
    let mut blobs = vec![rec.manifest.clone(), m.config.digest.clone()];
    blobs.extend(m.layers.iter().map(|l| l.digest.clone()));
    for d in &blobs {
        let dest = dir.join("blobs/sha256").join(d.hex());
        if dest.is_file() {
            continue;
        }
        let tmp = dir.join("blobs/sha256").join(temp_name(".tmp-"));
        if fs::hard_link(store.blob_path(d), &tmp).is_err() {
            fs::copy(store.blob_path(d), &tmp).ctx(|| format!("copy blob {d} to {}", dir.display()))?;
        }
        fs::rename(&tmp, &dest).ctx(|| format!("rename {}", dest.display()))?;
    }
    let mdata = store.read_blob(&rec.manifest)?;
    let media_type = manifest::sniff_media_type(&mdata).unwrap_or_else(|| manifest::OCI_MANIFEST.into());
    let index_path = dir.join("index.json");
    let mut index: Index = match fs::read(&index_path) {
        Ok(data) => manifest::parse(&index_path.display().to_string(), &data)?,
        Err(_) => {
            Index { schema_version: 2, media_type: Some(manifest::OCI_INDEX.into()), manifests: vec![], annotations: BTreeMap::new() }
        }
    };
    index.manifests.retain(|d| d.annotations.get(manifest::ANNOTATION_REF_NAME) != Some(&rec.name));
    let config = store.config(&rec.config)?;
    index.manifests.push(Descriptor {
        media_type,
        digest: rec.manifest.clone(),
        size: mdata.len() as u64,
        platform: Some(Platform { architecture: config.architecture, os: config.os, variant: config.variant }),
        annotations: BTreeMap::from([(manifest::ANNOTATION_REF_NAME.to_string(), rec.name.clone())]),
    });
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).ctx(|| format!("write {}/oci-layout", dir.display()))?;
    let tmp = dir.join(temp_name(".index.json-"));
    fs::write(&tmp, serde_json::to_vec_pretty(&index).map_err(|e| ImageError::json("encode index.json", e))?)
        .ctx(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, &index_path).ctx(|| format!("write {}", index_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names() {
        let n = |r: Option<&str>, name: Option<&str>| image_name(r, name, "archive");
        assert_eq!(n(Some("busybox:1.36"), None).unwrap(), "docker.io/library/busybox:1.36");
        assert_eq!(n(Some("quay.io/a/b:v1"), None).unwrap(), "quay.io/a/b:v1");
        // A bare tag (the OCI layout convention) takes its repository from --name.
        assert_eq!(n(Some("v2"), Some("example.com/app:x")).unwrap(), "example.com/app:v2");
        assert!(n(Some("v2"), None).unwrap_err().to_string().contains("--name"));
        // --name replaces a full name (single image).
        assert_eq!(n(Some("busybox:1"), Some("mine")).unwrap(), "docker.io/library/mine:latest");
        assert!(n(None, None).is_err());
        assert!(n(Some("Bad Name"), None).is_err());
        assert!(archive_file(Path::new("/x"), "../etc/passwd").is_err());
        assert!(archive_file(Path::new("/x"), "/etc/passwd").is_err());
        assert!(archive_file(Path::new("/x"), "blobs/sha256/ab").is_ok());
    }
}
