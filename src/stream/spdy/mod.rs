//! SPDY/3.1, the framing the Kubernetes streaming protocols (remotecommand
//! exec/attach, port-forward) run over when a client upgrades with
//! `Upgrade: SPDY/3.1`, as crictl and the kubelet do by default.
//!
//! Written here rather than taken from a crate: the one Rust SPDY crate
//! (spdy-mux) is client-oriented and GPL-3.0-only, which hull's Apache-2.0
//! licence cannot take.
pub mod conn;
pub mod dictionary;
pub mod frame;
pub mod headers;
pub mod session;
