//! Which namespaces a container gets: new ones (unshare) and existing ones
//! joined by path (setns), in an order the kernel accepts.
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result, SysContext};

pub fn clone_flag(typ: LinuxNamespaceType) -> CloneFlags {
    match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The /proc/<pid>/ns entry name of a namespace type.
pub fn proc_name(typ: LinuxNamespaceType) -> &'static str {
    match typ {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

pub const ALL_TYPES: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Mount,
];

/// An existing namespace to join.
pub struct Join {
    pub typ: LinuxNamespaceType,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// The namespace work of the bootstrap child.
pub struct NamespacePlan {
    /// New namespaces other than the user namespace.
    pub unshare: CloneFlags,
    pub new_user: bool,
    /// Namespaces to join, user namespace first and mount namespace last
    /// (joining the mount namespace changes how later paths resolve, so all
    /// fds are opened up front).
    pub joins: Vec<Join>,
}

impl NamespacePlan {
    /// The plain case, in which the init can be forked before the
    /// container's cgroup holds anything and build the rootfs while it is
    /// placed: all namespaces new, no user namespace (whose id maps come
    /// first), none joined. A new cgroup namespace only on cgroup v1: its
    /// root is the cgroup of the process that makes it, so the init makes it
    /// itself once placed, and a v1 cgroup mount binds the container's
    /// directories by their host paths, where a v2 one (a cgroup2 mount made
    /// in the namespace) needs the namespace first.
    pub fn init_placed_during_mounts(&self, cgroup_v1: bool) -> bool {
        self.plain() && (cgroup_v1 || !self.unshare.contains(CloneFlags::CLONE_NEWCGROUP))
    }

    /// No user namespace and none joined: the namespaces can be made in any
    /// order, and before the process is in its cgroup.
    pub fn plain(&self) -> bool {
        !self.new_user && self.joins.is_empty()
    }

    pub fn from_spec(spec: &Spec) -> Result<NamespacePlan> {
        let mut plan = NamespacePlan { unshare: CloneFlags::empty(), new_user: false, joins: Vec::new() };
        let list = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
        for typ in ALL_TYPES {
            let Some(ns) = list.and_then(|l| l.iter().find(|n| n.typ() == typ)) else { continue };
            match ns.path() {
                None if typ == LinuxNamespaceType::User => plan.new_user = true,
                None => plan.unshare |= clone_flag(typ),
                Some(path) => plan.joins.push(Join { typ, path: path.clone(), fd: open_ns(path)? }),
            }
        }
        Ok(plan)
    }

    /// Namespaces of a running container's init to join for `exec`: every
    /// type whose namespace differs from ours.
    pub fn of_process(pid: i32) -> Result<NamespacePlan> {
        let mut joins = Vec::new();
        for typ in ALL_TYPES {
            let theirs = PathBuf::from(format!("/proc/{pid}/ns/{}", proc_name(typ)));
            let ours = PathBuf::from(format!("/proc/self/ns/{}", proc_name(typ)));
            let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else { continue };
            use std::os::unix::fs::MetadataExt;
            if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
                joins.push(Join { typ, fd: open_ns(&theirs)?, path: theirs });
            }
        }
        Ok(NamespacePlan { unshare: CloneFlags::empty(), new_user: false, joins })
    }

    pub fn joins_user(&self) -> bool {
        self.joins.iter().any(|j| j.typ == LinuxNamespaceType::User)
    }

    /// setns into every namespace to join, in order.
    pub fn join_all(&self, only_user: bool) -> Result<()> {
        for j in &self.joins {
            if only_user != (j.typ == LinuxNamespaceType::User) {
                continue;
            }
            nix::sched::setns(&j.fd, clone_flag(j.typ))
                .map_err(|e| Error::sys(format!("join {} namespace {}", proc_name(j.typ), j.path.display()), e))?;
        }
        Ok(())
    }
}

fn open_ns(path: &std::path::Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).sys_context(|| format!("open namespace {}", path.display()))
}
