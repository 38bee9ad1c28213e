//! Exec, attach and port-forward over WebSocket: the channel protocols (the first
//! byte of every binary message names the channel; v5 adds a close signal),
//! and SPDY tunnelled in binary messages for port-forward (KEP-4006).

use std::path::PathBuf;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::exec::ExecTarget;
use super::protocol::{channel, ResizeDecoder};
use super::session::{run_attach, run_exec, AttachTarget, ExecIo, Out, Sink, Wanted};

/// Serve an exec on a WebSocket until it ends.
pub async fn exec<T>(ws: WebSocketStream<T>, version: u8, target: ExecTarget, work: PathBuf)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let wanted = target.wanted();
    remotecommand(ws, version, wanted, move |io| run_exec(target, work, io)).await
}

/// Serve an attach on a WebSocket until it ends.
pub async fn attach<T>(ws: WebSocketStream<T>, version: u8, target: AttachTarget)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let wanted = target.wanted();
    remotecommand(ws, version, wanted, move |io| run_attach(target, io)).await
}

/// The channels of an exec or attach, then the session on them.
async fn remotecommand<T, F, Fut>(ws: WebSocketStream<T>, version: u8, w: Wanted, session: F)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    F: FnOnce(ExecIo) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (mut tx, mut rx) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Out)>(16);
    let writer = tokio::spawn(async move {
        while let Some((ch, o)) = out_rx.recv().await {
            let (msg, done) = match o {
                Out::Data(mut d) => {
                    d.insert(0, ch);
                    (Some(d), None)
                }
                Out::Close(done) if version >= 5 => (Some(vec![channel::CLOSE, ch]), Some(done)),
                Out::Close(done) => (None, Some(done)),
            };
            if let Some(m) = msg {
                if tx.send(Message::binary(m)).await.is_err() {
                    return;
                }
            }
            if let Some(d) = done {
                let _ = d.send(());
            }
        }
        let _ = tx.send(Message::Close(None)).await;
        let _ = tx.close().await;
    });
    let sink = |ch: u8, on: bool| on.then(|| channel_sink(ch, out_tx.clone()));
    let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>(4);
    let (resize_tx, resize_rx) = mpsc::channel(4);
    let (gone_tx, gone) = oneshot::channel();
    let tty = w.tty;
    let reader = tokio::spawn(async move {
        let mut stdin_tx = Some(stdin_tx);
        let mut dec = ResizeDecoder::default();
        while let Some(Ok(m)) = rx.next().await {
            let Message::Binary(b) = m else {
                if matches!(m, Message::Close(_)) {
                    break;
                }
                continue;
            };
            match (b.first().copied(), b.get(1).copied()) {
                (Some(channel::STDIN), _) => {
                    if let Some(t) = &stdin_tx {
                        if t.send(b[1..].to_vec()).await.is_err() {
                            stdin_tx = None;
                        }
                    }
                }
                (Some(channel::RESIZE), _) => match dec.feed(&b[1..]) {
                    Ok(sizes) => {
                        for s in sizes {
                            let _ = resize_tx.send(s).await;
                        }
                    }
                    Err(_) => break,
                },
                (Some(channel::CLOSE), Some(channel::STDIN)) => stdin_tx = None,
                _ => {}
            }
        }
        let _ = gone_tx.send(());
    });
    let io = ExecIo {
        version,
        stdin: w.stdin.then_some(stdin_rx),
        resize: tty.then_some(resize_rx),
        stdout: sink(channel::STDOUT, w.stdout),
        stderr: sink(channel::STDERR, w.stderr && !tty),
        error: channel_sink(channel::ERROR, out_tx.clone()),
        gone,
    };
    drop(out_tx);
    session(io).await;
    reader.abort();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
}

/// A sink for one channel, multiplexed into the socket's writer.
fn channel_sink(ch: u8, out: mpsc::Sender<(u8, Out)>) -> Sink {
    let (tx, mut rx) = mpsc::channel::<Out>(8);
    tokio::spawn(async move {
        while let Some(o) = rx.recv().await {
            let close = matches!(o, Out::Close(_));
            if out.send((ch, o)).await.is_err() || close {
                return;
            }
        }
    });
    tx
}

/// Port-forward with a data and an error channel per port (2i, 2i+1); the
/// server's first message on each channel is the port, little-endian.
pub async fn port_forward<T>(ws: WebSocketStream<T>, ports: Vec<u16>, netns: PathBuf)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut tx, mut rx) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(16);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if tx.send(Message::binary(m)).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Message::Close(None)).await;
    });
    let mut inputs = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        for ch in [data_ch, err_ch] {
            let mut m = vec![ch];
            m.extend_from_slice(&port.to_le_bytes());
            let _ = out_tx.send(m).await;
        }
        let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>(4);
        inputs.push(in_tx);
        tokio::spawn(forward_port(*port, netns.clone(), data_ch, err_ch, in_rx, out_tx.clone()));
    }
    drop(out_tx);
    while let Some(Ok(m)) = rx.next().await {
        match m {
            Message::Binary(b) if !b.is_empty() && b[0] % 2 == 0 => {
                if let Some(t) = inputs.get(usize::from(b[0] / 2)) {
                    let _ = t.send(b[1..].to_vec()).await;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    drop(inputs);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
}

async fn forward_port(port: u16, netns: PathBuf, data_ch: u8, err_ch: u8, input: mpsc::Receiver<Vec<u8>>, out: mpsc::Sender<Vec<u8>>) {
    let tcp = match super::portforward::connect(&netns, port).await {
        Ok(t) => t,
        Err(e) => {
            let mut m = vec![err_ch];
            m.extend_from_slice(super::portforward::error_message(port, &e).as_bytes());
            let _ = out.send(m).await;
            return;
        }
    };
    let (mut rd, wr) = tcp.into_split();
    let up = super::portforward::upstream(wr, input);
    let mut buf = vec![0u8; 32 * 1024];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let mut m = Vec::with_capacity(n + 1);
        m.push(data_ch);
        m.extend_from_slice(&buf[..n]);
        if out.send(m).await.is_err() {
            break;
        }
    }
    up.abort();
}

/// SPDY carried in WebSocket binary messages: the messages become a byte
/// stream for the SPDY connection code.
pub fn tunnel<T>(ws: WebSocketStream<T>) -> tokio::io::DuplexStream
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut rd, mut wr) = tokio::io::split(ours);
    let (mut tx, mut rx) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(m)) = rx.next().await {
            match m {
                Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 || tx.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
        let _ = tx.send(Message::Close(None)).await;
    });
    theirs
}
