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
//! - **No fork in this process**: everything that needs a fresh process
//!   (holder, monitor, exec) is a hull binary exec'd with a hidden
//!   subcommand, so the layer is safe to call from a multi-threaded program
//!   (the CRI server is one). [`Runtime`] is `Send + Sync` and its methods
//!   take `&self`.
//!
//! # Errors
//! Every method returns [`RuntimeError`], whose [`ErrorKind`] maps onto a
//! gRPC code with the one function [`grpc_code`].
mod child;
pub mod config;
pub mod error;
pub mod events;
pub mod holder;
pub mod id;
pub mod names;
pub mod record;
pub mod spec;
pub mod status;

use std::path::{Path, PathBuf};
use std::time::Duration;

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
}

fn not_built(what: &str) -> RuntimeError {
    RuntimeError::new(ErrorKind::Unimplemented, format!("{what} is not built yet"))
}

impl Runtime {
    /// Open the runtime on its directories (made if missing).
    pub fn open(opts: RuntimeOptions) -> Result<Runtime> {
        Ok(Runtime { opts })
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.opts
    }

    pub fn state_dir(&self) -> &Path {
        &self.opts.state_dir
    }

    // --- sandboxes ---

    /// Make a sandbox and return its id once it is Ready (holder running,
    /// network attached). On failure nothing of it is left.
    pub fn create_sandbox(&self, _config: &SandboxConfig) -> Result<SandboxId> {
        Err(not_built("create_sandbox"))
    }

    /// Stop the sandbox's containers (each with `timeout` before SIGKILL),
    /// give its network back (CNI DEL) and stop its holder. The record stays
    /// (NotReady) until [`Runtime::remove_sandbox`]. Idempotent: a sandbox
    /// that is gone or already stopped is success.
    pub fn stop_sandbox(&self, _id: &SandboxId, _timeout: Duration) -> Result<()> {
        Err(not_built("stop_sandbox"))
    }

    /// Stop (if needed) and remove the sandbox, its containers and
    /// everything they made. Idempotent.
    pub fn remove_sandbox(&self, _id: &SandboxId) -> Result<()> {
        Err(not_built("remove_sandbox"))
    }

    pub fn sandbox_status(&self, _id: &SandboxId) -> Result<SandboxStatus> {
        Err(not_built("sandbox_status"))
    }

    pub fn list_sandboxes(&self, _filter: &SandboxFilter) -> Result<Vec<SandboxStatus>> {
        Err(not_built("list_sandboxes"))
    }

    /// The id holding a sandbox name, if any.
    pub fn find_sandbox(
        &self,
        _namespace: &str,
        _name: &str,
        _attempt: u32,
    ) -> Result<Option<SandboxId>> {
        Err(not_built("find_sandbox"))
    }

    /// The pod cgroup's usage.
    pub fn sandbox_stats(&self, _id: &SandboxId) -> Result<ContainerStats> {
        Err(not_built("sandbox_stats"))
    }

    // --- containers ---

    /// Make a container in a Ready sandbox; its process waits in state
    /// Created until [`Runtime::start_container`].
    pub fn create_container(
        &self,
        _sandbox: &SandboxId,
        _config: &ContainerConfig,
    ) -> Result<ContainerId> {
        Err(not_built("create_container"))
    }

    pub fn start_container(&self, _id: &ContainerId) -> Result<()> {
        Err(not_built("start_container"))
    }

    /// Send the stop signal (the config's, the image's, or SIGTERM), wait
    /// up to `timeout` for the exit, then SIGKILL. Idempotent: an exited
    /// container is success.
    pub fn stop_container(&self, _id: &ContainerId, _timeout: Duration) -> Result<()> {
        Err(not_built("stop_container"))
    }

    /// Remove a container (killed first if it runs) with its rootfs and
    /// records. Idempotent.
    pub fn remove_container(&self, _id: &ContainerId) -> Result<()> {
        Err(not_built("remove_container"))
    }

    pub fn container_status(&self, _id: &ContainerId) -> Result<ContainerStatus> {
        Err(not_built("container_status"))
    }

    pub fn list_containers(&self, _filter: &ContainerFilter) -> Result<Vec<ContainerStatus>> {
        Err(not_built("list_containers"))
    }

    /// The id holding a container name in a sandbox, if any.
    pub fn find_container(
        &self,
        _sandbox: &SandboxId,
        _name: &str,
        _attempt: u32,
    ) -> Result<Option<ContainerId>> {
        Err(not_built("find_container"))
    }

    /// Change a created or running container's cgroup limits.
    pub fn update_resources(&self, _id: &ContainerId, _resources: &LinuxResources) -> Result<()> {
        Err(not_built("update_resources"))
    }

    /// Run `cmd` in a running container and collect its output; after
    /// `timeout` (None: no limit) the process is killed and reaped and the
    /// error is DeadlineExceeded.
    pub fn exec_sync(
        &self,
        _id: &ContainerId,
        _cmd: &[String],
        _timeout: Option<Duration>,
    ) -> Result<ExecSyncResult> {
        Err(not_built("exec_sync"))
    }

    /// Make the monitor reopen the container's log file (after rotation).
    pub fn reopen_log(&self, _id: &ContainerId) -> Result<()> {
        Err(not_built("reopen_log"))
    }

    pub fn container_stats(&self, _id: &ContainerId) -> Result<ContainerStats> {
        Err(not_built("container_stats"))
    }

    pub fn list_container_stats(&self, _filter: &ContainerFilter) -> Result<Vec<ContainerStats>> {
        Err(not_built("list_container_stats"))
    }

    // --- events ---

    /// Receive the events of this runtime from now on. A subscriber that
    /// stops reading is dropped once its queue holds 4096 events.
    pub fn subscribe(&self) -> Result<EventSubscription> {
        Err(not_built("subscribe"))
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
