//! One exec session, independent of the transport: the process's stdio
//! wired to the client's streams (or channels), resizes applied, the final
//! status written to the error stream, and the process killed when the
//! client goes away. The SPDY and WebSocket front ends only build an
//! [`ExecIo`] out of their streams.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::exec::{ExecTarget, Process, Reader};
use super::protocol::{final_status, TerminalSize};
use crate::runtime::attach::{AttachPoint, Output};

/// The client streams a remotecommand session (exec or attach) has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecTarget {
    pub fn wanted(&self) -> Wanted {
        Wanted { stdin: self.stdin, stdout: self.stdout, stderr: self.stderr, tty: self.tty }
    }
}

/// An attach, resolved by whoever issued its token: the container's attach
/// point and the streams the client asked for.
#[derive(Debug, Clone)]
pub struct AttachTarget {
    pub point: AttachPoint,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl AttachTarget {
    /// A terminal's output is one stream; stdin only where the container has one.
    pub fn wanted(&self) -> Wanted {
        let tty = self.point.tty;
        Wanted { stdin: self.stdin && self.point.stdin, stdout: self.stdout, stderr: self.stderr && !tty, tty }
    }
}

/// What goes out on one of the client's streams.
#[derive(Debug)]
pub enum Out {
    Data(Vec<u8>),
    /// This side is done with the stream; the sender is told once
    /// everything before the close went out on the connection.
    Close(oneshot::Sender<()>),
}

/// Close a sink and wait until its data went out (or the client is gone).
pub async fn close_and_flush(s: &Sink) {
    let (tx, rx) = oneshot::channel();
    if s.send(Out::Close(tx)).await.is_ok() {
        let _ = rx.await;
    }
}

pub type Sink = mpsc::Sender<Out>;

/// The client's side of an exec, as channels.
pub struct ExecIo {
    /// The protocol version (1..=5) for the error stream's format.
    pub version: u8,
    /// Client input; the channel closing means stdin EOF.
    pub stdin: Option<mpsc::Receiver<Vec<u8>>>,
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    pub stdout: Option<Sink>,
    pub stderr: Option<Sink>,
    pub error: Sink,
    /// Fires (or is dropped) when the client's connection is gone.
    pub gone: oneshot::Receiver<()>,
}

/// How long output may keep draining after the process ended (its
/// children may still hold the pipes).
const DRAIN: Duration = Duration::from_secs(2);

/// Run the exec to its end.
pub async fn run_exec(target: ExecTarget, work: PathBuf, io: ExecIo) {
    let ExecIo { version, stdin, resize, stdout, stderr, error, mut gone } = io;
    let mut p = match Process::start(&target, &work).await {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("exec in container {}: {e}", target.container);
            close_all([stdout.as_ref(), stderr.as_ref()]).await;
            let _ = error.send(Out::Data(final_status(version, None, Some(&msg)))).await;
            close_all([Some(&error)]).await;
            return;
        }
    };
    let copies = [copy_out(p.stdout.take(), stdout.clone()), copy_out(p.stderr.take(), stderr.clone())];
    let feeder = stdin.map(|rx| tokio::spawn(feed_stdin(rx, p.stdin.take(), target.tty)));
    let status = {
        let mut resize = resize;
        loop {
            tokio::select! {
                r = p.wait() => break Some(r),
                _ = &mut gone => break None,
                size = recv_resize(&mut resize) => match size {
                    Some(s) => p.resize(s),
                    None => resize = None,
                },
            }
        }
    };
    let Some(status) = status else {
        // The client left: no one reads the output or the status.
        p.kill().await;
        for c in copies.into_iter().flatten() {
            c.abort();
        }
        if let Some(f) = feeder {
            f.abort();
        }
        return;
    };
    if let Some(f) = feeder {
        f.abort();
    }
    for c in copies.into_iter().flatten() {
        let _ = tokio::time::timeout(DRAIN, c).await;
    }
    // The output is all out before the status: a client may stop reading
    // at the status (the kubelet writes it last too).
    close_all([stdout.as_ref(), stderr.as_ref()]).await;
    let final_bytes = match status {
        Ok(code) => final_status(version, Some(code), None),
        Err(e) => final_status(version, None, Some(&format!("wait for exec: {e}"))),
    };
    let _ = error.send(Out::Data(final_bytes)).await;
    close_all([Some(&error)]).await;
}

/// Attach to the container's stdio at its monitor until the container's
/// output ends (then the status is Success, as the kubelet reports it) or
/// the client leaves (a detach: the container runs on).
pub async fn run_attach(target: AttachTarget, io: ExecIo) {
    let ExecIo { version, stdin, resize, stdout, stderr, error, mut gone } = io;
    let point = target.point.clone();
    let conn = match point.connect(stdin.is_some()).and_then(|c| c.into_async()) {
        Ok(c) => c,
        Err(e) => {
            close_all([stdout.as_ref(), stderr.as_ref()]).await;
            let _ = error.send(Out::Data(final_status(version, None, Some(&e.to_string())))).await;
            close_all([Some(&error)]).await;
            return;
        }
    };
    let (mut stdin, mut resize) = (stdin, resize);
    let failure = loop {
        tokio::select! {
            out = conn.recv() => match out {
                Ok(Some(Output::Stdout(d))) => if let Some(s) = &stdout {
                    let _ = s.send(Out::Data(d)).await;
                },
                Ok(Some(Output::Stderr(d))) => if let Some(s) = &stderr {
                    let _ = s.send(Out::Data(d)).await;
                },
                Ok(None) => break None,
                Err(e) => break Some(format!("attach to container {}: {e}", point.container)),
            },
            _ = &mut gone => return,
            data = recv_stdin(&mut stdin) => {
                let sent = match data {
                    Some(d) => conn.write_stdin(&d).await,
                    None => {
                        stdin = None;
                        conn.close_stdin().await
                    }
                };
                if let Err(e) = sent {
                    break Some(format!("attach to container {}: {e}", point.container));
                }
            }
            size = recv_resize(&mut resize) => match size {
                Some(s) => { let _ = conn.resize(s.height, s.width).await; }
                None => resize = None,
            },
        }
    };
    drop(conn);
    close_all([stdout.as_ref(), stderr.as_ref()]).await;
    let _ = error
        .send(Out::Data(final_status(version, failure.is_none().then_some(0), failure.as_deref())))
        .await;
    close_all([Some(&error)]).await;
}

async fn recv_stdin(r: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match r {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_resize(r: &mut Option<mpsc::Receiver<TerminalSize>>) -> Option<TerminalSize> {
    match r {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn close_all<const N: usize>(sinks: [Option<&Sink>; N]) {
    for s in sinks.into_iter().flatten() {
        close_and_flush(s).await;
    }
}

/// Copy a process output to the client's stream (or drain it if the
/// client did not ask for that stream, so the process never blocks).
fn copy_out(from: Option<Reader>, to: Option<Sink>) -> Option<tokio::task::JoinHandle<()>> {
    let mut from = from?;
    Some(tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // A pty master reads EIO once the terminal's last user closed it:
            // that is its end of file.
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(to) = &to {
                if to.send(Out::Data(buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }))
}

async fn feed_stdin(mut rx: mpsc::Receiver<Vec<u8>>, to: Option<super::exec::Writer>, tty: bool) {
    let Some(mut to) = to else { return };
    while let Some(data) = rx.recv().await {
        if to.write_all(&data).await.is_err() || to.flush().await.is_err() {
            return;
        }
    }
    // EOF: close the pipe. With a terminal this drops only our copy of the
    // master (the output side keeps it open, so it is not hung up); the
    // process sees EOF when the client types it.
    if !tty {
        let _ = to.shutdown().await;
    }
}
