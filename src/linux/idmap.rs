//! Idmapped mounts (runtime-spec 1.2: a mount's `uidMappings`/`gidMappings`
//! and the `idmap`/`ridmap` options).
//!
//! The kernel only idmaps a *detached* mount (open_tree's clone), and only
//! for a caller privileged over the filesystem: the host's user namespace
//! for a host directory. So the trees are cloned and idmapped by the
//! bootstrap child before it joins or creates any namespace, and the init
//! later moves each into place with move_mount (a detached tree may be
//! attached in any mount namespace, also one owned by the container's user
//! namespace). The mapping itself is a user namespace made for it: a
//! forked child unshares one and waits while the maps are written and its
//! namespace is opened, then exits (the bootstrap is single-threaded, so
//! the fork is safe).
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Mount, Spec};

use super::mount_options;
use super::syscall::{self, Forked};
use crate::error::{Error, Result, SysContext};

/// The kernel's limit on extents in one uid_map or gid_map.
const MAX_EXTENTS: usize = 340;

/// What one idmapped mount asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub uid: Vec<LinuxIdMapping>,
    pub gid: Vec<LinuxIdMapping>,
    /// Clone the submounts too (rbind).
    pub tree_recursive: bool,
    /// Idmap the submounts too (ridmap, or mappings on an rbind).
    pub attr_recursive: bool,
}

/// The idmap request of mount `i`, or None for an ordinary mount; an error
/// names what is wrong with it. Mappings without an option idmap the mount
/// alone, or with rbind the whole tree (what rbind users expect); `idmap`
/// and `ridmap` without mappings use the container's user namespace's.
pub fn request(spec: &Spec, i: usize, m: &Mount) -> Result<Option<Request>> {
    let field = format!("mounts[{i}]");
    let opts: Vec<&str> = m.options().iter().flatten().map(String::as_str).collect();
    let idmap = opts.contains(&"idmap");
    let ridmap = opts.contains(&"ridmap");
    let uid = m.uid_mappings().clone().unwrap_or_default();
    let gid = m.gid_mappings().clone().unwrap_or_default();
    if uid.is_empty() && gid.is_empty() && !idmap && !ridmap {
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(Error::Config(format!("{field}.uidMappings/gidMappings: empty mappings without an idmap or ridmap option")));
        }
        return Ok(None);
    }
    if idmap && ridmap {
        return Err(Error::Config(format!("{field}.options: idmap and ridmap exclude each other")));
    }
    let parsed =
        mount_options::parse(&m.options().clone().unwrap_or_default()).map_err(|e| Error::Config(format!("{field}.options: {e}")))?;
    if !parsed.is_bind() && m.typ().as_deref() != Some("bind") {
        return Err(Error::Config(format!(
            "{field}.uidMappings/gidMappings: idmapped mounts need a bind mount (type bind or option bind/rbind)"
        )));
    }
    let (uid, gid) = if uid.is_empty() && gid.is_empty() {
        let linux = spec.linux().as_ref();
        let userns = linux
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::User));
        let own_uid = linux.and_then(|l| l.uid_mappings().clone()).unwrap_or_default();
        let own_gid = linux.and_then(|l| l.gid_mappings().clone()).unwrap_or_default();
        if !userns || own_uid.is_empty() || own_gid.is_empty() {
            return Err(Error::Config(format!(
                "{field}: idmap/ridmap without uidMappings and gidMappings takes the container's user namespace mappings, and it has none"
            )));
        }
        (own_uid, own_gid)
    } else {
        (uid, gid)
    };
    for (name, maps) in [("uidMappings", &uid), ("gidMappings", &gid)] {
        if maps.is_empty() {
            return Err(Error::Config(format!("{field}.{name}: missing (an idmapped mount needs both uid and gid mappings)")));
        }
        if maps.len() > MAX_EXTENTS {
            return Err(Error::Config(format!("{field}.{name}: {} entries, the kernel takes at most {MAX_EXTENTS}", maps.len())));
        }
        for (j, e) in maps.iter().enumerate() {
            let fits = |start: u32| u64::from(start) + u64::from(e.size()) <= u64::from(u32::MAX);
            if e.size() == 0 || !fits(e.container_id()) || !fits(e.host_id()) {
                return Err(Error::Config(format!("{field}.{name}[{j}]: size must be at least 1 and the ranges within 32-bit ids")));
            }
        }
    }
    let rbind = parsed.flags.contains(nix::mount::MsFlags::MS_REC);
    Ok(Some(Request { uid, gid, tree_recursive: rbind, attr_recursive: ridmap || (rbind && !idmap) }))
}

/// Check every mount's idmap request (for validation before anything is made).
pub fn check(spec: &Spec) -> Result<()> {
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        request(spec, i, m)?;
    }
    Ok(())
}

/// Clone and idmap the source of every idmapped mount: one slot per entry
/// of `mounts`, None for the ordinary ones. Run before entering any of the
/// container's namespaces.
pub fn prepare(spec: &Spec, bundle: &Path) -> Result<Vec<Option<OwnedFd>>> {
    let mut out = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let Some(req) = request(spec, i, m)? else {
            out.push(None);
            continue;
        };
        let context = format!("mounts[{i}] ({})", m.destination().display());
        let source = m
            .source()
            .as_ref()
            .ok_or_else(|| Error::Config(format!("{context}: bind mount without a source")))?;
        let source: PathBuf = if source.is_relative() { bundle.join(source) } else { source.clone() };
        out.push(Some(idmapped_tree(&source, &req, &context)?));
    }
    Ok(out)
}

fn idmapped_tree(source: &Path, req: &Request, context: &str) -> Result<OwnedFd> {
    let tree = syscall::open_tree_clone(source, req.tree_recursive).sys_context(|| format!("{context}: open_tree {}", source.display()))?;
    let userns = user_namespace(&req.uid, &req.gid).map_err(|e| e.with_context(context))?;
    match syscall::mount_setattr_idmap(&tree, &userns, req.attr_recursive) {
        Ok(()) => Ok(tree),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(Error::unsupported(
            format!("{context}.uidMappings/gidMappings"),
            format!("the filesystem of {} does not support idmapped mounts (mount_setattr: EINVAL)", source.display()),
        )),
        Err(e) => Err(Error::sys(format!("{context}: idmap {}", source.display()), e)),
    }
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect()
}

/// A user namespace with these mappings, as an fd on it.
fn user_namespace(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<OwnedFd> {
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).sys_context(|| "pipe".into())?;
    let (hold_r, hold_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).sys_context(|| "pipe".into())?;
    match syscall::fork()? {
        Forked::Child => {
            drop(ready_r);
            drop(hold_w);
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = std::fs::File::from(ready_w).write_all(&[u8::from(ok)]);
            // Wait (EOF) until the parent has opened our namespace.
            let _ = std::fs::File::from(hold_r).read(&mut [0u8; 1]);
            syscall::exit_now(0)
        }
        Forked::Parent(pid) => {
            drop(ready_w);
            drop(hold_r);
            let result = (|| {
                let mut byte = [0u8; 1];
                let n = std::fs::File::from(ready_r).read(&mut byte).sys_context(|| "wait for the idmap helper".into())?;
                if n != 1 || byte[0] != 1 {
                    return Err(Error::Init("idmapped mount: the helper could not create a user namespace".into()));
                }
                std::fs::write(format!("/proc/{pid}/uid_map"), map_text(uid)).sys_context(|| "idmapped mount: write uid_map".into())?;
                std::fs::write(format!("/proc/{pid}/gid_map"), map_text(gid)).sys_context(|| "idmapped mount: write gid_map".into())?;
                let fd = nix::fcntl::open(
                    format!("/proc/{pid}/ns/user").as_str(),
                    nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .sys_context(|| "idmapped mount: open the user namespace".into())?;
                Ok(fd)
            })();
            drop(hold_w);
            let _ = nix::sys::wait::waitpid(pid, None);
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mount: serde_json::Value, userns: bool) -> Spec {
        let mut v = serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "mounts": [mount],
            "linux": {"namespaces": [{"type": "mount"}]}
        });
        if userns {
            v["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "user"}]);
            v["linux"]["uidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            v["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        }
        serde_json::from_value(v).unwrap()
    }

    fn req(mount: serde_json::Value, userns: bool) -> Result<Option<Request>> {
        let s = spec(mount, userns);
        let m = s.mounts().as_ref().unwrap()[0].clone();
        request(&s, 0, &m)
    }

    #[test]
    fn mappings_on_a_bind_make_a_request() {
        let maps = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 10}]);
        let r = req(serde_json::json!({"destination": "/d", "type": "bind", "source": "/s", "options": ["rbind"], "uidMappings": maps, "gidMappings": maps}), false)
            .unwrap()
            .unwrap();
        assert!(r.tree_recursive && r.attr_recursive);
        assert_eq!(r.uid[0].host_id(), 1000);
        let r = req(serde_json::json!({"destination": "/d", "source": "/s", "options": ["rbind", "idmap"], "uidMappings": maps, "gidMappings": maps}), false)
            .unwrap()
            .unwrap();
        assert!(r.tree_recursive && !r.attr_recursive);
        assert!(req(serde_json::json!({"destination": "/d", "type": "bind", "source": "/s"}), false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn idmap_without_mappings_takes_the_user_namespace_ones() {
        let m = serde_json::json!({"destination": "/d", "type": "bind", "source": "/s", "options": ["bind", "ridmap"]});
        let r = req(m.clone(), true).unwrap().unwrap();
        assert_eq!(r.gid[0].host_id(), 100000);
        assert!(r.attr_recursive && !r.tree_recursive);
        assert!(req(m, false).unwrap_err().to_string().contains("mounts[0]"));
    }

    #[test]
    fn bad_requests_are_named() {
        let maps = serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 10}]);
        let e =
            req(serde_json::json!({"destination": "/d", "type": "tmpfs", "source": "t", "uidMappings": maps, "gidMappings": maps}), false)
                .unwrap_err();
        assert!(e.to_string().contains("bind"), "{e}");
        let e = req(serde_json::json!({"destination": "/d", "type": "bind", "source": "/s", "uidMappings": maps}), false).unwrap_err();
        assert!(e.to_string().contains("gidMappings"), "{e}");
        let big = serde_json::json!([{"containerID": 0, "hostID": 4294967295u32, "size": 10}]);
        let e =
            req(serde_json::json!({"destination": "/d", "type": "bind", "source": "/s", "uidMappings": big, "gidMappings": maps}), false)
                .unwrap_err();
        assert!(e.to_string().contains("uidMappings[0]"), "{e}");
    }
}
