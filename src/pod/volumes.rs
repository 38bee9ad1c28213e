//! Pod volumes: emptyDir (a directory per pod, or a tmpfs for
//! `medium: Memory`) and hostPath with Kubernetes' type checks; and the
//! OCI mounts for a container's volumeMounts, with subPath resolved safely
//! inside its volume.
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Volume, VolumeMount};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde_json::{json, Value};

use super::store::PodDir;
use super::validate::parse_quantity;
use crate::error::{Error, Result, SysContext};
use crate::linux::bind;
use crate::linux::safe_path::fd_path;

/// A volume ready on the host.
#[derive(Debug, Clone)]
pub struct HostVolume {
    pub name: String,
    pub path: PathBuf,
    /// A hostPath's type ("" when unchecked); None for an emptyDir.
    pub host_type: Option<String>,
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

/// Resolve `sub` beneath `volume` and return the path it names now: ".."
/// and symlinks may move around inside the volume but never out of it
/// (openat2 RESOLVE_BENEATH). A missing subPath is created as a directory,
/// as kubelet does. This is a check; the mount itself is made from an fd
/// (`stage_mount`), never from this path.
pub fn resolve_sub_path(volume: &Path, sub: &str) -> std::result::Result<PathBuf, String> {
    let fd = open_sub_path(volume, sub)?;
    std::fs::read_link(fd_path(&fd)).map_err(|e| e.to_string())
}

fn open_sub_path(volume: &Path, sub: &str) -> std::result::Result<OwnedFd, String> {
    if Path::new(sub).is_absolute() {
        return Err(format!("{sub:?} must be a relative path"));
    }
    let root = bind::open_root(volume).map_err(|e| e.to_string())?;
    bind::resolve_source(&root, Path::new(sub), true, "volume").map_err(|e| match e {
        Error::InvalidArgument(m) => m,
        e => e.to_string(),
    })
}

/// Whether a volumeMount's source is in a tree that may change under hull
/// (a subPath in any volume, or a hostPath), so it must be mounted from an
/// fd rather than by name.
pub fn needs_staging(vm: &VolumeMount, volumes: &[HostVolume]) -> bool {
    vm.sub_path.as_deref().is_some_and(|s| !s.is_empty()) || volumes.iter().any(|v| v.name == vm.name && v.host_type.is_some())
}

/// Resolve a volumeMount's source once (its subPath beneath the volume;
/// a hostPath checked against its type on the opened fd) and bind that fd
/// onto `target`, a path in the attempt's own directory that the container
/// cannot reach. The container's mount is then made from `target`.
pub fn stage_mount(vm: &VolumeMount, volumes: &[HostVolume], field: &str, target: &Path) -> Result<()> {
    let vol = volumes
        .iter()
        .find(|v| v.name == vm.name)
        .ok_or_else(|| Error::InvalidArgument(format!("{field}.name: no volume named {:?}", vm.name)))?;
    let fd = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => open_sub_path(&vol.path, sub).map_err(|e| Error::InvalidArgument(format!("{field}.subPath: {e}")))?,
        None => {
            // A hostPath is the manifest author's host path: its symlinks
            // are followed, once; the type is checked on what was opened.
            let fd = nix::fcntl::open(&vol.path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .sys_context(|| format!("{field}: open hostPath {}", vol.path.display()))?;
            let st = bind::fstat(&fd)?;
            if let Some(typ) = vol.host_type.as_deref() {
                check_type(st.st_mode, typ, &vol.path)
                    .map_err(|e| Error::InvalidArgument(format!("{field}: hostPath type check failed: {e}")))?;
            }
            fd
        }
    };
    bind::stage(&fd, target)
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
