//! Pod volumes, made on the host as the kubelet's volume manager makes
//! them: emptyDir (a directory in the pod's directory, or a tmpfs for
//! `medium: Memory`) and hostPath with Kubernetes' type checks. The
//! containers' volumeMounts become runtime mounts (`translate::mount`),
//! whose sources (and subPaths) the runtime layer resolves once and mounts
//! from an fd.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Volume;
use nix::sys::stat::Mode;

use super::store::PodDir;
pub use super::translate::HostVolume;
use super::validate::parse_quantity;
use crate::error::{Error, Result, SysContext};

/// Where a volume is on the host (emptyDir: under the pod's directory).
pub fn host_path(dir: &PodDir, v: &Volume) -> PathBuf {
    match &v.host_path {
        Some(hp) => PathBuf::from(&hp.path),
        None => dir.volume(&v.name),
    }
}

/// The host volumes of a pod whose volumes `prepare` already made.
pub fn existing(dir: &PodDir, volumes: &[Volume]) -> Vec<HostVolume> {
    volumes
        .iter()
        .map(|v| HostVolume { name: v.name.clone(), path: host_path(dir, v), host_type: host_type(v) })
        .collect()
}

fn host_type(v: &Volume) -> Option<String> {
    v.host_path.as_ref().map(|hp| hp.type_.clone().unwrap_or_default())
}

/// Create or check every volume of the pod. On error, what was mounted is
/// returned in the error path's cleanup list by the caller via `host_mounts`.
pub fn prepare(dir: &PodDir, volumes: &[Volume], host_mounts: &mut Vec<PathBuf>) -> Result<Vec<HostVolume>> {
    let mut out = Vec::new();
    for (i, v) in volumes.iter().enumerate() {
        let field = format!("spec.volumes[{i}] ({})", v.name);
        crate::oci::state::validate_id(&v.name).map_err(|_| Error::InvalidArgument(format!("{field}: invalid volume name")))?;
        if let Some(ed) = &v.empty_dir {
            let path = host_path(dir, v);
            std::fs::create_dir_all(&path).sys_context(|| format!("create emptyDir {}", path.display()))?;
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
            // A size limit is enforced by the kernel: the volume is a tmpfs
            // of that size (for the default medium too, where kubelet would
            // evict the pod instead: hull refuses writes past the limit).
            if memory || size.is_some() {
                let data = match size {
                    // size=0 would be a tmpfs without a limit.
                    Some(bytes) if bytes < 1.0 => {
                        return Err(Error::InvalidArgument(format!("{field}.emptyDir.sizeLimit: must be at least 1 byte")))
                    }
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
            let path = host_path(dir, v);
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
