//! The typed handshake between hull and the processes it forks (the
//! bootstrap child and the container init), over a SOCK_SEQPACKET
//! socketpair: one JSON message per packet, so message boundaries are kept
//! and a dead peer shows up as end-of-file.
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, SysContext};

/// Messages from the forked side to hull.
#[derive(Debug, Serialize, Deserialize)]
pub enum ChildMessage {
    /// The bootstrap child unshared a user namespace: hull must write its
    /// uid/gid maps now (a process cannot map itself to arbitrary host ids).
    WriteIdMaps { pid: i32 },
    /// The bootstrap child forked the container init (host pid).
    InitForked { pid: i32 },
    /// The rootfs is mounted but not yet pivoted into: run the
    /// prestart/createRuntime hooks in the runtime namespace now.
    RunCreateRuntimeHooks,
    /// Init finished setting up and now blocks until `start`.
    InitReady,
    /// An exec'd process is about to run the user program.
    ExecReady,
    /// Setup failed: the error's kind, errno and message, so that hull's
    /// side rebuilds an error of the same kind.
    Failed(crate::error::RemoteError),
}

/// Messages from hull to the forked side.
#[derive(Debug, Serialize, Deserialize)]
pub enum ParentMessage {
    /// The child was placed in its cgroup and may go on.
    Proceed,
    IdMapsWritten,
    /// To the init (or exec'd process): your pid on the host; begin setup.
    Start {
        host_pid: i32,
    },
    CreateRuntimeHooksDone,
}

/// One end of the handshake socket.
pub struct Channel {
    fd: OwnedFd,
}

/// Largest message we ever send; error texts are truncated to fit.
const MAX_MESSAGE: usize = 64 * 1024;

impl Channel {
    /// A connected pair: (hull's end, the child's end). Both are
    /// close-on-exec so neither leaks into the container program.
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .sys_context(|| "socketpair for init handshake".into())?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn send<M: Serialize>(&self, msg: &M) -> Result<()> {
        let mut bytes = serde_json::to_vec(msg).map_err(|e| Error::Init(e.to_string()))?;
        bytes.truncate(MAX_MESSAGE);
        send(self.fd.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL).sys_context(|| "send on init handshake socket".into())?;
        Ok(())
    }

    /// Next message, or `None` when the peer closed its end (exited or exec'd).
    pub fn recv<M: for<'de> Deserialize<'de>>(&self) -> Result<Option<M>> {
        let buf = loop {
            match crate::linux::syscall::recv_new(self.fd.as_raw_fd(), MAX_MESSAGE, 0) {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // A peer that closed with a message of ours unread (killed
                // before it read it, or failed before it looked) resets the
                // connection. The error is reported once, before what the
                // peer sent first (its Failed report): read on, to those
                // messages and then end-of-file.
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => continue,
                other => break other.sys_context(|| "receive on init handshake socket".into())?,
            }
        };
        if buf.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&buf)
            .map(Some)
            .map_err(|e| Error::Init(format!("bad handshake message: {e}")))
    }

    /// Receive, treating end-of-file as an error that says what was awaited.
    pub fn expect<M: for<'de> Deserialize<'de>>(&self, awaited: &str) -> Result<M> {
        self.recv()?.ok_or_else(|| Error::Init(format!("peer exited while hull waited for {awaited}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_the_pair_and_eof_is_none() {
        let (a, b) = Channel::pair().unwrap();
        b.send(&ChildMessage::InitForked { pid: 42 }).unwrap();
        match a.recv::<ChildMessage>().unwrap() {
            Some(ChildMessage::InitForked { pid }) => assert_eq!(pid, 42),
            other => panic!("unexpected {other:?}"),
        }
        drop(b);
        assert!(a.recv::<ChildMessage>().unwrap().is_none());
        // A peer gone with our message unread resets the connection: what
        // it sent before still comes through, then None.
        let (a, b) = Channel::pair().unwrap();
        b.send(&ChildMessage::InitReady).unwrap();
        a.send(&ParentMessage::Proceed).unwrap();
        drop(b);
        assert!(matches!(a.recv::<ChildMessage>().unwrap(), Some(ChildMessage::InitReady)));
        assert!(a.recv::<ChildMessage>().unwrap().is_none());
        let (a, b) = Channel::pair().unwrap();
        a.send(&ParentMessage::Proceed).unwrap();
        drop(b);
        assert!(a.recv::<ChildMessage>().unwrap().is_none());
    }

    #[test]
    fn a_long_message_comes_whole_and_in_order() {
        let (a, b) = Channel::pair().unwrap();
        let long = "x".repeat(40 * 1024);
        b.send(&ChildMessage::Failed(Error::Config(long.clone()).to_remote())).unwrap();
        b.send(&ChildMessage::InitForked { pid: 7 }).unwrap();
        let Some(ChildMessage::Failed(r)) = a.recv::<ChildMessage>().unwrap() else { panic!("no Failed message") };
        assert!(Error::from_remote(r).to_string().contains(&long));
        assert!(matches!(a.recv::<ChildMessage>().unwrap(), Some(ChildMessage::InitForked { pid: 7 })));
    }

    #[test]
    fn a_failure_keeps_its_kind_and_errno_across_the_socket() {
        let (a, b) = Channel::pair().unwrap();
        let e = Error::sys("mount proc", std::io::Error::from_raw_os_error(libc::EPERM)).with_context("mounts[1] (/proc)");
        b.send(&ChildMessage::Failed(e.to_remote())).unwrap();
        let Some(ChildMessage::Failed(r)) = a.recv::<ChildMessage>().unwrap() else { panic!("no Failed message") };
        let back = Error::from_remote(r).with_context("container init failed");
        assert_eq!(back.kind(), crate::error::ErrorKind::Sys);
        assert_eq!(back.errno(), Some(libc::EPERM));
        assert!(back.to_string().starts_with("container init failed: mounts[1] (/proc): mount proc: "), "{back}");
    }
}
