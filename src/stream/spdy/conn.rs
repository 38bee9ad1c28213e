//! One SPDY/3.1 server connection on tokio: a driver task owns the socket
//! and the [`Session`]; the streams the peer opens come out of
//! [`Connection::accept`] as a reader (the peer's data, with the window
//! given back as it is read) and a writer (data queued until the peer's
//! window lets it go).

use std::collections::{HashMap, VecDeque};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::frame::rst;
use super::headers::Headers;
use super::session::{Event, Limits, Session};

enum Cmd {
    Reply { id: u32, headers: Headers, fin: bool },
    Data { id: u32, data: Vec<u8>, fin: bool, done: oneshot::Sender<bool> },
    Consumed { id: u32, n: usize },
    Reset { id: u32 },
    GoAway,
    Shutdown,
}

/// A stream the peer opened.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    pub reader: StreamReader,
    pub writer: StreamWriter,
}

/// The peer's data on one stream; `None` once it half-closed or reset it.
pub struct StreamReader {
    id: u32,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl StreamReader {
    pub async fn read(&mut self) -> Option<Vec<u8>> {
        let data = self.rx.recv().await?;
        let _ = self.cmd.send(Cmd::Consumed { id: self.id, n: data.len() });
        Some(data)
    }
}

/// Sending on one stream. Cloneable: stdout and stderr copiers may share
/// the error stream's writer, say.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl StreamWriter {
    /// Answer the stream (SYN_REPLY); `fin` also closes this side.
    pub fn reply(&self, headers: Headers, fin: bool) -> bool {
        self.cmd.send(Cmd::Reply { id: self.id, headers, fin }).is_ok()
    }

    /// Send data; waits until the peer's windows took all of it. `false`
    /// when the stream or the connection is gone.
    pub async fn write(&self, data: Vec<u8>) -> bool {
        self.send(data, false).await
    }

    /// Half-close this side (FIN).
    pub async fn close(&self) -> bool {
        self.send(Vec::new(), true).await
    }

    async fn send(&self, data: Vec<u8>, fin: bool) -> bool {
        let (done, wait) = oneshot::channel();
        if self.cmd.send(Cmd::Data { id: self.id, data, fin, done }).is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }

    /// Abort the stream (RST_STREAM CANCEL).
    pub fn reset(&self) {
        let _ = self.cmd.send(Cmd::Reset { id: self.id });
    }

    pub fn id(&self) -> u32 {
        self.id
    }
}

/// The accepting side of a connection.
pub struct Connection {
    streams: mpsc::Receiver<Stream>,
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl Connection {
    /// Start driving `io` (an upgraded HTTP connection) as a SPDY server.
    pub fn serve<T>(io: T, limits: Limits) -> Connection
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (stream_tx, streams) = mpsc::channel(limits.max_concurrent_streams.max(1) as usize);
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let driver = Driver {
            session: Session::new(limits),
            cmd_tx: cmd.clone(),
            readers: HashMap::new(),
            pending: HashMap::new(),
            new_streams: stream_tx,
        };
        tokio::spawn(driver.run(io, cmd_rx));
        Connection { streams, cmd }
    }

    /// The next stream the peer opens; `None` when the connection ended.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.streams.recv().await
    }

    /// Say GOAWAY; streams already open go on.
    pub fn goaway(&self) {
        let _ = self.cmd.send(Cmd::GoAway);
    }

    /// Say GOAWAY, write what is queued, and close the connection.
    pub fn shutdown(&self) {
        self.handle().shutdown();
    }

    /// A handle that can end the connection while `accept` is in use.
    pub fn handle(&self) -> ConnectionHandle {
        ConnectionHandle { cmd: self.cmd.clone() }
    }
}

/// Ends a connection from outside its accept loop.
#[derive(Clone)]
pub struct ConnectionHandle {
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl ConnectionHandle {
    pub fn shutdown(&self) {
        let _ = self.cmd.send(Cmd::Shutdown);
    }
}

struct PendingData {
    data: Vec<u8>,
    sent: usize,
    fin: bool,
    done: oneshot::Sender<bool>,
}

struct Driver {
    session: Session,
    cmd_tx: mpsc::UnboundedSender<Cmd>,
    readers: HashMap<u32, mpsc::UnboundedSender<Vec<u8>>>,
    /// Data waiting for window, per stream, in order.
    pending: HashMap<u32, VecDeque<PendingData>>,
    new_streams: mpsc::Sender<Stream>,
}

impl Driver {
    async fn run<T>(mut self, mut io: T, mut cmd_rx: mpsc::UnboundedReceiver<Cmd>)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin,
    {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if !self.flush(&mut io).await {
                break;
            }
            tokio::select! {
                n = io.read(&mut buf) => {
                    let n = match n { Ok(0) | Err(_) => break, Ok(n) => n };
                    match self.session.feed(&buf[..n]) {
                        Ok(events) => self.on_events(events).await,
                        Err(e) => {
                            log::debug!("spdy connection: {e}");
                            let _ = self.flush(&mut io).await;
                            break;
                        }
                    }
                    self.send_pending();
                }
                cmd = cmd_rx.recv() => match cmd {
                    Some(Cmd::Shutdown) => {
                        self.session.goaway(super::frame::goaway::OK);
                        let _ = self.flush(&mut io).await;
                        break;
                    }
                    Some(c) => self.on_cmd(c),
                    // Unreachable while the driver holds a sender itself.
                    None => break,
                },
            }
        }
        let _ = io.shutdown().await;
        // Dropping the readers ends every stream reader; pending writers
        // learn the connection is gone.
        for (_, q) in self.pending.drain() {
            for p in q {
                let _ = p.done.send(false);
            }
        }
    }

    async fn flush<T: AsyncWrite + Unpin>(&mut self, io: &mut T) -> bool {
        let out = self.session.take_output();
        out.is_empty() || (io.write_all(&out).await.is_ok() && io.flush().await.is_ok())
    }

    async fn on_events(&mut self, events: Vec<Event>) {
        for ev in events {
            match ev {
                Event::Opened { stream_id, headers, fin } => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    if !fin {
                        self.readers.insert(stream_id, tx);
                    }
                    let stream = Stream {
                        id: stream_id,
                        headers,
                        reader: StreamReader { id: stream_id, rx, cmd: self.cmd_tx.clone() },
                        writer: StreamWriter { id: stream_id, cmd: self.cmd_tx.clone() },
                    };
                    // The acceptor is gone or full past the concurrency
                    // limit: refuse the stream rather than block the socket.
                    if self.new_streams.try_send(stream).is_err() {
                        self.session.reset(stream_id, rst::REFUSED_STREAM);
                        self.readers.remove(&stream_id);
                    }
                }
                Event::Data { stream_id, data } => {
                    if let Some(tx) = self.readers.get(&stream_id) {
                        if tx.send(data).is_err() {
                            // Nobody reads this stream any more.
                            self.readers.remove(&stream_id);
                        }
                    }
                }
                Event::Finished { stream_id } => {
                    self.readers.remove(&stream_id);
                }
                Event::Reset { stream_id, .. } => {
                    self.readers.remove(&stream_id);
                    self.fail_pending(stream_id);
                }
                Event::GoAway { .. } => {}
            }
        }
    }

    fn on_cmd(&mut self, c: Cmd) {
        match c {
            Cmd::Reply { id, headers, fin } => {
                if let Err(e) = self.session.reply(id, &headers, fin) {
                    log::debug!("spdy reply on stream {id}: {e}");
                    self.session.reset(id, rst::INTERNAL_ERROR);
                }
            }
            Cmd::Data { id, data, fin, done } => {
                self.pending.entry(id).or_default().push_back(PendingData { data, sent: 0, fin, done });
                self.send_pending();
            }
            Cmd::Consumed { id, n } => self.session.consumed(id, n),
            Cmd::Reset { id } => {
                self.session.reset(id, rst::CANCEL);
                self.readers.remove(&id);
                self.fail_pending(id);
            }
            Cmd::GoAway => self.session.goaway(super::frame::goaway::OK),
            Cmd::Shutdown => {}
        }
    }

    fn fail_pending(&mut self, id: u32) {
        for p in self.pending.remove(&id).unwrap_or_default() {
            let _ = p.done.send(false);
        }
    }

    /// Move queued data into the session as far as the windows allow.
    fn send_pending(&mut self) {
        let ids: Vec<u32> = self.pending.keys().copied().collect();
        for id in ids {
            let Some(q) = self.pending.get_mut(&id) else { continue };
            while let Some(p) = q.front_mut() {
                p.sent += self.session.send_data(id, &p.data[p.sent..], p.fin);
                let complete = p.sent == p.data.len();
                if !complete && self.session.is_open_for_sending(id) {
                    break; // wait for a WINDOW_UPDATE
                }
                // Complete (a FIN, if asked, went with it), or the stream
                // is gone and nothing will ever drain it.
                let p = q.pop_front().expect("front exists");
                let _ = p.done.send(complete);
            }
            if q.is_empty() {
                self.pending.remove(&id);
            }
        }
    }
}
