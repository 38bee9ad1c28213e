//! `hull image bundle`: an OCI bundle from an image — config.json from the
//! image config and the runtime's default spec, rootfs an overlay of the
//! image's snapshots with a writable layer inside the bundle (or, with
//! `--copy` or without overlayfs, a copy of the merged layers).
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::error::{ImageError, IoContext, Result};
use super::manifest::ImageConfig;
use super::rootfs;
use super::store::{ImageRecord, Store};
use crate::linux::safe_path::{self, Create};

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The bundle's private directory: upper and work dirs, and the record.
const STATE_DIR: &str = ".hull-image";

/// The process arguments, with the Kubernetes / containerd CRI rules:
/// a command replaces the image's Entrypoint *and* Cmd; args alone replace
/// Cmd and keep the Entrypoint; neither runs Entrypoint + Cmd.
pub fn process_args(image: &ImageConfig, command: &[String], args: &[String]) -> Result<Vec<String>> {
    let c = &image.config;
    let out: Vec<String> = if !command.is_empty() {
        command.iter().chain(args).cloned().collect()
    } else if !args.is_empty() {
        c.entrypoint.iter().flatten().chain(args).cloned().collect()
    } else {
        c.entrypoint.iter().flatten().chain(c.cmd.iter().flatten()).cloned().collect()
    };
    if out.is_empty() {
        return Err(ImageError::InvalidArgument("the image has no Entrypoint or Cmd: give a command".into()));
    }
    Ok(out)
}

/// The environment: the image's, with a default PATH if it has none, then
/// `extra` (KEY=VALUE) replacing or adding by key.
pub fn process_env(image: &ImageConfig, extra: &[String]) -> Vec<String> {
    let mut env: Vec<String> = image.config.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    for e in extra {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        match env.iter_mut().find(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) == key) {
            Some(slot) => *slot = e.clone(),
            None => env.push(e.clone()),
        }
    }
    env
}

/// Read a file of the rootfs (/etc/passwd...) resolving it inside the root.
fn read_in_root(root: &Path, path: &str) -> Option<String> {
    let fd = nix::fcntl::open(
        root,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let f = safe_path::open_in_root(&fd, Path::new(path), Create::Nothing).ok()??;
    let mut s = String::new();
    use std::io::Read;
    std::fs::File::open(safe_path::fd_path(&f)).ok()?.take(4 << 20).read_to_string(&mut s).ok()?;
    Some(s)
}

/// uid, gid and additional gids for the image's `User` (`name`, `uid`,
/// `uid:gid`, `name:group`), names looked up in the rootfs' /etc/passwd
/// and /etc/group as containerd does; a bare uid takes its passwd gid or 0.
pub fn resolve_user(user: &str, rootfs: &Path) -> Result<(u32, u32, Vec<u32>)> {
    if user.is_empty() {
        return Ok((0, 0, vec![]));
    }
    let passwd = read_in_root(rootfs, "/etc/passwd").unwrap_or_default();
    let group = read_in_root(rootfs, "/etc/group").unwrap_or_default();
    let pw: Vec<Vec<&str>> = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 4).collect();
    let gr: Vec<Vec<&str>> = group.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 3).collect();
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entry = pw.iter().find(|f| f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u));
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => entry
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| ImageError::InvalidArgument(format!("user {u:?} not found in the image's /etc/passwd")))?,
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => gr
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| ImageError::InvalidArgument(format!("group {g:?} not found in the image's /etc/group")))?,
        },
        None => entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let name = entry.map(|f| f[0]).unwrap_or("");
    let extra: Vec<u32> = if name.is_empty() {
        vec![]
    } else {
        gr.iter()
            .filter(|f| f.get(3).is_some_and(|m| m.split(',').any(|m| m == name)))
            .filter_map(|f| f[2].parse().ok())
            .filter(|g| *g != gid)
            .collect()
    };
    Ok((uid, gid, extra))
}

#[derive(Debug, Default)]
pub struct BundleOptions {
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Copy the layers into the rootfs instead of mounting an overlay
    /// (also the fallback when the kernel has no overlayfs).
    pub copy: bool,
}

/// Make `bundle` (created if needed) an OCI bundle of image `rec`.
pub fn create(store: &Store, rec: &ImageRecord, bundle: &Path, opts: &BundleOptions) -> Result<()> {
    let image = store.config(&rec.config)?;
    let args = process_args(&image, &opts.command, &opts.args)?;
    let state = bundle.join(STATE_DIR);
    if state.exists() {
        return Err(ImageError::InvalidArgument(format!("{} already holds an image bundle", bundle.display())));
    }
    std::fs::create_dir_all(&state).ctx(|| format!("create {}", state.display()))?;
    let bundle_abs = std::fs::canonicalize(bundle).ctx(|| format!("resolve {}", bundle.display()))?;
    let rootfs = bundle_abs.join("rootfs");
    let state = bundle_abs.join(STATE_DIR);
    let result = (|| {
        let mut copied = opts.copy;
        if !copied {
            match rootfs::mount_rootfs(store, rec, &rootfs, &state) {
                Ok(()) => {}
                Err(ImageError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {
                    log::warn!("overlayfs is not available: copying the layers of {} into {}", rec.name, rootfs.display());
                    copied = true;
                }
                Err(e) => return Err(e),
            }
        }
        if copied {
            let _gc = store.gc_guard(false)?;
            super::copy::copy_rootfs(&super::ingest::lower_dirs(store, rec)?, &rootfs)?;
        }
        let c = &image.config;
        let (uid, gid, extra) = resolve_user(c.user.as_deref().unwrap_or(""), &rootfs)?;
        let cwd = c.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
        // Image volumes and the working directory exist in the rootfs (as
        // containerd's default "mkdir" image-volume mode does).
        let root_fd = nix::fcntl::open(
            &rootfs,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| format!("open {}", rootfs.display()))?;
        let mut dirs: Vec<String> = c.volumes.iter().flat_map(|v| v.keys().cloned()).collect();
        dirs.push(cwd.clone());
        for d in &dirs {
            safe_path::open_in_root(&root_fd, Path::new(d), Create::Dir)
                .map_err(|e| ImageError::Resolve { path: PathBuf::from(d), source: Box::new(e) })?;
        }
        let mut spec: Value = crate::oci::spec_template::default_spec(false);
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(args);
        spec["process"]["env"] = json!(process_env(&image, &opts.env));
        spec["process"]["cwd"] = json!(cwd);
        spec["process"]["user"] =
            if extra.is_empty() { json!({"uid": uid, "gid": gid}) } else { json!({"uid": uid, "gid": gid, "additionalGids": extra}) };
        spec["root"] = json!({"path": "rootfs", "readonly": false});
        let mut ann = serde_json::Map::new();
        ann.insert("org.opencontainers.image.ref.name".into(), json!(rec.name));
        ann.insert("io.hull.image.id".into(), json!(rec.config));
        if let Some(sig) = &c.stop_signal {
            ann.insert("org.opencontainers.image.stopSignal".into(), json!(sig));
        }
        if let Some(ports) = &c.exposed_ports {
            ann.insert("org.opencontainers.image.exposedPorts".into(), json!(ports.keys().cloned().collect::<Vec<_>>().join(",")));
        }
        spec["annotations"] = Value::Object(ann);
        let data = serde_json::to_vec_pretty(&spec).map_err(|e| ImageError::json("encode config.json", e))?;
        std::fs::write(bundle_abs.join("config.json"), data).ctx(|| format!("write {}/config.json", bundle.display()))?;
        let record = json!({"image": rec.name, "id": rec.config, "store": store.root(), "rootfs": if copied { "copy" } else { "overlay" }});
        std::fs::write(state.join("image.json"), record.to_string()).ctx(|| format!("write {}/image.json", state.display()))
    })();
    if result.is_err() {
        let _ = remove(store, &bundle_abs);
    }
    result
}

/// Undo `create`: unmount the rootfs, remove the writable layer, the
/// rootfs directory and config.json.
pub fn remove(store: &Store, bundle: &Path) -> Result<()> {
    let state = bundle.join(STATE_DIR);
    let rootfs = std::fs::canonicalize(bundle).unwrap_or_else(|_| bundle.to_path_buf()).join("rootfs");
    let copied = std::fs::read_to_string(state.join("image.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .is_some_and(|v| v["rootfs"] == "copy");
    rootfs::unmount_rootfs(store, &rootfs)?;
    if copied && rootfs.exists() {
        std::fs::remove_dir_all(&rootfs).ctx(|| format!("remove {}", rootfs.display()))?;
    }
    if state.exists() {
        std::fs::remove_dir_all(&state).ctx(|| format!("remove {}", state.display()))?;
    }
    match std::fs::remove_dir(&rootfs) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ImageError::io(format!("remove {}", rootfs.display()), e)),
    }
    let _ = std::fs::remove_file(bundle.join("config.json"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        let mut c = ImageConfig::default();
        c.config.entrypoint = entrypoint.map(|v| v.iter().map(|s| s.to_string()).collect());
        c.config.cmd = cmd.map(|v| v.iter().map(|s| s.to_string()).collect());
        c
    }
    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn kubernetes_command_rules() {
        let img = image(Some(&["/ep", "-x"]), Some(&["default"]));
        assert_eq!(process_args(&img, &[], &[]).unwrap(), v(&["/ep", "-x", "default"]));
        assert_eq!(process_args(&img, &[], &v(&["a"])).unwrap(), v(&["/ep", "-x", "a"]));
        assert_eq!(process_args(&img, &v(&["/bin/sh"]), &[]).unwrap(), v(&["/bin/sh"]));
        assert_eq!(process_args(&img, &v(&["/bin/sh"]), &v(&["-c", "x"])).unwrap(), v(&["/bin/sh", "-c", "x"]));
        let cmd_only = image(None, Some(&["sh"]));
        assert_eq!(process_args(&cmd_only, &[], &v(&["ls"])).unwrap(), v(&["ls"]));
        assert!(process_args(&image(None, None), &[], &[]).is_err());
    }

    #[test]
    fn env_merges_by_key() {
        let mut img = ImageConfig::default();
        img.config.env = Some(v(&["A=1", "B=2"]));
        assert_eq!(process_env(&img, &v(&["B=3", "C=4"])), v(&[DEFAULT_PATH, "A=1", "B=3", "C=4"]));
    }

    #[test]
    fn users_resolve_in_the_rootfs() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n").unwrap();
        std::fs::write(t.path().join("etc/group"), "root:x:0:\nwheel:x:10:alice\nalice:x:1000:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user("", t.path()).unwrap(), (0, 0, vec![]));
        assert_eq!(resolve_user("alice", t.path()).unwrap(), (1000, 1000, vec![10]));
        assert_eq!(resolve_user("1000", t.path()).unwrap(), (1000, 1000, vec![10]));
        assert_eq!(resolve_user("1000:staff", t.path()).unwrap(), (1000, 50, vec![10]));
        assert_eq!(resolve_user("4242", t.path()).unwrap(), (4242, 0, vec![]));
        assert!(resolve_user("nobody", t.path()).is_err());
        // /etc/passwd as a symlink to a host file is read inside the root.
        std::fs::remove_file(t.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("etc/passwd")).unwrap();
        assert!(resolve_user("root", t.path()).is_err(), "read the host's /etc/passwd");
    }
}
