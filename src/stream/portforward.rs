//! Port-forward's far end: a TCP connection to 127.0.0.1:PORT (then
//! [::1]:PORT) inside a pod's network namespace, made from a short-lived
//! thread that enters the namespace, so no thread of the daemon's pools is
//! ever left in another namespace (and nothing forks).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where port-forward connects, resolved by whoever issued the token.
#[derive(Debug, Clone)]
pub struct PortForwardTarget {
    /// The pod's network namespace (a pinned netns file).
    pub netns: PathBuf,
    /// Ports named by the request (WebSocket clients may name them in the
    /// URL instead).
    pub ports: Vec<u16>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connect to `port` on the pod's loopback.
pub async fn connect(netns: &Path, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let netns = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("hull-portfwd".into()).spawn(move || {
        let _ = tx.send(connect_in(&netns, port));
    })?;
    let stream = rx.await.map_err(|_| std::io::Error::other("port-forward connector thread died"))??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}

/// Connect to `port` on the pod's loopback, blocking (for a caller that is
/// not on tokio: `hull pod port-forward`).
pub fn connect_blocking(netns: &Path, port: u16) -> std::io::Result<TcpStream> {
    let netns = netns.to_path_buf();
    std::thread::Builder::new()
        .name("hull-portfwd".into())
        .spawn(move || connect_in(&netns, port))?
        .join()
        .map_err(|_| std::io::Error::other("port-forward connector thread died"))?
}

/// Runs on its own thread, which ends right after: setns(CLONE_NEWNET)
/// changes only the calling thread's namespace.
fn connect_in(netns: &Path, port: u16) -> std::io::Result<TcpStream> {
    let ns = std::fs::File::open(netns)?;
    nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e4) => TcpStream::connect_timeout(&SocketAddr::from((Ipv6Addr::LOCALHOST, port)), CONNECT_TIMEOUT)
            .map_err(|_| std::io::Error::new(e4.kind(), format!("dial tcp4 127.0.0.1:{port}: {e4}"))),
    }
}

/// The error-stream message for a failed connection (the kubelet's words).
pub fn error_message(port: u16, e: &std::io::Error) -> String {
    format!("an error occurred forwarding {port} -> {port}: {e}")
}

/// Copy the client's bytes to the pod's socket; the channel closing (the
/// client's end of data) shuts the socket's write side.
pub fn upstream(mut wr: tokio::net::tcp::OwnedWriteHalf, mut from: tokio::sync::mpsc::Receiver<Vec<u8>>) -> tokio::task::JoinHandle<()> {
    use tokio::io::AsyncWriteExt;
    tokio::spawn(async move {
        while let Some(d) = from.recv().await {
            if wr.write_all(&d).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    })
}
