//! hull: an OCI container runtime.
//!
//! Layout (data flows downwards):
//! - [`cli`]: the runc-compatible command line; thin, calls into the rooms below.
//! - [`oci`]: config loading and validation, container state, the lifecycle
//!   operations (create, start, kill, delete, exec...) and hooks.
//! - [`linux`]: what happens inside the new container: namespaces, rootfs and
//!   mounts, devices, process attributes, the init handshake, the console.
//! - [`runtime`]: id-keyed sandbox and container services shared by `hull pod`
//!   and the CRI server (records, name index, events; no fork in-process).
//! - [`cri`]: the CRI v1 server (`hull daemon`) over the runtime layer and images.
//! - [`pod`]: Kubernetes Pods without a kubelet (sandbox, volumes, supervisor).
//! - [`monitor`]: the per-container supervisor process (CRI logs, exit records).
//! - [`cgroups`]: placing containers in cgroups (v1 and v2) and removing them.
//! - [`network`]: pod networking with CNI plugins, pinned network namespaces.
//! - [`seccomp`]: seccomp profiles compiled with libseccomp, and the built-in
//!   default profile.
//! - [`image`]: image references, store, layer unpacking, registry pulls.
//! - [`stream`]: the streaming protocols (SPDY/3.1 framing) behind exec,
//!   attach and port-forward.
pub mod cgroups;
pub mod cli;
pub mod cri;
pub mod error;
pub mod image;
pub mod linux;
pub mod logging;
pub mod monitor;
pub mod network;
pub mod oci;
pub mod pod;
pub mod runtime;
pub mod seccomp;
pub mod stream;

pub use error::{Error, Result};
