//! Exec, attach and port-forward over an upgraded SPDY/3.1 connection, as crictl
//! and the kubelet speak them: the client opens one stream per stdio
//! stream (typed by the `streamType` header), or a data/error pair per
//! port-forward request (`port`, `requestID`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use super::exec::ExecTarget;
use super::protocol::{stream_type, ResizeDecoder};
use super::session::{run_attach, run_exec, AttachTarget, ExecIo, Out, Wanted};
use super::spdy::conn::{Connection, Stream, StreamReader, StreamWriter};
use super::spdy::headers::Headers;

/// How long the client has to open the streams it asked for.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

fn accept_reply(s: &Stream) {
    s.writer.reply(Headers::default(), false);
}

#[derive(Default)]
struct ExecStreams {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

/// Serve an exec on the connection until it ends.
pub async fn exec(conn: Connection, version: u8, target: ExecTarget, work: PathBuf) {
    let wanted = target.wanted();
    remotecommand(conn, version, wanted, move |io| run_exec(target, work, io)).await
}

/// Serve an attach on the connection until it ends.
pub async fn attach(conn: Connection, version: u8, target: AttachTarget) {
    let wanted = target.wanted();
    remotecommand(conn, version, wanted, move |io| run_attach(target, io)).await
}

/// The streams of an exec or attach, then the session on them.
async fn remotecommand<F, Fut>(mut conn: Connection, version: u8, w: Wanted, session: F)
where
    F: FnOnce(ExecIo) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let want = |on: bool| on as usize;
    let expected = 1 + want(w.stdin) + want(w.stdout) + want(w.stderr && !w.tty) + want(w.tty && version >= 3);
    let mut got = ExecStreams::default();
    let mut count = 0;
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while count < expected {
        let s = tokio::select! {
            s = conn.accept() => match s { Some(s) => s, None => return },
            _ = &mut deadline => {
                log::debug!("exec: the client opened {count} of {expected} streams in time");
                conn.shutdown();
                return;
            }
        };
        let slot = match s.headers.get("streamtype").unwrap_or("") {
            stream_type::ERROR => &mut got.error,
            stream_type::STDIN => &mut got.stdin,
            stream_type::STDOUT => &mut got.stdout,
            stream_type::STDERR => &mut got.stderr,
            stream_type::RESIZE => &mut got.resize,
            _ => {
                s.writer.reset();
                continue;
            }
        };
        if slot.is_some() {
            s.writer.reset();
            continue;
        }
        accept_reply(&s);
        *slot = Some(s);
        count += 1;
    }
    let Some(error) = got.error else {
        conn.shutdown();
        return;
    };
    let (gone_tx, gone) = oneshot::channel();
    let handle = conn.handle();
    let watcher = tokio::spawn(async move {
        // Streams opened after the handshake are not part of the protocol.
        while let Some(s) = conn.accept().await {
            s.writer.reset();
        }
        let _ = gone_tx.send(());
    });
    let mut pumps = Vec::new();
    let mut sink = |s: Option<Stream>| {
        s.map(|s| {
            let (tx, rx) = mpsc::channel(8);
            pumps.push(tokio::spawn(pump_out(rx, s.writer)));
            tx
        })
    };
    let error_sink = sink(Some(error)).expect("error stream");
    let (stdout, stderr) = (sink(got.stdout), sink(got.stderr));
    let io = ExecIo {
        version,
        stdin: got.stdin.map(|s| forward_in(s.reader)),
        resize: got.resize.map(|s| forward_resize(s.reader)),
        stdout,
        stderr,
        error: error_sink,
        gone,
    };
    session(io).await;
    for p in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
    }
    handle.shutdown();
    watcher.abort();
}

/// Client data of a stream into a channel; the channel closes at EOF.
fn forward_in(mut r: StreamReader) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(d) = r.read().await {
            if tx.send(d).await.is_err() {
                break;
            }
        }
    });
    rx
}

fn forward_resize(mut r: StreamReader) -> mpsc::Receiver<super::protocol::TerminalSize> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut dec = ResizeDecoder::default();
        while let Some(d) = r.read().await {
            let Ok(sizes) = dec.feed(&d) else { break };
            for s in sizes {
                if tx.send(s).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

async fn pump_out(mut rx: mpsc::Receiver<Out>, w: StreamWriter) {
    while let Some(o) = rx.recv().await {
        match o {
            Out::Data(d) => {
                if !w.write(d).await {
                    return;
                }
            }
            Out::Close(done) => {
                w.close().await;
                let _ = done.send(());
                return;
            }
        }
    }
}

/// Serve port-forward streams on the connection until it ends.
pub async fn port_forward(mut conn: Connection, netns: PathBuf) {
    // requestID -> the half of the pair that came first.
    let mut pending: HashMap<String, Stream> = HashMap::new();
    while let Some(s) = conn.accept().await {
        let kind = s.headers.get("streamtype").unwrap_or("").to_string();
        let Some(request) = s.headers.get("requestid").map(str::to_string) else {
            s.writer.reset();
            continue;
        };
        if kind != stream_type::DATA && kind != stream_type::ERROR {
            s.writer.reset();
            continue;
        }
        accept_reply(&s);
        let Some(other) = pending.remove(&request) else {
            if pending.len() >= 1000 {
                s.writer.reset();
            } else {
                pending.insert(request, s);
            }
            continue;
        };
        let other_kind = other.headers.get("streamtype").unwrap_or("").to_string();
        let (data, error) = match (kind.as_str(), other_kind.as_str()) {
            (stream_type::DATA, stream_type::ERROR) => (s, other),
            (stream_type::ERROR, stream_type::DATA) => (other, s),
            _ => {
                s.writer.reset();
                other.writer.reset();
                continue;
            }
        };
        tokio::spawn(forward_pair(data, error, netns.clone()));
    }
}

async fn forward_pair(data: Stream, error: Stream, netns: PathBuf) {
    let port = data.headers.get("port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p > 0);
    let Some(port) = port else {
        error.writer.write(b"invalid port in the data stream's \"port\" header".to_vec()).await;
        error.writer.close().await;
        data.writer.close().await;
        return;
    };
    let tcp = match super::portforward::connect(&netns, port).await {
        Ok(t) => t,
        Err(e) => {
            let msg = super::portforward::error_message(port, &e);
            error.writer.write(msg.into_bytes()).await;
            error.writer.close().await;
            data.writer.close().await;
            return;
        }
    };
    let (mut rd, wr) = tcp.into_split();
    let Stream { reader, writer, .. } = data;
    let upstream = super::portforward::upstream(wr, forward_in(reader));
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !writer.write(buf[..n].to_vec()).await {
                    break;
                }
            }
        }
    }
    writer.close().await;
    let _ = upstream.await;
    error.writer.close().await;
}
