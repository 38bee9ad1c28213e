//! SPDY/3.1 frames on the wire: the eight control frames the protocol
//! defines and data frames, encoded and decoded without any I/O, so the
//! connection code above can feed bytes in as they arrive.
//!
//! Header blocks stay compressed here: their zlib stream is shared by every
//! frame of one direction of a connection, so only the connection, which sees
//! them in order, may decompress them (see [`super::headers`]).

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// Frame header size (control and data alike).
pub const HEADER_LEN: usize = 8;
/// The largest length the 24-bit length field can carry.
pub const MAX_LENGTH: usize = (1 << 24) - 1;

const CONTROL_BIT: u8 = 0x80;
const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
const FLAG_CLEAR_SETTINGS: u8 = 0x01;
const STREAM_ID_MASK: u32 = 0x7fff_ffff;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes.
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const UNSUPPORTED_VERSION: u32 = 4;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    pub const STREAM_IN_USE: u32 = 8;
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
    pub const FRAME_TOO_LARGE: u32 = 11;
}

/// GOAWAY status codes.
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INTERNAL_ERROR: u32 = 2;
}

/// SETTINGS ids this implementation acts on.
pub mod setting {
    pub const MAX_CONCURRENT_STREAMS: u32 = 4;
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
}

/// One SETTINGS entry (id and value; the per-entry flags only ask the
/// receiver to persist a value, which a server need not do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// A decoded frame. `headers` fields hold the compressed header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Vec<u8>,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Vec<u8>,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Vec<u8>,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    /// A control frame of a type this version does not define: the spec
    /// says to ignore it, so it is decoded only far enough to skip it.
    Unknown {
        kind: u16,
    },
}

/// Why bytes are not a valid frame. Each maps to the status the peer is
/// told: a session error (GOAWAY) or, with a stream id, a stream error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("SPDY control frame of version {0}, not 3")]
    UnsupportedVersion(u16),
    #[error("SPDY frame of {len} bytes is larger than the limit of {max}")]
    TooLarge { len: usize, max: usize, stream_id: Option<u32> },
    #[error("SPDY {kind} frame is malformed: {why}")]
    Malformed { kind: &'static str, why: &'static str },
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn malformed(kind: &'static str, why: &'static str) -> FrameError {
    FrameError::Malformed { kind, why }
}

/// Decode the frame at the start of `buf`. `Ok(None)` means `buf` holds only
/// part of a frame; otherwise the frame and the bytes it took. Frames longer
/// than `max_len` are refused before their payload is buffered.
pub fn decode(buf: &[u8], max_len: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let flags = buf[4];
    let len = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
    let control = buf[0] & CONTROL_BIT != 0;
    if len > max_len {
        let stream_id = (!control).then(|| be32(buf) & STREAM_ID_MASK);
        return Err(FrameError::TooLarge { len, max: max_len, stream_id });
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let body = &buf[HEADER_LEN..HEADER_LEN + len];
    let frame = if control {
        let version = u16::from_be_bytes([buf[0] & !CONTROL_BIT, buf[1]]);
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        decode_control(u16::from_be_bytes([buf[2], buf[3]]), flags, body)?
    } else {
        Frame::Data { stream_id: be32(buf) & STREAM_ID_MASK, fin: flags & FLAG_FIN != 0, data: body.to_vec() }
    };
    Ok(Some((frame, HEADER_LEN + len)))
}

fn decode_control(kind: u16, flags: u8, body: &[u8]) -> Result<Frame, FrameError> {
    let fin = flags & FLAG_FIN != 0;
    let id = |name| body.get(..4).map(|b| be32(b) & STREAM_ID_MASK).ok_or(malformed(name, "shorter than its stream id"));
    Ok(match kind {
        SYN_STREAM => {
            if body.len() < 10 {
                return Err(malformed("SYN_STREAM", "shorter than 10 bytes"));
            }
            Frame::SynStream {
                stream_id: be32(body) & STREAM_ID_MASK,
                associated_to: be32(&body[4..]) & STREAM_ID_MASK,
                priority: body[8] >> 5,
                fin,
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                headers: body[10..].to_vec(),
            }
        }
        SYN_REPLY => Frame::SynReply { stream_id: id("SYN_REPLY")?, fin, headers: body[4..].to_vec() },
        HEADERS => Frame::Headers { stream_id: id("HEADERS")?, fin, headers: body[4..].to_vec() },
        RST_STREAM => {
            exact_len("RST_STREAM", body, 8)?;
            Frame::RstStream { stream_id: be32(body) & STREAM_ID_MASK, status: be32(&body[4..]) }
        }
        SETTINGS => decode_settings(flags, body)?,
        PING => {
            exact_len("PING", body, 4)?;
            Frame::Ping { id: be32(body) }
        }
        GOAWAY => {
            exact_len("GOAWAY", body, 8)?;
            Frame::GoAway { last_good_stream_id: be32(body) & STREAM_ID_MASK, status: be32(&body[4..]) }
        }
        WINDOW_UPDATE => {
            exact_len("WINDOW_UPDATE", body, 8)?;
            let delta = be32(&body[4..]) & STREAM_ID_MASK;
            if delta == 0 {
                return Err(malformed("WINDOW_UPDATE", "delta window size 0"));
            }
            Frame::WindowUpdate { stream_id: be32(body) & STREAM_ID_MASK, delta }
        }
        kind => Frame::Unknown { kind },
    })
}

fn exact_len(kind: &'static str, body: &[u8], want: usize) -> Result<(), FrameError> {
    if body.len() == want {
        Ok(())
    } else {
        Err(malformed(kind, "has the wrong length"))
    }
}

fn decode_settings(flags: u8, body: &[u8]) -> Result<Frame, FrameError> {
    let count = body.get(..4).map(be32).ok_or(malformed("SETTINGS", "shorter than its entry count"))?;
    let entries = &body[4..];
    if u64::from(count) * 8 != entries.len() as u64 {
        return Err(malformed("SETTINGS", "entry count does not match its length"));
    }
    let entries = entries
        .chunks_exact(8)
        .map(|e| Setting { flags: e[0], id: be32(e) & 0x00ff_ffff, value: be32(&e[4..]) })
        .collect();
    Ok(Frame::Settings { clear: flags & FLAG_CLEAR_SETTINGS != 0, entries })
}

/// Append the frame's wire form to `out`. Payloads that do not fit the
/// 24-bit length are a caller's bug (data is split by the writer), reported
/// as an error rather than truncated.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    let flag = |b: bool, f: u8| if b { f } else { 0 };
    match frame {
        Frame::Data { stream_id, fin, data } => {
            out.extend_from_slice(&(stream_id & STREAM_ID_MASK).to_be_bytes());
            out.push(flag(*fin, FLAG_FIN));
            push_len(out, data.len(), Some(*stream_id))?;
            out.extend_from_slice(data);
        }
        Frame::SynStream { stream_id, associated_to, priority, fin, unidirectional, headers } => {
            let flags = flag(*fin, FLAG_FIN) | flag(*unidirectional, FLAG_UNIDIRECTIONAL);
            control_header(out, SYN_STREAM, flags, 10 + headers.len())?;
            out.extend_from_slice(&(stream_id & STREAM_ID_MASK).to_be_bytes());
            out.extend_from_slice(&(associated_to & STREAM_ID_MASK).to_be_bytes());
            out.extend_from_slice(&[(priority & 0x07) << 5, 0]);
            out.extend_from_slice(headers);
        }
        Frame::SynReply { stream_id, fin, headers } | Frame::Headers { stream_id, fin, headers } => {
            let kind = if matches!(frame, Frame::SynReply { .. }) { SYN_REPLY } else { HEADERS };
            control_header(out, kind, flag(*fin, FLAG_FIN), 4 + headers.len())?;
            out.extend_from_slice(&(stream_id & STREAM_ID_MASK).to_be_bytes());
            out.extend_from_slice(headers);
        }
        Frame::RstStream { stream_id, status } => two_words(out, RST_STREAM, *stream_id & STREAM_ID_MASK, *status)?,
        Frame::GoAway { last_good_stream_id, status } => two_words(out, GOAWAY, *last_good_stream_id & STREAM_ID_MASK, *status)?,
        Frame::WindowUpdate { stream_id, delta } => two_words(out, WINDOW_UPDATE, *stream_id & STREAM_ID_MASK, *delta & STREAM_ID_MASK)?,
        Frame::Ping { id } => {
            control_header(out, PING, 0, 4)?;
            out.extend_from_slice(&id.to_be_bytes());
        }
        Frame::Settings { clear, entries } => {
            control_header(out, SETTINGS, flag(*clear, FLAG_CLEAR_SETTINGS), 4 + 8 * entries.len())?;
            out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for e in entries {
                out.extend_from_slice(&((u32::from(e.flags) << 24) | (e.id & 0x00ff_ffff)).to_be_bytes());
                out.extend_from_slice(&e.value.to_be_bytes());
            }
        }
        Frame::Unknown { .. } => {
            out.truncate(start);
            return Err(malformed("unknown", "cannot be encoded"));
        }
    }
    Ok(())
}

fn control_header(out: &mut Vec<u8>, kind: u16, flags: u8, len: usize) -> Result<(), FrameError> {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    push_len(out, len, None)
}

fn two_words(out: &mut Vec<u8>, kind: u16, a: u32, b: u32) -> Result<(), FrameError> {
    control_header(out, kind, 0, 8)?;
    out.extend_from_slice(&a.to_be_bytes());
    out.extend_from_slice(&b.to_be_bytes());
    Ok(())
}

fn push_len(out: &mut Vec<u8>, len: usize, stream_id: Option<u32>) -> Result<(), FrameError> {
    if len > MAX_LENGTH {
        return Err(FrameError::TooLarge { len, max: MAX_LENGTH, stream_id });
    }
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) {
        let mut out = Vec::new();
        encode(&f, &mut out).unwrap();
        // Every proper prefix is "incomplete", never an error or a frame.
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut], MAX_LENGTH).unwrap(), None, "prefix {cut} of {f:?}");
        }
        out.extend_from_slice(b"next");
        let (back, used) = decode(&out, MAX_LENGTH).unwrap().unwrap();
        assert_eq!(back, f);
        assert_eq!(used, out.len() - 4);
    }

    #[test]
    fn every_frame_round_trips() {
        round_trip(Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 7,
            fin: false,
            unidirectional: true,
            headers: vec![1, 2, 3],
        });
        round_trip(Frame::SynReply { stream_id: 2, fin: true, headers: vec![9; 40] });
        round_trip(Frame::Headers { stream_id: 3, fin: false, headers: vec![] });
        round_trip(Frame::RstStream { stream_id: 5, status: rst::CANCEL });
        round_trip(Frame::Settings { clear: true, entries: vec![Setting { flags: 1, id: setting::INITIAL_WINDOW_SIZE, value: 1 << 20 }] });
        round_trip(Frame::Ping { id: 0xdead_beef });
        round_trip(Frame::GoAway { last_good_stream_id: 7, status: goaway::OK });
        round_trip(Frame::WindowUpdate { stream_id: 0, delta: 65536 });
        round_trip(Frame::Data { stream_id: 9, fin: true, data: b"hello".to_vec() });
        round_trip(Frame::Data { stream_id: 11, fin: false, data: vec![] });
    }

    #[test]
    fn known_bytes_of_a_ping_and_a_data_frame() {
        let mut out = Vec::new();
        encode(&Frame::Ping { id: 1 }, &mut out).unwrap();
        assert_eq!(out, [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1]);
        out.clear();
        encode(&Frame::Data { stream_id: 3, fin: true, data: b"ab".to_vec() }, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 3, 0x01, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn reserved_bits_are_ignored() {
        // Stream id with the reserved top bit set; priority's unused bits set.
        let mut f = vec![0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x0a];
        f.extend_from_slice(&[0x80, 0, 0, 5, 0x80, 0, 0, 0, 0xff, 0xff]);
        let (frame, _) = decode(&f, MAX_LENGTH).unwrap().unwrap();
        assert!(matches!(frame, Frame::SynStream { stream_id: 5, associated_to: 0, priority: 7, .. }));
    }

    #[test]
    fn bad_frames_are_refused() {
        let too_big = [0, 0, 0, 1, 0, 0x10, 0, 0];
        assert_eq!(decode(&too_big, 4096), Err(FrameError::TooLarge { len: 0x100000, max: 4096, stream_id: Some(1) }));
        let v2 = [0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1];
        assert_eq!(decode(&v2, MAX_LENGTH), Err(FrameError::UnsupportedVersion(2)));
        let short_ping = [0x80, 0x03, 0x00, 0x06, 0, 0, 0, 3, 0, 0, 1];
        assert!(matches!(decode(&short_ping, MAX_LENGTH), Err(FrameError::Malformed { kind: "PING", .. })));
        let zero_window = [0x80, 0x03, 0x00, 0x09, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(matches!(decode(&zero_window, MAX_LENGTH), Err(FrameError::Malformed { .. })));
        // SETTINGS claiming more entries than it carries (a 2^32 count must not overflow).
        let settings = [0x80, 0x03, 0x00, 0x04, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(decode(&settings, MAX_LENGTH), Err(FrameError::Malformed { kind: "SETTINGS", .. })));
        let short_syn = [0x80, 0x03, 0x00, 0x01, 0, 0, 0, 4, 0, 0, 0, 1];
        assert!(matches!(decode(&short_syn, MAX_LENGTH), Err(FrameError::Malformed { .. })));
    }

    #[test]
    fn unknown_control_frames_are_skipped() {
        let f = [0x80, 0x03, 0x00, 0x0a, 0, 0, 0, 2, 7, 7, 0x80];
        assert_eq!(decode(&f, MAX_LENGTH).unwrap(), Some((Frame::Unknown { kind: 10 }, 10)));
    }

    #[test]
    fn oversized_payloads_are_not_encoded() {
        let f = Frame::Data { stream_id: 1, fin: false, data: vec![0; MAX_LENGTH + 1] };
        assert!(matches!(encode(&f, &mut Vec::new()), Err(FrameError::TooLarge { .. })));
    }
}
