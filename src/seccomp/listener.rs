//! Seccomp user notification: the notification fd of a loaded filter goes
//! to the seccomp agent listening at `linux.seccomp.listenerPath`, with the
//! container process state, as the runtime-spec describes: one message on
//! the connected SOCK_STREAM socket, the fd as SCM_RIGHTS, the payload
//! `{"ociVersion", "fds": ["seccompFd"], "pid", "metadata", "state"}`.
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde_json::{json, Value};

use crate::error::{Error, Result, SysContext};

/// Connect to the agent. Done by hull before it forks (the listener path
/// is a host path, unreachable once the process has pivoted), so the
/// socket is inherited across the fork; it is close-on-exec.
pub fn connect_listener(path: &Path) -> Result<OwnedFd> {
    let stream = std::os::unix::net::UnixStream::connect(path)
        .sys_context(|| format!("linux.seccomp.listenerPath: connect to {}", path.display()))?;
    Ok(OwnedFd::from(stream))
}

/// A connected agent socket and what to tell it besides the fd.
pub struct Listener {
    pub socket: OwnedFd,
    /// `linux.seccomp.listenerMetadata`.
    pub metadata: Option<String>,
    /// The container's state object.
    pub state: Value,
}

impl Listener {
    /// The runtime-spec's ContainerProcessState for the process `pid`.
    pub fn message(&self, pid: i32) -> Vec<u8> {
        let mut m = json!({
            "ociVersion": crate::oci::state::OCI_VERSION,
            "fds": ["seccompFd"],
            "pid": pid,
            "state": self.state,
        });
        if let Some(meta) = self.metadata.as_deref().filter(|m| !m.is_empty()) {
            m["metadata"] = json!(meta);
        }
        m.to_string().into_bytes()
    }

    /// Send the notification fd. Runs under the just-loaded filter: a
    /// profile that sends `sendmsg` itself to the agent would wait here for
    /// an agent that has no fd yet (as it would with runc).
    pub fn send(&self, notify_fd: RawFd, pid: i32) -> Result<()> {
        let payload = self.message(pid);
        let fds = [notify_fd];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let iov = [IoSlice::new(&payload)];
        sendmsg::<()>(self.socket.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)
            .map_err(|e| Error::sys("linux.seccomp.listenerPath: send the notification fd to the agent", e))?;
        Ok(())
    }
}
