//! Pod volumes: emptyDir (a directory per pod, or a tmpfs for
//! `medium: Memory`) and hostPath with Kubernetes' type checks; and the
//! OCI mounts for a container's volumeMounts, with subPath resolved safely
//! inside its volume.
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Volume, VolumeMount};
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use serde_json::{json, Value};

use super::manifest::parse_quantity;
use super::store::PodDir;
use crate::error::{Error, Result, SysContext};

/// A volume ready on the host.
#[derive(Debug, Clone)]
pub struct HostVolume {
    pub name: String,
    pub path: PathBuf,
}

/// Where a volume is on the host (emptyDir: under the pod's directory).
pub fn host_path(dir: &PodDir, v: &Volume) -> PathBuf {
    match &v.host_path {
        Some(hp) => PathBuf::from(&hp.path),
        None => dir.volume(&v.name),
    }
}

/// The host volumes of a pod whose volumes `prepare` already made.
pub fn existing(dir: &PodDir, volumes: &[Volume]) -> Vec<HostVolume> {
    volumes.iter().map(|v| HostVolume { name: v.name.clone(), path: host_path(dir, v) }).collect()
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
            let size = ed.size_limit.as_ref().map(|q| {
                parse_quantity(&q.0).ok_or_else(|| Error::InvalidArgument(format!("{field}.emptyDir.sizeLimit: bad quantity {:?}", q.0)))
            }).transpose()?;
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
                    Some(bytes) => format!("size={},mode=0777", bytes as u64),
                    None => "mode=0777".to_string(),
                };
                nix::mount::mount(Some("tmpfs"), &path, Some("tmpfs"), nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV, Some(data.as_str()))
                    .sys_context(|| format!("mount tmpfs for emptyDir {}", v.name))?;
                host_mounts.push(path.clone());
            } else {
                let _ = nix::sys::stat::fchmodat(nix::fcntl::AT_FDCWD, &path, Mode::from_bits_truncate(0o777), nix::sys::stat::FchmodatFlags::FollowSymlink);
            }
            out.push(HostVolume { name: v.name.clone(), path });
        } else if let Some(hp) = &v.host_path {
            let path = host_path(dir, v);
            if !path.is_absolute() {
                return Err(Error::InvalidArgument(format!("{field}.hostPath.path: {} is not absolute", hp.path)));
            }
            check_host_path(&path, hp.type_.as_deref().unwrap_or(""))
                .map_err(|e| Error::InvalidArgument(format!("{field}: hostPath type check failed: {e}")))?;
            out.push(HostVolume { name: v.name.clone(), path });
        } else {
            return Err(Error::unsupported(format!("{field}"), "only emptyDir and hostPath volumes"));
        }
    }
    Ok(out)
}

/// Kubernetes' hostPath types, with the messages kubelet gives.
pub fn check_host_path(path: &Path, typ: &str) -> std::result::Result<(), String> {
    let meta = std::fs::metadata(path);
    let p = path.display();
    match typ {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(format!("{p} is not a directory")),
            Err(_) => std::fs::create_dir_all(path).map_err(|e| format!("create {p}: {e}")).map(|_| {
                let _ = nix::sys::stat::fchmodat(nix::fcntl::AT_FDCWD, path, Mode::from_bits_truncate(0o755), nix::sys::stat::FchmodatFlags::FollowSymlink);
            }),
        },
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => Err(format!("{p} is not a directory")),
        },
        "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(format!("{p} is not a file")),
            Err(_) => std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map(drop)
                .map_err(|e| format!("create {p}: {e}")),
        },
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => Err(format!("{p} is not a file")),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => Err(format!("{p} is not a socket file")),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => Err(format!("{p} is not a character device")),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => Err(format!("{p} is not a block device")),
        },
        other => Err(format!("unknown hostPath type {other:?}")),
    }
}

/// The OCI mount for one volumeMount.
pub fn oci_mount(vm: &VolumeMount, volumes: &[HostVolume], field: &str) -> Result<Value> {
    let vol = volumes
        .iter()
        .find(|v| v.name == vm.name)
        .ok_or_else(|| Error::InvalidArgument(format!("{field}.name: no volume named {:?}", vm.name)))?;
    if !vm.mount_path.starts_with('/') {
        return Err(Error::InvalidArgument(format!("{field}.mountPath: {:?} is not absolute", vm.mount_path)));
    }
    let source = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => resolve_sub_path(&vol.path, sub).map_err(|e| Error::InvalidArgument(format!("{field}.subPath: {e}")))?,
        None => vol.path.clone(),
    };
    let mut options = vec!["rbind".to_string()];
    options.push(if vm.read_only.unwrap_or(false) { "ro" } else { "rw" }.into());
    options.push(
        match vm.mount_propagation.as_deref().unwrap_or("None") {
            "None" => "rprivate",
            "HostToContainer" => "rslave",
            "Bidirectional" => "rshared",
            other => return Err(Error::InvalidArgument(format!("{field}.mountPropagation: unknown value {other:?}"))),
        }
        .into(),
    );
    Ok(json!({"destination": vm.mount_path, "type": "bind", "source": source, "options": options}))
}

/// Resolve `sub` beneath `volume`: ".." and symlinks may move around inside
/// the volume but never out of it (openat2 RESOLVE_BENEATH). A missing
/// subPath is created as a directory, as kubelet does.
pub fn resolve_sub_path(volume: &Path, sub: &str) -> std::result::Result<PathBuf, String> {
    if Path::new(sub).is_absolute() {
        return Err(format!("{sub:?} must be a relative path"));
    }
    let root = nix::fcntl::open(volume, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("open volume {}: {e}", volume.display()))?;
    let how = || OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match nix::fcntl::openat2(&root, sub, how()) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => {
            // Create it inside the volume (only plain names, resolved beneath).
            let mut sofar = PathBuf::new();
            for comp in Path::new(sub).components() {
                sofar.push(comp);
                if nix::fcntl::openat2(&root, &sofar, how()).is_err() {
                    let parent = sofar.parent().map(Path::to_path_buf).unwrap_or_default();
                    let pfd = if parent.as_os_str().is_empty() {
                        nix::unistd::dup(&root).map_err(|e| e.to_string())?
                    } else {
                        nix::fcntl::openat2(&root, &parent, how()).map_err(|e| format!("{sub:?}: {e}"))?
                    };
                    let dir = nix::fcntl::open(&crate::linux::safe_path::fd_path(&pfd), OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                        .map_err(|e| e.to_string())?;
                    nix::sys::stat::mkdirat(&dir, sofar.file_name().unwrap_or_default(), Mode::from_bits_truncate(0o755))
                        .map_err(|e| format!("create {sub:?} in the volume: {e}"))?;
                }
            }
            nix::fcntl::openat2(&root, sub, how()).map_err(|e| format!("{sub:?}: {e}"))?
        }
        Err(nix::errno::Errno::EXDEV) => return Err(format!("{sub:?} leads outside the volume")),
        Err(e) => return Err(format!("{sub:?}: {e}")),
    };
    let real = std::fs::read_link(crate::linux::safe_path::fd_path(&fd)).map_err(|e| e.to_string())?;
    let vol_real = std::fs::canonicalize(volume).map_err(|e| e.to_string())?;
    if !real.starts_with(&vol_real) {
        return Err(format!("{sub:?} leads outside the volume"));
    }
    Ok(real)
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
    fn sub_path_cannot_escape_through_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let vol = t.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        std::os::unix::fs::symlink("/etc", vol.join("evil")).unwrap();
        std::os::unix::fs::symlink("../..", vol.join("up")).unwrap();
        assert!(resolve_sub_path(&vol, "evil").unwrap_err().contains("outside"));
        assert!(resolve_sub_path(&vol, "up/x").unwrap_err().contains("outside"));
        assert!(resolve_sub_path(&vol, "../x").unwrap_err().contains("outside"));
        let made = resolve_sub_path(&vol, "a/b").unwrap();
        assert!(made.ends_with("vol/a/b") && made.is_dir());
    }

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
