//! The CRI v1 server (`hull daemon`): the kubelet's RuntimeService and
//! ImageService over a unix socket, as a thin translation onto the runtime
//! layer ([`crate::runtime`]) and the image store ([`crate::image`]).
//!
//! - [`config`]: the daemon's TOML settings and the flags over them;
//!   [`cni_template`]: the CNI config rendered from the pod CIDR.
//! - [`server`]: socket, lock file, tokio and tonic, signals, logging.
//! - [`service`]: the two services' RPCs, each in its span, routed to:
//!   [`version`] (Version, Status, RuntimeConfig, UpdateRuntimeConfig),
//!   [`sandbox`], [`container`], [`exec`], [`stats`], [`events`], [`image`].
//! - [`convert`]: shared field translations; [`errors`]: the one mapping of
//!   hull's errors onto gRPC statuses.
//!
//! Bindings: the `k8s-cri` crate's `runtime.v1` (CRI API v1). Nothing here
//! forks: the runtime layer starts processes by exec'ing hull.
pub mod cni_template;
pub mod config;
pub mod container;
pub mod convert;
pub mod errors;
pub mod events;
pub mod exec;
pub mod image;
pub mod sandbox;
pub mod server;
pub mod service;
pub mod stats;
pub mod version;
