//! A container's rootfs from an image: an overlayfs whose lowerdirs are the
//! image's snapshots (top first) and whose upper and work directories are
//! the container's own. While mounted, a lease in the store keeps prune
//! from removing the snapshots underneath.
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use sha2::Digest as _;

use super::error::{ImageError, IoContext, Result};
use super::ingest;
use super::store::{ImageRecord, Store};

/// The kernel copies mount data into one page.
const MAX_MOUNT_DATA: usize = 4095;

/// Overlay options for these directories; refused (not truncated) when
/// they do not fit the kernel's one-page limit, or when a path holds a
/// character overlayfs uses as a separator.
pub fn overlay_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    let mut all: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    all.push(upper);
    all.push(work);
    for p in &all {
        let s = p.to_str().ok_or_else(|| ImageError::InvalidArgument(format!("{}: not UTF-8", p.display())))?;
        if s.contains([':', ',', '\\']) {
            return Err(ImageError::InvalidArgument(format!("{s}: overlayfs paths cannot contain ':', ',' or '\\'")));
        }
    }
    let lower: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    let data = format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), upper.display(), work.display());
    if data.len() > MAX_MOUNT_DATA {
        return Err(ImageError::Unsupported(format!(
            "overlay options for {} layers are {} bytes, over the kernel's {MAX_MOUNT_DATA}: use a shorter --image-root",
            lowers.len(),
            data.len()
        )));
    }
    Ok(data)
}

fn lease_name(target: &Path) -> String {
    format!("{:x}", sha2::Sha256::digest(target.as_os_str().as_encoded_bytes()))
}

/// Mount the image's rootfs at `target` with `rw_dir/upper` and
/// `rw_dir/work` (created) as its writable layer.
pub fn mount_rootfs(store: &Store, rec: &ImageRecord, target: &Path, rw_dir: &Path) -> Result<()> {
    let _gc = store.gc_guard(false)?;
    let lowers = ingest::lower_dirs(store, rec)?;
    let upper = rw_dir.join("upper");
    let work = rw_dir.join("work");
    for d in [&upper, &work, &target.to_path_buf()] {
        std::fs::create_dir_all(d).ctx(|| format!("create {}", d.display()))?;
    }
    let data = overlay_options(&lowers, &upper, &work)?;
    // The lease first: a prune between mount and lease must not find the
    // snapshots unreferenced, nor an `image rm` the image unused.
    let lease = lease_name(target);
    store.put_lease(&lease, &format!("the rootfs mounted at {}", target.display()), std::slice::from_ref(rec))?;
    if let Err(e) = mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(data.as_str())) {
        let _ = store.drop_lease(&lease);
        return Err(ImageError::io(format!("mount overlay of {} at {}", rec.name, target.display()), e));
    }
    Ok(())
}

/// Unmount what `mount_rootfs` mounted at `target` and drop its lease.
/// Unmounting something not mounted is not an error (idempotent cleanup).
pub fn unmount_rootfs(store: &Store, target: &Path) -> Result<()> {
    match umount2(target, MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(ImageError::io(format!("unmount {}", target.display()), e)),
    }
    store.drop_lease(&lease_name(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let l = vec![PathBuf::from("/s/2/fs"), PathBuf::from("/s/1/fs")];
        assert_eq!(
            overlay_options(&l, Path::new("/c/upper"), Path::new("/c/work")).unwrap(),
            "lowerdir=/s/2/fs:/s/1/fs,upperdir=/c/upper,workdir=/c/work"
        );
        assert!(overlay_options(&[PathBuf::from("/a:b")], Path::new("/u"), Path::new("/w")).is_err());
        let many: Vec<PathBuf> = (0..200).map(|i| PathBuf::from(format!("/var/lib/hull/images/snapshots/{i:064}/fs"))).collect();
        assert!(matches!(overlay_options(&many, Path::new("/u"), Path::new("/w")), Err(ImageError::Unsupported(_))));
    }
}
