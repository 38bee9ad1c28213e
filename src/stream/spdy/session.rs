//! The server side of one SPDY/3.1 connection, without I/O: bytes from the
//! peer go into [`Session::feed`], which returns what happened on the
//! streams; what the server says goes out through [`Session::take_output`].
//! The async connection driver (socket, tasks per stream) sits on top.
//!
//! Covered: stream opening (client-initiated, odd, increasing ids), replies,
//! data with per-stream and (3.1) session flow control, half-closes, resets,
//! SETTINGS (initial window, concurrent streams), PING echo and GOAWAY.
//! Server push is not used by Kubernetes streaming, so this side never opens
//! streams.

use std::collections::HashMap;

use super::frame::{self, goaway, rst, setting, Frame, FrameError, Setting};
use super::headers::{HeaderDecoder, HeaderEncoder, HeaderError, Headers};

/// The window every stream and the session start with (SPDY/3.1 default).
pub const DEFAULT_WINDOW: u32 = 64 * 1024;
/// Windows may not grow past 2^31 - 1.
const MAX_WINDOW: i64 = 0x7fff_ffff;
/// The largest data frame this side sends or takes.
pub const MAX_DATA_FRAME: usize = 32 * 1024;

/// What the peer did, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new stream with its request headers; `fin` when the peer will
    /// send nothing more on it.
    Opened {
        stream_id: u32,
        headers: Headers,
        fin: bool,
    },
    Data {
        stream_id: u32,
        data: Vec<u8>,
    },
    /// The peer half-closed the stream (FIN): no more data will come.
    Finished {
        stream_id: u32,
    },
    /// The peer reset the stream, or this side did because the peer broke
    /// the stream's rules; nothing more is sent or received on it.
    Reset {
        stream_id: u32,
        status: u32,
    },
    /// The peer is going away; streams above `last_good_stream_id` were
    /// not processed by it.
    GoAway {
        last_good_stream_id: u32,
    },
}

/// A failure of the whole connection; a GOAWAY has been queued and the
/// caller should flush the output and close.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Headers(#[from] HeaderError),
    #[error("SPDY protocol error: {0}")]
    Protocol(&'static str),
}

#[derive(Debug)]
struct Stream {
    send_window: i64,
    /// The window as the peer sees it: what it may still send.
    recv_window: i64,
    /// Bytes consumed but not yet given back with a WINDOW_UPDATE.
    pending_ack: u32,
    local_closed: bool,
    remote_closed: bool,
}

/// Limits a server sets for its peer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_concurrent_streams: u32,
    /// The receive window advertised per stream.
    pub initial_window: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_concurrent_streams: 100, initial_window: 256 * 1024 }
    }
}

pub struct Session {
    limits: Limits,
    streams: HashMap<u32, Stream>,
    last_peer_stream: u32,
    /// The peer's initial window for streams we send on.
    peer_initial_window: i64,
    session_send_window: i64,
    session_unacked: u32,
    encoder: HeaderEncoder,
    decoder: HeaderDecoder,
    input: Vec<u8>,
    output: Vec<u8>,
    going_away: bool,
}

impl Session {
    /// A server session; its SETTINGS are queued as the first output.
    pub fn new(limits: Limits) -> Self {
        let mut s = Session {
            limits,
            streams: HashMap::new(),
            last_peer_stream: 0,
            peer_initial_window: i64::from(DEFAULT_WINDOW),
            session_send_window: i64::from(DEFAULT_WINDOW),
            session_unacked: 0,
            encoder: HeaderEncoder::new(),
            decoder: HeaderDecoder::new(),
            input: Vec::new(),
            output: Vec::new(),
            going_away: false,
        };
        let entries = vec![
            Setting { flags: 0, id: setting::MAX_CONCURRENT_STREAMS, value: limits.max_concurrent_streams },
            Setting { flags: 0, id: setting::INITIAL_WINDOW_SIZE, value: limits.initial_window },
        ];
        s.queue(Frame::Settings { clear: false, entries });
        s
    }

    /// Bytes to write to the peer (drained).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Number of streams not yet closed in both directions.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    fn queue(&mut self, f: Frame) {
        // Only frames this module builds reach here, all within limits.
        if let Err(e) = frame::encode(&f, &mut self.output) {
            debug_assert!(false, "encode {f:?}: {e}");
        }
    }

    /// Take bytes read from the peer; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, SessionError> {
        self.input.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut used = 0;
        let max = MAX_DATA_FRAME.max(super::headers::MAX_BLOCK + 16);
        let result = loop {
            match frame::decode(&self.input[used..], max) {
                Ok(None) => break Ok(()),
                Ok(Some((f, n))) => {
                    used += n;
                    if let Err(e) = self.on_frame(f, &mut events) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e.into()),
            }
        };
        self.input.drain(..used);
        match result {
            Ok(()) => Ok(events),
            Err(e) => {
                let status = if matches!(e, SessionError::Headers(_)) { goaway::INTERNAL_ERROR } else { goaway::PROTOCOL_ERROR };
                self.goaway(status);
                Err(e)
            }
        }
    }

    fn on_frame(&mut self, f: Frame, events: &mut Vec<Event>) -> Result<(), SessionError> {
        match f {
            Frame::SynStream { stream_id, fin, headers, .. } => self.on_syn_stream(stream_id, fin, &headers, events)?,
            Frame::Headers { stream_id, fin, headers } => {
                // Extra headers are decoded to keep the zlib stream in step;
                // Kubernetes streaming sends none after SYN_STREAM.
                self.decoder.decode(&headers)?;
                if fin {
                    self.remote_fin(stream_id, events);
                }
            }
            Frame::SynReply { .. } => return Err(SessionError::Protocol("SYN_REPLY sent to a server")),
            Frame::Data { stream_id, fin, data } => self.on_data(stream_id, fin, data, events),
            Frame::RstStream { stream_id, status } => {
                if self.streams.remove(&stream_id).is_some() {
                    events.push(Event::Reset { stream_id, status });
                }
            }
            Frame::Settings { entries, .. } => self.on_settings(&entries)?,
            Frame::Ping { id } => {
                // Server-initiated pings are even; echo only the client's.
                if !id.is_multiple_of(2) {
                    self.queue(Frame::Ping { id });
                }
            }
            Frame::GoAway { last_good_stream_id, .. } => {
                self.going_away = true;
                events.push(Event::GoAway { last_good_stream_id });
            }
            Frame::WindowUpdate { stream_id, delta } => self.on_window_update(stream_id, delta, events)?,
            Frame::Unknown { .. } => {}
        }
        Ok(())
    }

    fn on_syn_stream(&mut self, id: u32, fin: bool, block: &[u8], events: &mut Vec<Event>) -> Result<(), SessionError> {
        // Decode first: the header stream must advance even for a refused stream.
        let headers = self.decoder.decode(block)?;
        if id == 0 || id.is_multiple_of(2) || id <= self.last_peer_stream {
            return Err(SessionError::Protocol("SYN_STREAM with a stream id that is not new, odd and increasing"));
        }
        self.last_peer_stream = id;
        if self.going_away {
            self.queue(Frame::RstStream { stream_id: id, status: rst::REFUSED_STREAM });
            return Ok(());
        }
        if self.streams.len() >= self.limits.max_concurrent_streams as usize {
            self.queue(Frame::RstStream { stream_id: id, status: rst::REFUSED_STREAM });
            return Ok(());
        }
        self.streams.insert(
            id,
            Stream {
                send_window: self.peer_initial_window,
                recv_window: i64::from(self.limits.initial_window),
                pending_ack: 0,
                local_closed: false,
                remote_closed: fin,
            },
        );
        events.push(Event::Opened { stream_id: id, headers, fin });
        Ok(())
    }

    fn on_data(&mut self, id: u32, fin: bool, data: Vec<u8>, events: &mut Vec<Event>) {
        let len = data.len() as u32;
        // Session-level accounting covers every data frame, even for a
        // stream that is gone (the peer spent the window regardless).
        self.session_unacked = self.session_unacked.saturating_add(len);
        self.ack_session();
        let Some(s) = self.streams.get_mut(&id) else {
            self.queue(Frame::RstStream { stream_id: id, status: rst::INVALID_STREAM });
            return;
        };
        if s.remote_closed {
            self.streams.remove(&id);
            self.queue(Frame::RstStream { stream_id: id, status: rst::STREAM_ALREADY_CLOSED });
            events.push(Event::Reset { stream_id: id, status: rst::STREAM_ALREADY_CLOSED });
            return;
        }
        if i64::from(len) > s.recv_window {
            self.streams.remove(&id);
            self.queue(Frame::RstStream { stream_id: id, status: rst::FLOW_CONTROL_ERROR });
            events.push(Event::Reset { stream_id: id, status: rst::FLOW_CONTROL_ERROR });
            return;
        }
        s.recv_window -= i64::from(len);
        if !data.is_empty() {
            events.push(Event::Data { stream_id: id, data });
        }
        if fin {
            self.remote_fin(id, events);
        }
    }

    fn remote_fin(&mut self, id: u32, events: &mut Vec<Event>) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.remote_closed = true;
            events.push(Event::Finished { stream_id: id });
            self.reap(id);
        }
    }

    fn reap(&mut self, id: u32) {
        if self.streams.get(&id).is_some_and(|s| s.local_closed && s.remote_closed) {
            self.streams.remove(&id);
        }
    }

    fn on_settings(&mut self, entries: &[Setting]) -> Result<(), SessionError> {
        for e in entries {
            if e.id == setting::INITIAL_WINDOW_SIZE {
                let new = i64::from(e.value);
                if new > MAX_WINDOW {
                    return Err(SessionError::Protocol("INITIAL_WINDOW_SIZE above 2^31-1"));
                }
                // A new initial window shifts every open stream's window by
                // the difference (it may go negative, as the spec allows).
                let delta = new - self.peer_initial_window;
                self.peer_initial_window = new;
                for s in self.streams.values_mut() {
                    s.send_window += delta;
                }
            }
        }
        Ok(())
    }

    fn on_window_update(&mut self, id: u32, delta: u32, events: &mut Vec<Event>) -> Result<(), SessionError> {
        let delta = i64::from(delta);
        if id == 0 {
            if self.session_send_window + delta > MAX_WINDOW {
                return Err(SessionError::Protocol("session window above 2^31-1"));
            }
            self.session_send_window += delta;
            return Ok(());
        }
        let overflow = match self.streams.get_mut(&id) {
            Some(s) if s.send_window + delta > MAX_WINDOW => true,
            Some(s) => {
                s.send_window += delta;
                false
            }
            None => false,
        };
        if overflow {
            self.streams.remove(&id);
            self.queue(Frame::RstStream { stream_id: id, status: rst::FLOW_CONTROL_ERROR });
            events.push(Event::Reset { stream_id: id, status: rst::FLOW_CONTROL_ERROR });
        }
        Ok(())
    }

    /// Answer a stream the peer opened.
    pub fn reply(&mut self, id: u32, headers: &Headers, fin: bool) -> Result<(), SessionError> {
        let block = self.encoder.encode(headers)?;
        self.queue(Frame::SynReply { stream_id: id, fin, headers: block });
        if fin {
            self.close_local(id);
        }
        Ok(())
    }

    /// Whether this side may still send on the stream.
    pub fn is_open_for_sending(&self, id: u32) -> bool {
        self.streams.get(&id).is_some_and(|s| !s.local_closed)
    }

    /// How many bytes may be sent on the stream now (both windows).
    pub fn send_capacity(&self, id: u32) -> usize {
        match self.streams.get(&id) {
            Some(s) if !s.local_closed => s.send_window.min(self.session_send_window).max(0) as usize,
            _ => 0,
        }
    }

    /// Queue up to `send_capacity` bytes of `data` (in frames of at most
    /// [`MAX_DATA_FRAME`]); returns how many were taken. `fin` closes this
    /// side once all of `data` was taken.
    pub fn send_data(&mut self, id: u32, data: &[u8], fin: bool) -> usize {
        let n = data.len().min(self.send_capacity(id));
        for chunk in data[..n].chunks(MAX_DATA_FRAME) {
            self.queue(Frame::Data { stream_id: id, fin: false, data: chunk.to_vec() });
        }
        if let Some(s) = self.streams.get_mut(&id) {
            s.send_window -= n as i64;
        }
        self.session_send_window -= n as i64;
        if fin && n == data.len() && self.streams.get(&id).is_some_and(|s| !s.local_closed) {
            self.queue(Frame::Data { stream_id: id, fin: true, data: Vec::new() });
            self.close_local(id);
        }
        n
    }

    fn close_local(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.local_closed = true;
        }
        self.reap(id);
    }

    /// The consumer is done with `n` bytes of the stream's data: the window
    /// is given back once half of it is used, so the peer rarely stalls and
    /// WINDOW_UPDATEs stay few. Streams the peer closed need none.
    pub fn consumed(&mut self, id: u32, n: usize) {
        let half = self.limits.initial_window / 2;
        let Some(s) = self.streams.get_mut(&id) else { return };
        if s.remote_closed {
            return;
        }
        s.pending_ack = s.pending_ack.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        if s.pending_ack >= half {
            let delta = s.pending_ack.min(MAX_WINDOW as u32);
            s.pending_ack -= delta;
            s.recv_window += i64::from(delta);
            self.queue(Frame::WindowUpdate { stream_id: id, delta });
        }
    }

    /// The session window (SPDY/3.1) is given back as data arrives: each
    /// stream's own window already bounds what is buffered.
    fn ack_session(&mut self) {
        if self.session_unacked >= DEFAULT_WINDOW / 2 {
            let delta = self.session_unacked;
            self.session_unacked = 0;
            self.queue(Frame::WindowUpdate { stream_id: 0, delta });
        }
    }

    /// Reset a stream (e.g. the exec ended abnormally, or it is unwanted).
    pub fn reset(&mut self, id: u32, status: u32) {
        if self.streams.remove(&id).is_some() {
            self.queue(Frame::RstStream { stream_id: id, status });
        }
    }

    /// Tell the peer this side is going away; no new streams are accepted.
    pub fn goaway(&mut self, status: u32) {
        if !self.going_away || status != goaway::OK {
            self.going_away = true;
            self.queue(Frame::GoAway { last_good_stream_id: self.last_peer_stream, status });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's half of a connection, as crictl's spdystream speaks it.
    struct Client {
        enc: HeaderEncoder,
        dec: HeaderDecoder,
        server: Session,
    }

    impl Client {
        fn new(limits: Limits) -> Self {
            Client { enc: HeaderEncoder::new(), dec: HeaderDecoder::new(), server: Session::new(limits) }
        }
        fn send(&mut self, f: Frame) -> Result<Vec<Event>, SessionError> {
            let mut b = Vec::new();
            frame::encode(&f, &mut b).unwrap();
            self.server.feed(&b)
        }
        fn open(&mut self, id: u32, stream_type: &str, fin: bool) -> Vec<Event> {
            let mut h = Headers::default();
            h.push("streamType", stream_type);
            let headers = self.enc.encode(&h).unwrap();
            self.send(Frame::SynStream { stream_id: id, associated_to: 0, priority: 0, fin, unidirectional: false, headers })
                .unwrap()
        }
        /// Frames the server wrote, with header blocks decoded in order.
        fn received(&mut self) -> Vec<(Frame, Option<Headers>)> {
            let out = self.server.take_output();
            let mut at = 0;
            let mut frames = Vec::new();
            while let Some((f, n)) = frame::decode(&out[at..], frame::MAX_LENGTH).unwrap() {
                at += n;
                let h = match &f {
                    Frame::SynReply { headers, .. } => Some(self.dec.decode(headers).unwrap()),
                    _ => None,
                };
                frames.push((f, h));
            }
            assert_eq!(at, out.len());
            frames
        }
    }

    #[test]
    fn settings_first_then_streams_open_reply_and_close() {
        let mut c = Client::new(Limits::default());
        let first = c.received();
        assert!(matches!(&first[0].0, Frame::Settings { entries, .. } if entries.len() == 2));
        let ev = c.open(1, "error", false);
        let Event::Opened { stream_id: 1, headers, fin: false } = &ev[0] else { panic!("{ev:?}") };
        assert_eq!(headers.get("streamtype"), Some("error"));
        let mut h = Headers::default();
        h.push("x", "1");
        c.server.reply(1, &h, false).unwrap();
        assert_eq!(c.server.send_data(1, b"status", true), 6);
        let frames = c.received();
        assert_eq!(frames[0].1.as_ref().unwrap().get("x"), Some("1"));
        assert_eq!(frames[1].0, Frame::Data { stream_id: 1, fin: false, data: b"status".to_vec() });
        assert_eq!(frames[2].0, Frame::Data { stream_id: 1, fin: true, data: vec![] });
        assert_eq!(c.server.open_streams(), 1, "half-closed: the client may still send");
        let ev = c.send(Frame::Data { stream_id: 1, fin: true, data: b"in".to_vec() }).unwrap();
        assert_eq!(ev, [Event::Data { stream_id: 1, data: b"in".to_vec() }, Event::Finished { stream_id: 1 }]);
        assert_eq!(c.server.open_streams(), 0);
    }

    #[test]
    fn stream_ids_must_be_new_odd_and_increasing() {
        let mut c = Client::new(Limits::default());
        c.open(3, "stdin", false);
        for bad in [2, 3, 1] {
            let mut c2 = Client::new(Limits::default());
            c2.open(3, "stdin", false);
            let h = c2.enc.encode(&Headers::default()).unwrap();
            let r =
                c2.send(Frame::SynStream { stream_id: bad, associated_to: 0, priority: 0, fin: false, unidirectional: false, headers: h });
            assert!(matches!(r, Err(SessionError::Protocol(_))), "id {bad}");
            let frames = c2.received();
            assert!(frames
                .iter()
                .any(|(f, _)| matches!(f, Frame::GoAway { last_good_stream_id: 3, status: goaway::PROTOCOL_ERROR })));
        }
    }

    #[test]
    fn flow_control_limits_what_is_sent_and_what_is_taken() {
        let mut c = Client::new(Limits { max_concurrent_streams: 10, initial_window: 64 * 1024 });
        c.open(1, "stdout", true);
        // The client announces a small window: the server sends only that much.
        let small = Setting { flags: 0, id: setting::INITIAL_WINDOW_SIZE, value: 1000 };
        c.send(Frame::Settings { clear: false, entries: vec![small] }).unwrap();
        // The stream was opened under the default window; SETTINGS moved it to 1000.
        assert_eq!(c.server.send_capacity(1), 1000);
        assert_eq!(c.server.send_data(1, &[7; 5000], false), 1000);
        assert_eq!(c.server.send_capacity(1), 0);
        c.send(Frame::WindowUpdate { stream_id: 1, delta: 300 }).unwrap();
        assert_eq!(c.server.send_capacity(1), 300);
        // Session window (3.1): the default 64 KiB across all streams.
        c.send(Frame::WindowUpdate { stream_id: 1, delta: 1 << 20 }).unwrap();
        assert_eq!(c.server.send_capacity(1), 64 * 1024 - 1000);

        // The other way: more than the advertised window resets the stream.
        c.open(3, "stdin", false);
        let big = vec![0u8; MAX_DATA_FRAME];
        c.send(Frame::Data { stream_id: 3, fin: false, data: big.clone() }).unwrap();
        c.send(Frame::Data { stream_id: 3, fin: false, data: big.clone() }).unwrap();
        let ev = c.send(Frame::Data { stream_id: 3, fin: false, data: vec![1] }).unwrap();
        assert_eq!(ev, [Event::Reset { stream_id: 3, status: rst::FLOW_CONTROL_ERROR }]);
    }

    #[test]
    fn consumed_data_gives_the_window_back() {
        let mut c = Client::new(Limits { max_concurrent_streams: 10, initial_window: 64 * 1024 });
        c.open(1, "stdin", false);
        c.received();
        let chunk = vec![0u8; MAX_DATA_FRAME];
        c.send(Frame::Data { stream_id: 1, fin: false, data: chunk.clone() }).unwrap();
        // The session window comes back on arrival, the stream's on use.
        c.server.consumed(1, 1000);
        let frames = c.received();
        assert!(frames.iter().any(|(f, _)| matches!(f, Frame::WindowUpdate { stream_id: 0, .. })));
        assert!(!frames.iter().any(|(f, _)| matches!(f, Frame::WindowUpdate { stream_id: 1, .. })));
        c.server.consumed(1, MAX_DATA_FRAME - 1000);
        let frames = c.received();
        assert!(frames.contains(&(Frame::WindowUpdate { stream_id: 1, delta: MAX_DATA_FRAME as u32 }, None)));
        // With the window back, two more full frames fit.
        c.send(Frame::Data { stream_id: 1, fin: false, data: chunk.clone() }).unwrap();
        let ev = c.send(Frame::Data { stream_id: 1, fin: false, data: chunk }).unwrap();
        assert!(matches!(ev[..], [Event::Data { stream_id: 1, .. }]));
    }

    #[test]
    fn too_many_streams_are_refused_not_fatal() {
        let mut c = Client::new(Limits { max_concurrent_streams: 2, initial_window: 64 * 1024 });
        c.open(1, "a", false);
        c.open(3, "b", false);
        assert!(c.open(5, "c", false).is_empty());
        assert!(c
            .received()
            .iter()
            .any(|(f, _)| *f == Frame::RstStream { stream_id: 5, status: rst::REFUSED_STREAM }));
        // A reset by the client frees a slot.
        let ev = c.send(Frame::RstStream { stream_id: 1, status: rst::CANCEL }).unwrap();
        assert_eq!(ev, [Event::Reset { stream_id: 1, status: rst::CANCEL }]);
        assert!(matches!(c.open(7, "d", false)[..], [Event::Opened { stream_id: 7, .. }]));
    }

    #[test]
    fn pings_are_echoed_and_goaway_refuses_new_streams() {
        let mut c = Client::new(Limits::default());
        c.received();
        c.send(Frame::Ping { id: 5 }).unwrap();
        c.send(Frame::Ping { id: 4 }).unwrap();
        assert_eq!(c.received(), [(Frame::Ping { id: 5 }, None)]);
        let ev = c.send(Frame::GoAway { last_good_stream_id: 0, status: goaway::OK }).unwrap();
        assert_eq!(ev, [Event::GoAway { last_good_stream_id: 0 }]);
        assert!(c.open(1, "x", false).is_empty());
        assert_eq!(c.received(), [(Frame::RstStream { stream_id: 1, status: rst::REFUSED_STREAM }, None)]);
    }

    #[test]
    fn data_split_across_reads_and_garbage_is_fatal() {
        let mut c = Client::new(Limits::default());
        c.open(1, "stdin", false);
        let mut b = Vec::new();
        frame::encode(&Frame::Data { stream_id: 1, fin: false, data: b"abcdef".to_vec() }, &mut b).unwrap();
        let mut events = Vec::new();
        for byte in &b {
            events.extend(c.server.feed(std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(events, [Event::Data { stream_id: 1, data: b"abcdef".to_vec() }]);
        // Data for a stream that never existed: a stream error only.
        assert!(c.send(Frame::Data { stream_id: 9, fin: false, data: vec![1] }).unwrap().is_empty());
        // A header block that is not zlib breaks the session.
        let r = c.send(Frame::SynStream {
            stream_id: 11,
            associated_to: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: b"junk".to_vec(),
        });
        assert!(matches!(r, Err(SessionError::Headers(_))));
        // A frame too large to buffer breaks it too, before it is buffered.
        let mut s = Session::new(Limits::default());
        assert!(matches!(s.feed(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff]), Err(SessionError::Frame(FrameError::TooLarge { .. }))));
    }
}
