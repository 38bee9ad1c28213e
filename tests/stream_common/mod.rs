//! Clients of the streaming server for the tests: a hand-driven SPDY/3.1
//! client (frames and zlib header blocks from hull's own codec, driven here
//! so the client shares no connection code with the server).
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use hull::stream::spdy::frame::{self, Frame};
use hull::stream::spdy::headers::{HeaderDecoder, HeaderEncoder, Headers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const T: Duration = Duration::from_secs(20);

/// Split "http://host:port/path" into address and path.
pub fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    (addr.to_string(), format!("/{path}"))
}

/// Send an upgrade request; returns the status line's code, the response
/// headers, the connection and any bytes read past the headers.
pub async fn upgrade(url: &str, extra: &[(&str, &str)]) -> (u16, HashMap<String, String>, TcpStream, Vec<u8>) {
    let (addr, path) = split_url(url);
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = tokio::time::timeout(T, tcp.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "server closed during the handshake: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (code, headers, tcp, buf[end..].to_vec())
}

/// A hand-driven SPDY client.
pub struct Client {
    tcp: TcpStream,
    buf: Vec<u8>,
    enc: HeaderEncoder,
    dec: HeaderDecoder,
    next_id: u32,
}

impl Client {
    pub async fn connect(url: &str, protocol: &str) -> Client {
        let (code, headers, tcp, buf) = upgrade(url, &[("X-Stream-Protocol-Version", protocol)]).await;
        assert_eq!(code, 101, "{headers:?}");
        assert_eq!(headers.get("x-stream-protocol-version").map(String::as_str), Some(protocol));
        Client { tcp, buf, enc: HeaderEncoder::new(), dec: HeaderDecoder::new(), next_id: 1 }
    }

    pub async fn send(&mut self, f: Frame) {
        let mut b = Vec::new();
        frame::encode(&f, &mut b).unwrap();
        // Window updates may race with the server closing after the last
        // frame, as with any client; everything else must go through.
        let r = self.tcp.write_all(&b).await;
        if !matches!(f, Frame::WindowUpdate { .. }) {
            r.unwrap();
        }
    }

    pub async fn open(&mut self, pairs: &[(&str, &str)]) -> u32 {
        let id = self.next_id;
        self.next_id += 2;
        let mut h = Headers::default();
        for (k, v) in pairs {
            h.push(k, *v);
        }
        let headers = self.enc.encode(&h).unwrap();
        self.send(Frame::SynStream { stream_id: id, associated_to: 0, priority: 0, fin: false, unidirectional: false, headers })
            .await;
        id
    }

    /// The next frame (SYN_REPLY header blocks are decoded to keep the
    /// zlib stream in step); `None` when the server closed.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some((f, n)) = frame::decode(&self.buf, frame::MAX_LENGTH).unwrap() {
                self.buf.drain(..n);
                if let Frame::SynReply { headers, .. } = &f {
                    self.dec.decode(headers).unwrap();
                }
                return Some(f);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = tokio::time::timeout(T, self.tcp.read(&mut chunk)).await.expect("server silent").ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Collect data per stream until `until` is finished (FIN) by the
    /// server, giving window back as data arrives.
    pub async fn collect(&mut self, until: u32) -> HashMap<u32, Vec<u8>> {
        let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
        loop {
            match self.next().await {
                None => panic!("connection closed before stream {until} finished; got {got:?}"),
                Some(Frame::Data { stream_id, fin, data }) => {
                    if !data.is_empty() {
                        let n = data.len() as u32;
                        self.send(Frame::WindowUpdate { stream_id, delta: n }).await;
                        self.send(Frame::WindowUpdate { stream_id: 0, delta: n }).await;
                    }
                    got.entry(stream_id).or_default().extend_from_slice(&data);
                    if fin && stream_id == until {
                        return got;
                    }
                }
                Some(Frame::RstStream { stream_id, status }) => panic!("stream {stream_id} reset ({status})"),
                Some(_) => {}
            }
        }
    }
}

impl Client {
    /// Data of `stream` until it holds `want`; panics if the server closes
    /// first or resets a stream.
    pub async fn read_until(&mut self, stream: u32, want: &str) -> String {
        let mut out = Vec::new();
        while !String::from_utf8_lossy(&out).contains(want) {
            match self.next().await {
                Some(Frame::Data { stream_id, data, .. }) if stream_id == stream => out.extend_from_slice(&data),
                Some(Frame::RstStream { stream_id, status }) => panic!("stream {stream_id} reset ({status})"),
                Some(_) => {}
                None => panic!("closed; got {:?}", String::from_utf8_lossy(&out)),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

pub fn status_json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("status {:?}: {e}", String::from_utf8_lossy(b)))
}
