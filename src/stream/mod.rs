//! The streaming server behind the CRI `Exec`, `Attach` and `PortForward`
//! RPCs: those RPCs return a URL on it ([`server`]); the client (crictl, or
//! the kubelet for the API server) upgrades an HTTP connection there to
//! SPDY/3.1 ([`spdy`], [`spdy_front`]) or WebSocket ([`ws_front`]) and
//! speaks the Kubernetes subprotocols ([`protocol`]). Sessions run `hull
//! exec` as a child ([`exec`], [`session`]), attach to the container's
//! stdio at its monitor's attach socket (`runtime::attach`), or connect
//! inside the pod's network namespace ([`portforward`]); nothing forks.
//! TLS is optional ([`tls`]).
pub mod exec;
pub mod portforward;
pub mod protocol;
pub mod server;
pub mod session;
pub mod spdy;
pub mod spdy_front;
pub mod tls;
pub mod ws_front;
