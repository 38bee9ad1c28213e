//! Pod networking with CNI 1.0 plugins: a service the pod layer calls.
//!
//! - [`config`]: finding and parsing the network config (`/etc/cni/net.d`),
//!   plugin dirs, the per-call time limit.
//! - [`attachment`]: the serialisable record of one container's attachment
//!   ([`Attachment`]) and its ADD, CHECK and DEL.
//! - [`invoke`]: running one plugin binary (env, stdin, result or error
//!   JSON, time limit and kill).
//! - [`result`]: the typed CNI result (interfaces, IPs, routes, DNS).
//! - [`netns`]: pinned network namespaces (new ones, or a sandbox holder's
//!   pinned with [`pin_netns`]) and `lo` up. Give CNI a pinned path, not
//!   `/proc/<pid>/ns/net`: DEL after a crash must not depend on a pid that
//!   may have been reused. CNI refuses to touch hull's own netns anyway.
//!
//! Typical use by the pod layer:
//!
//! ```no_run
//! # fn main() -> Result<(), hull::network::NetworkError> {
//! use hull::network::{self, CniConfig, CniOptions};
//! let opts = CniOptions::default();
//! // a new pinned netns with lo up (create_netns + loopback_up)
//! let ns = network::create_pod_netns("/run/hull/netns".as_ref(), "pod1", &opts)?;
//! let mut att = CniConfig::discover(&opts)?.attachment("pod1", &ns, "eth0");
//! att.port_mappings.push("8080:80/tcp".parse()?);
//! // store `att` (serde) now, so DEL can run after a crash
//! let result = att.add()?;
//! println!("pod IPs: {:?}", result.pod_ips());
//! // store `att` again (it now holds the result); later:
//! att.del()?;
//! network::remove_netns(&ns)?;
//! # Ok(()) }
//! ```
pub mod attachment;
pub mod config;
pub mod error;
pub mod invoke;
pub mod netns;
pub mod result;

pub use attachment::{Attachment, PortMapping};
pub use config::{CniConfig, CniOptions, NetworkConfigList, PluginConfig};
pub use error::NetworkError;
pub use netns::{create_netns, create_pod_netns, is_netns, is_own_netns, loopback_up, pin_netns, remove_netns};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
