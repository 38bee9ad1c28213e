//! A container's root filesystem: an overlay over an image of hull's store
//! (with the store's lease), an overlay over a local directory, or the
//! directory itself when the root is read-only. The writable layer lives
//! under the state directory (on disk, not in /run's tmpfs).
use std::path::{Path, PathBuf};

use super::error::{Result, RuntimeError};
use super::record::RootfsRecord;
use crate::image::manifest::ImageConfig;
use crate::image::store::{ImageRecord, Store};

/// Where an image reference points.
pub enum Source {
    Dir(PathBuf),
    Store(Box<StoreImage>),
}

pub struct StoreImage {
    pub store: Store,
    pub record: ImageRecord,
    pub config: ImageConfig,
}

impl Source {
    pub fn config(&self) -> Option<&ImageConfig> {
        match self {
            Source::Dir(_) => None,
            Source::Store(i) => Some(&i.config),
        }
    }

    /// What the image resolved to: the image's manifest digest, or the path.
    pub fn image_ref(&self) -> String {
        match self {
            Source::Dir(d) => d.display().to_string(),
            Source::Store(i) => i.record.manifest.to_string(),
        }
    }
}

/// Resolve `image` (a store reference, an absolute path or `dir:PATH`).
/// `field` names it in errors.
pub fn resolve(image: &str, field: &str, image_root: &Path) -> Result<Source> {
    let path = image.strip_prefix("dir:").unwrap_or(image);
    if path.starts_with('/') {
        let p = PathBuf::from(path);
        if !p.is_dir() {
            return Err(RuntimeError::invalid(format!("{field}: {} is not a directory", p.display())));
        }
        return Ok(Source::Dir(p));
    }
    if image.is_empty() {
        return Err(RuntimeError::invalid(format!("{field}: missing")));
    }
    let not_found = || {
        RuntimeError::not_found(format!(
            "{field} {image:?}: not in the image store {} (hull image pull or import it first)",
            image_root.display()
        ))
    };
    if !image_root.exists() {
        return Err(not_found());
    }
    let store = Store::open(image_root).map_err(|e| RuntimeError::from(crate::Error::from(e)))?;
    let recs = store.records().map_err(|e| RuntimeError::from(crate::Error::from(e)))?;
    let record = store.find(&recs, image).into_iter().next().ok_or_else(not_found)?;
    let config = store.config(&record.config).map_err(|e| RuntimeError::from(crate::Error::from(e)))?;
    Ok(Source::Store(Box::new(StoreImage { store, record, config })))
}

/// What [`mount`] will make of `source` at `rw_dir/rootfs`: recorded
/// before it is mounted ([`unmount`] of what was never mounted is a no-op).
pub fn plan(source: &Source, rw_dir: &Path, image_root: &Path, readonly: bool) -> RootfsRecord {
    let target = rw_dir.join("rootfs");
    match source {
        Source::Dir(dir) if readonly => RootfsRecord::Direct(dir.clone()),
        Source::Dir(_) => RootfsRecord::Overlay(target),
        Source::Store(_) => RootfsRecord::Image { mountpoint: target, image_root: image_root.to_path_buf() },
    }
}

/// Make the rootfs at `rw_dir/rootfs` (its writable layer in `rw_dir`).
pub fn mount(source: &Source, rw_dir: &Path, image_root: &Path, readonly: bool) -> Result<RootfsRecord> {
    let planned = plan(source, rw_dir, image_root, readonly);
    match (source, &planned) {
        (Source::Dir(dir), RootfsRecord::Overlay(target)) => mount_overlay(dir, rw_dir, target)?,
        (Source::Store(i), RootfsRecord::Image { mountpoint, .. }) => {
            crate::image::rootfs::mount_rootfs(&i.store, &i.record, mountpoint, rw_dir)
                .map_err(|e| RuntimeError::from(crate::Error::from(e)))?
        }
        _ => {}
    }
    Ok(planned)
}

/// The directory the container's root is.
pub fn path(r: &RootfsRecord) -> &Path {
    match r {
        RootfsRecord::Direct(p) | RootfsRecord::Overlay(p) => p,
        RootfsRecord::Image { mountpoint, .. } => mountpoint,
    }
}

/// An overlay with `lower` under `rw_dir/upper` mounted at `target`.
pub fn mount_overlay(lower: &Path, rw_dir: &Path, target: &Path) -> Result<()> {
    let upper = rw_dir.join("upper");
    let work = rw_dir.join("work");
    for d in [&upper, &work, &target.to_path_buf()] {
        std::fs::create_dir_all(d)
            .map_err(|e| RuntimeError::with_source(super::ErrorKind::Internal, format!("create {}", d.display()), e))?;
    }
    let data = crate::image::rootfs::overlay_options(&[lower.to_path_buf()], &upper, &work)
        .map_err(|e| RuntimeError::from(crate::Error::from(e)))?;
    nix::mount::mount(Some("overlay"), target, Some("overlay"), nix::mount::MsFlags::empty(), Some(data.as_str())).map_err(|e| {
        RuntimeError::with_source(
            super::ErrorKind::Internal,
            format!("mount overlay rootfs at {}", target.display()),
            std::io::Error::from(e),
        )
    })
}

/// Undo [`mount`] (idempotent).
pub fn unmount(r: &RootfsRecord) {
    match r {
        RootfsRecord::Direct(_) => {}
        RootfsRecord::Overlay(p) => {
            let _ = nix::mount::umount2(p.as_path(), nix::mount::MntFlags::MNT_DETACH);
        }
        RootfsRecord::Image { mountpoint, image_root } => match Store::open(image_root) {
            Ok(store) => {
                if let Err(e) = crate::image::rootfs::unmount_rootfs(&store, mountpoint) {
                    log::warn!("unmount {}: {e}", mountpoint.display());
                }
            }
            Err(_) => {
                let _ = nix::mount::umount2(mountpoint.as_path(), nix::mount::MntFlags::MNT_DETACH);
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record written before the mount is the one the mount returns.
    #[test]
    fn the_planned_rootfs_is_the_mounted_one() {
        let tmp = tempfile::tempdir().unwrap();
        let lower = tmp.path().join("lower");
        std::fs::create_dir(&lower).unwrap();
        let src = Source::Dir(lower.clone());
        let rw = tmp.path().join("c");
        // Read-only: the directory itself, nothing mounted.
        let ro = plan(&src, &rw, Path::new("/nonexistent"), true);
        assert_eq!(ro, RootfsRecord::Direct(lower));
        assert_eq!(mount(&src, &rw, Path::new("/nonexistent"), true).unwrap(), ro);
        assert_eq!(plan(&src, &rw, Path::new("/i"), false), RootfsRecord::Overlay(rw.join("rootfs")));
    }
}
