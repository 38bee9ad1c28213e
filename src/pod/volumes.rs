//! Pod volumes, made on the host as the kubelet's volume manager makes
//! them: emptyDir (a directory on disk under the state directory,
//! `<state dir>/pods/<uid>/volumes/<name>` as the kubelet's
//! `/var/lib/kubelet/pods/<uid>/volumes`, or a tmpfs for `medium: Memory`)
//! and hostPath with Kubernetes' type checks. A disk emptyDir's sizeLimit
//! is enforced by eviction ([`super::eviction`]), not by the filesystem. The
//! containers' volumeMounts become runtime mounts (`translate::mount`),
//! whose sources (and subPaths) the runtime layer resolves once and mounts
//! from an fd.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Volume;
use nix::sys::stat::Mode;

pub use super::translate::HostVolume;
use super::validate::parse_quantity;
use crate::error::{Error, Result, SysContext};

/// Where a volume is on the host (emptyDir: in the pod's volumes
/// directory, `volumes_dir`).
pub fn host_path(volumes_dir: &Path, v: &Volume) -> PathBuf {
    match &v.host_path {
        Some(hp) => PathBuf::from(&hp.path),
        None => volumes_dir.join(&v.name),
    }
}

/// The pod's directory under the state directory, whose `volumes/` holds
/// its emptyDirs.
pub fn pod_state_dir(state_dir: &Path, uid: &str) -> PathBuf {
    state_dir.join("pods").join(uid)
}

/// The emptyDirs' directory in a pod's state directory.
pub fn volumes_dir(pod_state: &Path) -> PathBuf {
    pod_state.join("volumes")
}

/// A pod uid names a directory: a Kubernetes UID (a UUID) or another
/// name of letters, digits, `-`, `_` and `.`, at most 128 bytes.
pub fn check_uid(uid: &str) -> Result<()> {
    let ok = !uid.is_empty()
        && uid.len() <= 128
        && uid != "."
        && uid != ".."
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        let shown: String = uid.chars().take(64).collect();
        return Err(Error::InvalidArgument(format!("metadata.uid {shown:?}: at most 128 letters, digits, '-', '_' or '.'")));
    }
    Ok(())
}

/// The host volumes of a pod whose volumes `prepare` already made.
pub fn existing(volumes_dir: &Path, volumes: &[Volume]) -> Vec<HostVolume> {
    volumes
        .iter()
        .map(|v| HostVolume { name: v.name.clone(), path: host_path(volumes_dir, v), host_type: host_type(v) })
        .collect()
}

fn host_type(v: &Volume) -> Option<String> {
    v.host_path.as_ref().map(|hp| hp.type_.clone().unwrap_or_default())
}

/// Create or check every volume of the pod. The pod's state directory
/// `pod_state` is made (only if it has an emptyDir) and, once made, set in
/// `made_state` for the caller to record and remove; tmpfs mounts are
/// listed in `host_mounts` before they are made. On error the caller
/// undoes both.
pub fn prepare(
    pod_state: &Path,
    volumes: &[Volume],
    made_state: &mut Option<PathBuf>,
    host_mounts: &mut Vec<PathBuf>,
    owner: &str,
) -> Result<Vec<HostVolume>> {
    let mut out = Vec::new();
    let vdir = volumes_dir(pod_state);
    for (i, v) in volumes.iter().enumerate() {
        let field = format!("spec.volumes[{i}] ({})", v.name);
        crate::oci::state::validate_id(&v.name).map_err(|_| Error::InvalidArgument(format!("{field}: invalid volume name")))?;
        if let Some(ed) = &v.empty_dir {
            if made_state.is_none() {
                make_pod_state(pod_state, owner)?;
                *made_state = Some(pod_state.to_path_buf());
            }
            match std::fs::create_dir(&vdir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::sys(format!("create {}", vdir.display()), e));
                }
                _ => {}
            }
            let path = host_path(&vdir, v);
            std::fs::create_dir(&path).sys_context(|| format!("create emptyDir {}", path.display()))?;
            let size = ed
                .size_limit
                .as_ref()
                .map(|q| parse_quantity(&q.0).map_err(|e| Error::InvalidArgument(format!("{field}.emptyDir.sizeLimit: {e}"))))
                .transpose()?;
            let memory = match ed.medium.as_deref().unwrap_or("") {
                "" => false,
                "Memory" => true,
                other => return Err(Error::unsupported(format!("{field}.emptyDir.medium {other:?}"), "only \"\" and \"Memory\"")),
            };
            if size.is_some_and(|bytes| bytes < 1.0) {
                return Err(Error::InvalidArgument(format!("{field}.emptyDir.sizeLimit: must be at least 1 byte")));
            }
            // Memory: a tmpfs of the limit's size (the kernel enforces it).
            // On disk: a plain directory; the supervisor measures it and
            // evicts the pod past its sizeLimit, as the kubelet does.
            if memory {
                let data = match size {
                    // size=0 would be a tmpfs without a limit.
                    Some(bytes) => format!("size={},mode=0777", bytes.ceil() as u64),
                    None => "mode=0777".to_string(),
                };
                nix::mount::mount(
                    Some("tmpfs"),
                    &path,
                    Some("tmpfs"),
                    nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                    Some(data.as_str()),
                )
                .sys_context(|| format!("mount tmpfs for emptyDir {}", v.name))?;
                host_mounts.push(path.clone());
            } else {
                let _ = nix::sys::stat::fchmodat(
                    nix::fcntl::AT_FDCWD,
                    &path,
                    Mode::from_bits_truncate(0o777),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                );
            }
            out.push(HostVolume { name: v.name.clone(), path, host_type: None });
        } else if let Some(hp) = &v.host_path {
            let path = host_path(&vdir, v);
            if !path.is_absolute() {
                return Err(Error::InvalidArgument(format!("{field}.hostPath.path: {} is not absolute", hp.path)));
            }
            check_host_path(&path, hp.type_.as_deref().unwrap_or(""))
                .map_err(|e| Error::InvalidArgument(format!("{field}: hostPath type check failed: {e}")))?;
            out.push(HostVolume { name: v.name.clone(), path, host_type: host_type(v) });
        } else {
            return Err(Error::unsupported(field.clone(), "only emptyDir and hostPath volumes"));
        }
    }
    Ok(out)
}

/// The pod's state directory, new (a uid in use by another pod is an
/// error, and that pod's directory is left alone).
pub fn make_pod_state(pod_state: &Path, owner: &str) -> Result<()> {
    let exists = || Error::AlreadyExists(format!("pod state directory {} exists: another pod has this metadata.uid", pod_state.display()));
    if let Some(parent) = pod_state.parent() {
        std::fs::create_dir_all(parent).sys_context(|| format!("create {}", parent.display()))?;
    }
    if pod_state.exists() {
        return Err(exists());
    }
    // Made whole under a name of this owner's, then renamed in: the
    // directory at the uid's name is never without its owner, and a rename
    // onto one another pod made (not empty) fails.
    let new = pod_state_in_making(pod_state, owner);
    match std::fs::create_dir(&new) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(Error::sys(format!("create {}", new.display()), e)),
        _ => {}
    }
    crate::runtime::record::write_bytes_atomic(&new.join(OWNER_FILE), owner.as_bytes())?;
    match std::fs::rename(&new, pod_state) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&new);
            match e.raw_os_error() {
                Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => Err(exists()),
                _ => Err(Error::sys(format!("rename {} to {}", new.display(), pod_state.display()), e)),
            }
        }
    }
}

/// The file in a pod's state directory that names the pod it belongs to.
const OWNER_FILE: &str = "owner";

/// Where [`make_pod_state`] makes an owner's state directory before it is
/// renamed in: a name of its own (a hash of the owner), beside it.
fn pod_state_in_making(pod_state: &Path, owner: &str) -> PathBuf {
    use sha2::Digest as _;
    let uid = pod_state.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let hash = format!("{:x}", sha2::Sha256::digest(owner.as_bytes()));
    pod_state.with_file_name(format!(".{uid}.new-{}", &hash[..16]))
}

/// Whether the state directory at `pod_state` is `owner`'s. Two pods of one
/// metadata.uid both record the directory before either makes it (a run
/// killed in between keeps the record): the other's is not touched. One
/// without an owner file was made before hull wrote them: the record's.
pub fn owns_pod_state(pod_state: &Path, owner: &str) -> bool {
    match std::fs::read(pod_state.join(OWNER_FILE)) {
        Ok(text) => text == owner.as_bytes(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Remove a pod's state directory (its emptyDirs; tmpfs ones unmounted
/// first by the caller), and one `owner` was making. Gone already is fine.
pub fn remove_pod_state(pod_state: &Path, owner: &str) -> Result<()> {
    remove_pod_state_in_making(pod_state, owner)?;
    remove_dir_if_there(pod_state)
}

/// Remove the directory `owner` was making for `pod_state` (a run killed
/// before its rename), if there is one.
pub fn remove_pod_state_in_making(pod_state: &Path, owner: &str) -> Result<()> {
    remove_dir_if_there(&pod_state_in_making(pod_state, owner))
}

fn remove_dir_if_there(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::sys(format!("remove {}", dir.display()), e)),
        _ => Ok(()),
    }
}

/// Kubernetes' hostPath types, with the messages kubelet gives.
pub fn check_host_path(path: &Path, typ: &str) -> std::result::Result<(), String> {
    let meta = std::fs::metadata(path);
    let p = path.display();
    match (typ, &meta) {
        ("DirectoryOrCreate", Err(_)) => {
            std::fs::create_dir_all(path).map_err(|e| format!("create {p}: {e}"))?;
            let _ = nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                path,
                Mode::from_bits_truncate(0o755),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            );
            return Ok(());
        }
        ("FileOrCreate", Err(_)) => {
            return std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map(drop)
                .map_err(|e| format!("create {p}: {e}"));
        }
        _ => {}
    }
    check_type(meta.map(|m| m.mode()).unwrap_or(0), typ, path)
}

/// `check_host_path`'s type rules on an already opened file's mode.
fn check_type(mode: libc::mode_t, typ: &str, path: &Path) -> std::result::Result<(), String> {
    let fmt = mode & libc::S_IFMT;
    let want = match typ {
        "" => return Ok(()),
        "Directory" | "DirectoryOrCreate" => (libc::S_IFDIR, "a directory"),
        "File" | "FileOrCreate" => (libc::S_IFREG, "a file"),
        "Socket" => (libc::S_IFSOCK, "a socket file"),
        "CharDevice" => (libc::S_IFCHR, "a character device"),
        "BlockDevice" => (libc::S_IFBLK, "a block device"),
        other => return Err(format!("unknown hostPath type {other:?}")),
    };
    if fmt == want.0 {
        Ok(())
    } else {
        Err(format!("{} is not {}", path.display(), want.1))
    }
}

/// Undo what `prepare` mounted.
pub fn unmount_all(paths: &[PathBuf]) {
    for p in paths.iter().rev() {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_path_types() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, "").unwrap();
        assert!(check_host_path(&f, "File").is_ok());
        assert_eq!(check_host_path(&f, "Directory").unwrap_err(), format!("{} is not a directory", f.display()));
        let d = t.path().join("new/dir");
        check_host_path(&d, "DirectoryOrCreate").unwrap();
        assert!(d.is_dir());
        let nf = t.path().join("nf");
        check_host_path(&nf, "FileOrCreate").unwrap();
        assert!(nf.is_file());
        assert!(check_host_path(Path::new("/dev/null"), "CharDevice").is_ok());
        assert!(check_host_path(&f, "Socket").is_err());
        assert!(check_host_path(&f, "Bogus").is_err());
    }
}
