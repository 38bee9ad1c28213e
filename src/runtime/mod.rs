//! The runtime layer: id-keyed sandbox and container services that both
//! front ends stand on (`hull pod` and the CRI server), as containerd's CRI
//! plugin stands on its sandbox and container services.
//!
//! # The model
//! - A **sandbox** ([`Runtime::create_sandbox`]) is a pod's shared
//!   environment: a holder process owning its network, IPC and UTS (and,
//!   when the pod shares one, PID) namespaces, a pinned network namespace
//!   attached with CNI, a pod cgroup, and the `/etc/hosts`, `/etc/hostname`
//!   and `/etc/resolv.conf` its containers get. It is configured by a
//!   [`SandboxConfig`] and named by a random [`SandboxId`].
//! - A **container** ([`Runtime::create_container`]) lives in a sandbox: a
//!   rootfs (from hull's image store or a local directory), an OCI spec
//!   built from its [`ContainerConfig`] in small typed steps, and a monitor
//!   process that creates it, holds it *created* until
//!   [`Runtime::start_container`], writes its output to a CRI-format log and
//!   records its exit. It is named by a random [`ContainerId`].
//! - **Names** (`namespace/name/attempt` for sandboxes, `sandbox/name/attempt`
//!   for containers) are an index onto the ids; a duplicate is refused with
//!   an `AlreadyExists` error naming the id that holds the name. Nothing is
//!   ever found or removed by a name prefix.
//! - **Records**: one per sandbox and per container under the state
//!   directory, typed, written atomically (write, fsync, rename) under a
//!   per-object lock; they are the truth after a crash of whoever wrote
//!   them. Runtime files (pinned netns, exit records, OCI state) are under
//!   the run directory.
//! - **Lifecycle**: create and start are separate; stop is separate from
//!   remove; stop and remove of what is gone succeed (the kubelet retries).
//! - **Events**: exits are noticed from the monitors' exit records with
//!   inotify; [`Runtime::subscribe`] delivers created/started/stopped/deleted.
//! - **Attach**: a container made with `stdin` or `tty` has its stdin pipe
//!   or pty master held by its monitor; [`Runtime::attach`] names the
//!   monitor's attach socket, which fans its output out to clients and takes
//!   their input and terminal sizes ([`attach`]).
//! - **No fork in this process**: everything that needs a fresh process
//!   (holder, monitor, exec) is a hull binary exec'd with a hidden
//!   subcommand, so the layer is safe to call from a multi-threaded program
//!   (the CRI server is one). [`Runtime`] is `Send + Sync` and its methods
//!   take `&self`.
//!
//! # Errors
//! Every method returns [`RuntimeError`], whose [`ErrorKind`] maps onto a
//! gRPC code with the one function [`grpc_code`].
pub mod attach;
pub mod cdi;
mod child;
pub mod config;
mod container;
pub mod error;
pub mod events;
pub mod exec;
pub mod holder;
pub mod id;
mod layer;
pub mod mounts;
pub mod names;
pub mod record;
pub mod rootfs;
mod sandbox;
pub mod spec;
pub mod status;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use sandbox::check_name;

pub use config::*;
pub use error::{grpc_code, ErrorKind, GrpcCode, Result, RuntimeError};
pub use id::{ContainerId, SandboxId};
pub use status::*;

/// The most output `exec_sync` keeps per stream (16 MiB, the kubelet's
/// limit for exec probes' output is far lower).
pub const EXEC_OUTPUT_LIMIT: usize = 16 << 20;

/// Where the runtime layer keeps its state and finds its services.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Persistent metadata: records, name index, writable layers, logs
    /// (default `/var/lib/hull`).
    pub state_dir: PathBuf,
    /// Runtime files: OCI state, exit records, pinned netns, etc files
    /// (default `/run/hull`).
    pub run_dir: PathBuf,
    /// hull's image store.
    pub image_root: PathBuf,
    /// CNI network config and plugin directories.
    pub cni: crate::network::CniOptions,
    /// The hull binary exec'd for holders, monitors and execs.
    /// [`Runtime::open`] replaces it, in the options it keeps, by the
    /// `/proc/self/fd/N` of its read-only copy: a path of this process
    /// only, to exec here, never to hand to another process.
    pub hull: PathBuf,
}

impl RuntimeOptions {
    /// The defaults: `/var/lib/hull`, `/run/hull`, the default image store
    /// and CNI dirs, and this process's own binary as hull.
    pub fn new(state_dir: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> RuntimeOptions {
        RuntimeOptions {
            state_dir: state_dir.into(),
            run_dir: run_dir.into(),
            image_root: PathBuf::from(crate::image::store::DEFAULT_ROOT),
            cni: crate::network::CniOptions::default(),
            hull: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
        }
    }
}

impl Default for RuntimeOptions {
    fn default() -> RuntimeOptions {
        RuntimeOptions::new("/var/lib/hull", "/run/hull")
    }
}

/// The sandbox and container services. Open one per process; it may be
/// shared between threads (`Arc<Runtime>`).
pub struct Runtime {
    opts: RuntimeOptions,
    names: names::NameIndex,
    bus: std::sync::Arc<events::EventBus>,
    /// Sees the monitors' exit records; stopped when the runtime drops.
    _watcher: Option<events::Watcher>,
    /// The protected copy of hull that `opts.hull` names as
    /// `/proc/self/fd/N`, when one could be made (see [`protect_hull`]).
    _exe: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// Deletes what removals set aside (see [`record::Reaper`]); the last
    /// handle dropped waits for it.
    reaper: std::sync::Arc<record::Reaper>,
    /// The monitors of launched containers whose report is not read yet
    /// (see [`Runtime::launch_container`]).
    launches: Launches,
}

type Launches = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<ContainerId, crate::monitor::Launch>>>;

/// Exec hull's children from a read-only detached bind of the binary, made
/// once: a monitor or an exec (container-facing commands, see
/// `linux::syscall` on CVE-2019-5736) then starts already protected
/// instead of re-executing itself, one exec of hull less on every
/// CreateContainer and ExecSync. Without it (no open_tree, kernels before
/// 5.12) the children protect themselves as before.
fn protect_hull(opts: &mut RuntimeOptions) -> Option<std::sync::Arc<std::os::fd::OwnedFd>> {
    use std::os::fd::AsRawFd;
    // Above stdio and the low numbers a child's setup may dup2() onto
    // before it execs this fd's path.
    let high = |fd: std::os::fd::OwnedFd| nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(64)).map_err(std::io::Error::from);
    match crate::linux::syscall::readonly_detached_binary(&opts.hull).and_then(high) {
        Ok(fd) => {
            // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
            let fd = unsafe { crate::linux::syscall::owned_fd(fd) };
            opts.hull = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            Some(std::sync::Arc::new(fd))
        }
        Err(e) => {
            log::debug!("no read-only bind of {} ({e}); its children re-exec themselves", opts.hull.display());
            None
        }
    }
}

impl Runtime {
    /// Open the runtime on its directories (made if missing), and start
    /// watching for container exits.
    pub fn open(mut opts: RuntimeOptions) -> Result<Runtime> {
        for d in [
            opts.state_dir.join("sandboxes"),
            opts.state_dir.join("containers"),
            opts.state_dir.join("names"),
            opts.run_dir.join("sandboxes"),
            opts.run_dir.join("containers"),
            opts.run_dir.join("exits"),
            opts.run_dir.join("oci"),
        ] {
            std::fs::create_dir_all(&d)
                .map_err(|e| RuntimeError::with_source(ErrorKind::Internal, format!("create {}", d.display()), e))?;
            record::sweep_removed(&d);
        }
        record::sweep_orphan_files(&opts.run_dir.join("exits"), ".json", &opts.state_dir.join("containers"));
        let exe = protect_hull(&mut opts);
        let bus: std::sync::Arc<events::EventBus> = Default::default();
        let reaper = std::sync::Arc::new(record::Reaper::start());
        let launches = Launches::default();
        // The watcher thread works on a second handle on the same
        // directories and event bus (a handle without a watcher).
        let view = Runtime {
            names: names::NameIndex::new(&opts.state_dir),
            opts: opts.clone(),
            bus: bus.clone(),
            _watcher: None,
            _exe: exe.clone(),
            reaper: reaper.clone(),
            launches: launches.clone(),
        };
        let watcher = events::watch(&opts.run_dir.join("exits"), move |id| view.note_exit(&id));
        if let Err(e) = &watcher {
            log::warn!("container exits will be seen only when asked: {e}");
        }
        let rt = Runtime { names: names::NameIndex::new(&opts.state_dir), opts, bus, _watcher: watcher.ok(), _exe: exe, reaper, launches };
        rt.recover();
        Ok(rt)
    }

    /// Reconcile with a crash: containers and sandboxes whose creator died
    /// mid-way (a Creating record nobody holds the lock of) are undone from
    /// what their records list. Everything else is read from the records
    /// (and the monitors' exit records) as it is asked for.
    fn recover(&self) {
        let mut kept: std::collections::HashMap<SandboxId, Vec<ContainerId>> = Default::default();
        for id in record::ids_in(&self.opts.state_dir.join("containers"), ContainerId::parse) {
            if let Some(sandbox) = self.recover_container(&id) {
                kept.entry(sandbox).or_default().push(id);
            }
        }
        self.relist_containers(kept);
        for id in record::ids_in(&self.opts.state_dir.join("sandboxes"), SandboxId::parse) {
            self.recover_sandbox(&id);
        }
        let has_dir = |kind: &str, id: &str| !id.is_empty() && self.opts.state_dir.join(kind).join(id).exists();
        self.names.sweep_temps(names::Kind::Sandbox, |id| has_dir("sandboxes", id));
        self.names.sweep_temps(names::Kind::Container, |id| has_dir("containers", id));
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.opts
    }

    pub fn state_dir(&self) -> &Path {
        &self.opts.state_dir
    }

    /// Where the monitors' exit records are.
    pub(crate) fn exits_dir(&self) -> PathBuf {
        self.opts.run_dir.join("exits")
    }

    /// The OCI state root of the containers (`hull --root` for them).
    pub fn oci_root(&self) -> crate::oci::state::StateRoot {
        crate::oci::state::StateRoot::new(self.opts.run_dir.join("oci"))
    }

    /// Receive the events of this runtime from now on. A subscriber that
    /// stops reading is dropped once its queue holds 4096 events.
    pub fn subscribe(&self) -> Result<EventSubscription> {
        Ok(EventSubscription { rx: self.bus.subscribe() })
    }
}

/// A stream of [`Event`]s; blocking, so an async caller reads it from a
/// blocking task.
pub struct EventSubscription {
    rx: std::sync::mpsc::Receiver<Event>,
}

impl EventSubscription {
    /// The next event, waiting at most `timeout`; None when none came.
    pub fn next_timeout(&self, timeout: Duration) -> Option<Event> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next event; None once the runtime is gone.
    pub fn next(&self) -> Option<Event> {
        self.rx.recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Runtime>();
        check::<SandboxConfig>();
        check::<ContainerConfig>();
        check::<RuntimeError>();
    }
}
