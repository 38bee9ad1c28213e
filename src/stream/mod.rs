//! The streaming protocols behind the CRI `Exec`, `Attach` and `PortForward`
//! RPCs: the wire layers first ([`spdy`]); the HTTP server that serves the
//! URLs those RPCs return builds on them.
pub mod spdy;
