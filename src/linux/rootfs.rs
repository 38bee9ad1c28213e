//! Building the container's filesystem view inside its mount namespace:
//! the rootfs bind, the configured mounts, /dev, then pivot_root and the
//! masked and read-only paths.
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxDeviceType, Mount, Spec};

use super::mount_options::{self, MountOptions};
use super::safe_path::{fd_path, open_in_root, parent_and_name, Create};
use crate::cgroups::{Cgroup, Layout};
use crate::error::{Error, Result, SysContext};

/// Inputs the rootfs setup needs besides the spec.
pub struct RootfsContext<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub cgroup: Option<&'a Cgroup>,
    /// Inside a new user namespace device nodes cannot be made: bind them.
    pub in_user_ns: bool,
    pub new_cgroup_ns: bool,
    /// Detached idmapped trees by mount index, moved into place instead of
    /// a bind (linux::idmap).
    pub idmapped: &'a [Option<OwnedFd>],
}

const NONE: Option<&str> = None;

/// Everything before the pivot: propagation, rootfs bind, mounts, devices.
pub fn prepare(ctx: &RootfsContext) -> Result<()> {
    let linux = ctx.spec.linux().as_ref();
    // Nothing we mount may propagate back to the host: make the whole tree
    // a slave before touching anything, or, for a shared rootfsPropagation,
    // keep the copies of the host's mounts in their peer groups (a
    // bidirectional bind must join the host's group), or make it private.
    // The requested propagation itself is set on "/" after the pivot
    // (root_propagation): pivot_root refuses a shared new root or parent,
    // and binds of an unbindable tree fail.
    let requested = linux.and_then(|l| l.rootfs_propagation().as_deref()).and_then(mount_options::propagation_flag);
    let base = match requested {
        Some(p) if p.contains(MsFlags::MS_SHARED) => MsFlags::MS_SHARED,
        Some(p) if p.intersects(MsFlags::MS_PRIVATE | MsFlags::MS_UNBINDABLE) => MsFlags::MS_PRIVATE,
        _ => MsFlags::MS_SLAVE,
    };
    mount(NONE, "/", NONE, base | MsFlags::MS_REC, NONE).sys_context(|| "set / propagation".into())?;
    // The mount that holds the rootfs (the rootfs itself when it is a mount,
    // as containerd's overlay is) becomes private: a bind of it is then
    // private too, which pivot_root needs, and nothing mounted under the
    // rootfs propagates to its peers.
    let holder = mount_point_of(ctx.rootfs)?;
    mount(NONE, &holder, NONE, MsFlags::MS_PRIVATE, NONE).sys_context(|| format!("make {} private", holder.display()))?;
    // pivot_root needs the new root to be a mount point.
    mount(Some(ctx.rootfs), ctx.rootfs, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE)
        .sys_context(|| format!("bind rootfs {}", ctx.rootfs.display()))?;
    let root = nix::fcntl::open(ctx.rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .sys_context(|| format!("open rootfs {}", ctx.rootfs.display()))?;

    let mounts = ctx.spec.mounts().as_deref().unwrap_or(&[]);
    for (i, m) in mounts.iter().enumerate() {
        let idmapped = ctx.idmapped.get(i).and_then(Option::as_ref);
        mount_entry(ctx, &root, m, idmapped).map_err(|e| e.with_context(format!("mounts[{i}] ({})", m.destination().display())))?;
    }
    let dev_from_host = mounts.iter().any(|m| {
        m.destination() == Path::new("/dev") && mount_options::parse(m.options().as_deref().unwrap_or(&[])).is_ok_and(|o| o.is_bind())
    });
    if !dev_from_host {
        for d in default_devices() {
            create_device(ctx, &root, &d)?;
        }
        create_dev_symlinks(&root)?;
    }
    for (i, d) in linux.and_then(|l| l.devices().as_ref()).into_iter().flatten().enumerate() {
        let dev = Device {
            path: d.path().clone(),
            kind: d.typ(),
            major: d.major(),
            minor: d.minor(),
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        };
        create_device(ctx, &root, &dev).map_err(|e| e.with_context(format!("linux.devices[{i}]")))?;
    }
    Ok(())
}

/// The mount point of the mount that holds `path` (the last, topmost of
/// the longest matching mount points in our mountinfo).
fn mount_point_of(path: &Path) -> Result<PathBuf> {
    let path = std::fs::canonicalize(path).sys_context(|| format!("resolve {}", path.display()))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").sys_context(|| "read /proc/self/mountinfo".into())?;
    let mut best = PathBuf::from("/");
    for line in info.lines() {
        let Some(point) = line.split(' ').nth(4).map(crate::cgroups::mountinfo::unescape) else { continue };
        let point = PathBuf::from(point);
        if path.starts_with(&point) && point.components().count() >= best.components().count() {
            best = point;
        }
    }
    Ok(best)
}

/// After the pivot: the propagation linux.rootfsPropagation asks for, on
/// the container's "/" (so on its own mounts, never the host's).
pub fn root_propagation(spec: &Spec) -> Result<()> {
    let requested = spec.linux().as_ref().and_then(|l| l.rootfs_propagation().as_deref());
    if let Some(flags) = requested.and_then(mount_options::propagation_flag) {
        mount(NONE, "/", NONE, flags, NONE).sys_context(|| format!("set rootfsPropagation {:?} on /", requested.unwrap_or_default()))?;
    }
    Ok(())
}

/// CVE-2019-16884: a proc or sysfs mounted onto a symlink planted in the
/// image would land wherever the link points (over an LSM's attr files,
/// say). runc and crun refuse it; so does hull, by name.
fn refuse_symlink_destination(root: &OwnedFd, typ: &str, dest: &Path) -> Result<()> {
    let (parent, name) = parent_and_name(dest)?;
    let Some(dir) = open_in_root(root, &parent, Create::Nothing)? else { return Ok(()) };
    match nix::sys::stat::fstatat(dir.as_fd(), name.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => Err(Error::Config(format!(
            "{typ} cannot be mounted on {}: the destination is a symlink in the rootfs, not a directory",
            dest.display()
        ))),
        _ => Ok(()),
    }
}

fn mount_entry(ctx: &RootfsContext, root: &OwnedFd, m: &Mount, idmapped: Option<&OwnedFd>) -> Result<()> {
    let opts = mount_options::parse(m.options().as_deref().unwrap_or(&[])).map_err(Error::Config)?;
    let typ = m.typ().as_deref().unwrap_or("");
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(ctx, root, m, &opts);
    }
    if typ == "proc" || typ == "sysfs" {
        refuse_symlink_destination(root, typ, m.destination())?;
    }
    let bind = opts.is_bind() || typ == "bind";
    let source: Option<PathBuf> = m.source().as_ref().map(|s| if bind && s.is_relative() { ctx.bundle.join(s) } else { s.clone() });
    let create = if bind && source.as_ref().is_some_and(|s| !s.is_dir()) { Create::File } else { Create::Dir };
    if bind {
        let src = source.as_ref().ok_or_else(|| Error::Config("bind mount without a source".into()))?;
        if !src.exists() {
            return Err(Error::Config(format!("bind source {} does not exist", src.display())));
        }
    }
    let target_fd = open_in_root(root, m.destination(), create)?.expect("created");
    let target = fd_path(&target_fd);
    if let Some(tree) = idmapped {
        super::syscall::move_mount_to(tree, &target_fd)
            .sys_context(|| format!("move idmapped {} into place", source.as_deref().expect("checked").display()))?;
    } else if bind {
        let rec = opts.flags & MsFlags::MS_REC;
        mount(source.as_deref(), &target, NONE, MsFlags::MS_BIND | rec, NONE)
            .sys_context(|| format!("bind {}", source.as_deref().expect("checked").display()))?;
    } else {
        let mount_label = ctx
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.mount_label().as_deref())
            .filter(|_| super::lsm::selinux_enabled());
        let data = super::lsm::mount_data(typ, false, opts.data_string(), mount_label);
        // runc keeps the mode of the directory a tmpfs is mounted on (the
        // mode= option notwithstanding); containers rely on it for /tmp.
        let keep_mode = (typ == "tmpfs").then(|| nix::sys::stat::fstat(&target_fd).ok()).flatten();
        // A read-only tmpfs is mounted writable, chmod'ed, then remounted.
        let first_flags = if keep_mode.is_some() { opts.flags - MsFlags::MS_RDONLY } else { opts.flags };
        let result = mount(source.as_deref(), &target, Some(typ), first_flags, data.as_deref());
        if let (Ok(()), Some(st)) = (&result, keep_mode) {
            let mounted = reopen(root, m.destination())?;
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                &fd_path(&mounted),
                Mode::from_bits_truncate(st.st_mode & 0o7777),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .sys_context(|| format!("chmod tmpfs {}", m.destination().display()))?;
            if opts.flags.contains(MsFlags::MS_RDONLY) {
                mount(source.as_deref(), &fd_path(&mounted), Some(typ), opts.flags | MsFlags::MS_REMOUNT, data.as_deref())
                    .sys_context(|| format!("remount tmpfs {} read-only", m.destination().display()))?;
            }
        }
        match result {
            // Inside a user namespace without its own network namespace the
            // kernel refuses a new sysfs: fall back to binding the host's.
            Err(nix::errno::Errno::EPERM) if typ == "sysfs" && ctx.in_user_ns => {
                mount(Some("/sys"), &target, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE).sys_context(|| "bind /sys".into())?;
                let mounted = reopen(root, m.destination())?;
                remount_bind(&fd_path(&mounted), opts.flags)?;
            }
            other => other.sys_context(|| format!("mount {typ}"))?,
        }
    }
    drop(target_fd);
    // The fd above still names the directory under the new mount: resolve
    // again to reach the mount itself for the remount and propagation.
    let mounted = reopen(root, m.destination())?;
    if bind {
        let extra = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            remount_bind(&fd_path(&mounted), extra)?;
        }
    }
    if !opts.recursive.is_empty() {
        // mount(2) flags only ever reach the top mount of an rbind: the
        // r* options go on every submount with mount_setattr(AT_RECURSIVE).
        super::syscall::mount_setattr_recursive(&mounted, opts.recursive.set, opts.recursive.clear)
            .sys_context(|| format!("apply recursive mount options {:?}", opts.recursive.names))?;
    }
    apply_propagation(&fd_path(&mounted), &opts)
}

fn reopen(root: &OwnedFd, dest: &Path) -> Result<OwnedFd> {
    open_in_root(root, dest, Create::Nothing)?.ok_or_else(|| Error::Init(format!("{} vanished after mounting", dest.display())))
}

/// Bind `source` onto `dest` (inside the root), then remount to apply the
/// flags a bind cannot take on its first call.
fn bind_in_root(root: &OwnedFd, source: &Path, dest: &Path, create: Create, flags: MsFlags) -> Result<()> {
    let target = open_in_root(root, dest, create)?.expect("created");
    bind_fd(source, target, || reopen(root, dest), flags)
}

/// Bind `source` onto the resolved `target`; if `flags` asks more than a
/// bind, remount the new mount, which `reopen` resolves again (`target`
/// is the directory below it).
fn bind_fd(source: &Path, target: OwnedFd, reopen: impl FnOnce() -> Result<OwnedFd>, flags: MsFlags) -> Result<()> {
    let rec = flags & MsFlags::MS_REC;
    mount(Some(source), &fd_path(&target), NONE, MsFlags::MS_BIND | rec, NONE).sys_context(|| format!("bind {}", source.display()))?;
    drop(target);
    let extra = flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !extra.is_empty() {
        remount_bind(&fd_path(&reopen()?), extra)?;
    }
    Ok(())
}

/// Remount a bind with `flags`, keeping the flags the kernel locks (in a
/// user namespace, dropping nosuid/nodev/noexec of the source is EPERM).
fn remount_bind(target: &Path, flags: MsFlags) -> Result<()> {
    let locked = locked_flags(target);
    mount(NONE, target, NONE, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked, NONE)
        .sys_context(|| format!("remount {} with {flags:?}", target.display()))
}

fn locked_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::FsFlags;
    let Ok(st) = nix::sys::statvfs::statvfs(path) else { return MsFlags::empty() };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs) {
            out |= ms;
        }
    }
    out
}

fn apply_propagation(target: &Path, opts: &MountOptions) -> Result<()> {
    for p in &opts.propagation {
        mount(NONE, target, NONE, *p, NONE).sys_context(|| format!("set propagation {p:?}"))?;
    }
    Ok(())
}

/// A "cgroup" mount: on v1 a tmpfs with the container's directory of each
/// hierarchy bound into it (as runc does); on v2 a cgroup2 mount when the
/// container has its own cgroup namespace, else a bind of its directory.
fn mount_cgroup(ctx: &RootfsContext, root: &OwnedFd, m: &Mount, opts: &MountOptions) -> Result<()> {
    let Some(cg) = ctx.cgroup else {
        return Err(Error::Config("a cgroup mount needs the container's cgroup".into()));
    };
    let dest = m.destination();
    let target_fd = open_in_root(root, dest, Create::Dir)?.expect("created");
    let target = fd_path(&target_fd);
    let flags = opts.flags - MsFlags::MS_RDONLY;
    match cg.layout {
        Layout::V2 => {
            if ctx.new_cgroup_ns {
                mount(Some("cgroup2"), &target, Some("cgroup2"), opts.flags, NONE).sys_context(|| "mount cgroup2".into())?;
            } else if let Some(dir) = cg.dirs.get("") {
                drop(target_fd);
                bind_in_root(root, dir, dest, Create::Dir, opts.flags)?;
            }
        }
        Layout::V1 => {
            mount(Some("tmpfs"), &target, Some("tmpfs"), flags, Some("mode=755")).sys_context(|| "mount tmpfs for cgroups".into())?;
            drop(target_fd);
            // The tmpfs just mounted is this mount namespace's own and
            // empty, and nothing of the container runs yet: names made in
            // it need no resolving in the root, only the tmpfs itself.
            let base = reopen(root, dest)?;
            for (name, dir) in &cg.dirs {
                bind_hierarchy(&base, name, dir, opts.flags)?;
                // Co-mounted controllers ("cpu,cpuacct") also get a link per name.
                if name.contains(',') {
                    for single in name.split(',') {
                        let _ = nix::unistd::symlinkat(name.as_str(), base.as_fd(), single);
                    }
                }
            }
            if opts.flags.contains(MsFlags::MS_RDONLY) {
                mount(NONE, &fd_path(&base), NONE, MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags, Some("mode=755"))
                    .sys_context(|| "remount cgroup tmpfs read-only".into())?;
            }
        }
    }
    Ok(())
}

/// Bind one v1 hierarchy's directory `dir` onto `name` in the fresh tmpfs
/// `base` (see `mount_cgroup`), then remount it with `flags`.
fn bind_hierarchy(base: &OwnedFd, name: &str, dir: &Path, flags: MsFlags) -> Result<()> {
    let at_base = || -> Result<OwnedFd> {
        nix::fcntl::openat(base.as_fd(), name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            .sys_context(|| format!("open the cgroup mount point {name}"))
    };
    nix::sys::stat::mkdirat(base.as_fd(), name, Mode::from_bits_truncate(0o755))
        .sys_context(|| format!("create the cgroup mount point {name}"))?;
    bind_fd(dir, at_base()?, at_base, flags)
}

struct Device {
    path: PathBuf,
    kind: LinuxDeviceType,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
}

fn default_devices() -> Vec<Device> {
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
        .into_iter()
        .map(|(name, major, minor)| Device {
            path: PathBuf::from("/dev").join(name),
            kind: LinuxDeviceType::C,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        })
        .collect()
}

fn create_device(ctx: &RootfsContext, root: &OwnedFd, d: &Device) -> Result<()> {
    let (parent, name) = parent_and_name(&d.path)?;
    let parent_fd = open_in_root(root, &parent, Create::Dir)?.expect("created");
    if ctx.in_user_ns {
        // mknod is refused in a user namespace: bind the host's node instead.
        return bind_in_root(root, &d.path, &d.path, Create::File, MsFlags::empty());
    }
    let kind = match d.kind {
        LinuxDeviceType::C | LinuxDeviceType::U => nix::sys::stat::SFlag::S_IFCHR,
        LinuxDeviceType::B => nix::sys::stat::SFlag::S_IFBLK,
        LinuxDeviceType::P => nix::sys::stat::SFlag::S_IFIFO,
        LinuxDeviceType::A => return Err(Error::Config(format!("device {}: type \"a\" is not a node type", d.path.display()))),
    };
    let dev = nix::sys::stat::makedev(d.major as u64, d.minor as u64);
    // The parent is an O_PATH fd: go through its /proc path to create in it.
    let dir = nix::fcntl::open(&fd_path(&parent_fd), OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .sys_context(|| format!("open {}", parent.display()))?;
    let _ = nix::unistd::unlinkat(dir.as_fd(), name.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
    let old = nix::sys::stat::umask(Mode::empty());
    let made = nix::sys::stat::mknodat(dir.as_fd(), name.as_os_str(), kind, Mode::from_bits_truncate(d.mode & 0o7777), dev);
    nix::sys::stat::umask(old);
    made.sys_context(|| format!("mknod {}", d.path.display()))?;
    nix::unistd::fchownat(
        dir.as_fd(),
        name.as_os_str(),
        Some(nix::unistd::Uid::from_raw(d.uid)),
        Some(nix::unistd::Gid::from_raw(d.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .sys_context(|| format!("chown {}", d.path.display()))
}

fn create_dev_symlinks(root: &OwnedFd) -> Result<()> {
    let Some(dev) = open_in_root(root, Path::new("/dev"), Create::Nothing)? else { return Ok(()) };
    let dir = nix::fcntl::open(&fd_path(&dev), OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .sys_context(|| "open /dev".into())?;
    let links = [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    for (target, name) in links {
        match nix::unistd::symlinkat(target, dir.as_fd(), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(Error::sys(format!("symlink /dev/{name}"), e)),
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = nix::unistd::symlinkat("/proc/kcore", dir.as_fd(), "core");
    }
    Ok(())
}

/// Without a mount namespace: chroot into the rootfs, touching no mount.
pub fn chroot_into(rootfs: &Path) -> Result<()> {
    nix::unistd::chdir(rootfs).sys_context(|| format!("chdir {}", rootfs.display()))?;
    nix::unistd::chroot(".").sys_context(|| format!("chroot {}", rootfs.display()))?;
    nix::unistd::chdir("/").sys_context(|| "chdir /".into())
}

/// Make the rootfs the container's "/" (pivot_root, or chroot with --no-pivot).
pub fn enter_root(rootfs: &Path, no_pivot: bool) -> Result<()> {
    if no_pivot {
        nix::unistd::chdir(rootfs).sys_context(|| "chdir rootfs".into())?;
        mount(Some(rootfs), "/", NONE, MsFlags::MS_MOVE, NONE).sys_context(|| "move rootfs to /".into())?;
        nix::unistd::chroot(".").sys_context(|| "chroot".into())?;
        return nix::unistd::chdir("/").sys_context(|| "chdir /".into());
    }
    let old_root =
        nix::fcntl::open("/", OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).sys_context(|| "open /".into())?;
    let new_root = nix::fcntl::open(rootfs, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .sys_context(|| "open rootfs".into())?;
    nix::unistd::fchdir(&new_root).sys_context(|| "fchdir rootfs".into())?;
    // pivot_root(".", ".") stacks the old root on top of the new one; it is
    // then detached from where we stand, without needing a directory for it
    // inside the rootfs. Making it a slave first keeps the unmount from
    // propagating to the host.
    nix::unistd::pivot_root(".", ".").sys_context(|| "pivot_root".into())?;
    nix::unistd::fchdir(&old_root).sys_context(|| "fchdir old root".into())?;
    mount(NONE, ".", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE).sys_context(|| "make old root slave".into())?;
    umount2(".", MntFlags::MNT_DETACH).sys_context(|| "detach old root".into())?;
    nix::unistd::chdir("/").sys_context(|| "chdir /".into())
}

/// After the pivot: hide maskedPaths, make readonlyPaths and (if asked) "/"
/// read-only.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for p in linux.and_then(|l| l.masked_paths().as_ref()).into_iter().flatten() {
        mask_path(Path::new(p))?;
    }
    for p in linux.and_then(|l| l.readonly_paths().as_ref()).into_iter().flatten() {
        readonly_path(Path::new(p))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        remount_bind(Path::new("/"), MsFlags::MS_RDONLY)?;
    }
    Ok(())
}

fn mask_path(p: &Path) -> Result<()> {
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::sys(format!("masked path {}", p.display()), e)),
    };
    if meta.is_dir() {
        mount(Some("tmpfs"), p, Some("tmpfs"), MsFlags::MS_RDONLY, NONE).sys_context(|| format!("mask {}", p.display()))
    } else {
        mount(Some("/dev/null"), p, NONE, MsFlags::MS_BIND, NONE).sys_context(|| format!("mask {}", p.display()))
    }
}

fn readonly_path(p: &Path) -> Result<()> {
    match mount(Some(p), p, NONE, MsFlags::MS_BIND | MsFlags::MS_REC, NONE) {
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        other => other.sys_context(|| format!("bind readonly path {}", p.display()))?,
    }
    remount_bind(p, MsFlags::MS_RDONLY | MsFlags::MS_REC)
}
