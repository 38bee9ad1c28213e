//! SPDY/3 header blocks: name/value pairs, each string with a 32-bit length,
//! compressed with one zlib stream per direction of a connection, primed with
//! the protocol's dictionary and flushed (Z_SYNC_FLUSH) after every block.
//!
//! The decoder bounds what a peer can make it hold: the inflated size of one
//! block, and so the number and size of its pairs.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary;

/// Largest inflated header block accepted (kubelet and crictl send a few
/// hundred bytes).
pub const MAX_BLOCK: usize = 64 * 1024;

/// Header pairs in wire order. Names are lowercase on the wire (SPDY/3);
/// several values of one name travel NUL-separated in one value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The first value of `name` (case-insensitive), if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split('\0').next().unwrap_or(""))
    }

    /// Add a pair; names are lowercased as SPDY/3 requires.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.0.push((name.to_ascii_lowercase(), value.into()));
    }
}

/// Why a header block was refused: either way a session error, since the
/// shared zlib stream is unusable after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("SPDY header block: {0}")]
    Malformed(&'static str),
    #[error("SPDY header block inflates past {MAX_BLOCK} bytes")]
    TooLarge,
    #[error("SPDY header block: zlib: {0}")]
    Zlib(String),
}

/// The sending side's zlib stream.
pub struct HeaderEncoder {
    z: Compress,
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderEncoder {
    pub fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        // A fresh stream with no input accepts a dictionary; zlib-rs/zlib
        // only fail here on a stream that already started.
        z.set_dictionary(&dictionary::bytes()).expect("prime a fresh zlib stream with the SPDY dictionary");
        HeaderEncoder { z }
    }

    /// The compressed form of `headers`, ready for a frame.
    pub fn encode(&mut self, headers: &Headers) -> Result<Vec<u8>, HeaderError> {
        let raw = serialize(headers)?;
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let start_in = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start_in) as usize;
            out.reserve(256);
            self.z
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| HeaderError::Zlib(e.to_string()))?;
            let all_in = (self.z.total_in() - start_in) as usize == raw.len();
            // A sync flush is complete when all input is in and the last
            // call left spare output room (zlib had nothing more to write).
            if all_in && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving side's zlib stream.
pub struct HeaderDecoder {
    z: Decompress,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecoder {
    pub fn new() -> Self {
        HeaderDecoder { z: Decompress::new(true) }
    }

    /// Inflate and parse one header block, in the order blocks arrived.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderError> {
        let mut out = Vec::with_capacity(1024);
        let start_in = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start_in) as usize;
            if out.len() == out.capacity() {
                if out.len() > MAX_BLOCK {
                    return Err(HeaderError::TooLarge);
                }
                out.reserve(out.len().max(1024));
            }
            let before = (self.z.total_in(), self.z.total_out());
            match self.z.decompress_vec(&block[consumed..], &mut out, FlushDecompress::Sync) {
                Ok(Status::StreamEnd) => return Err(HeaderError::Malformed("the zlib stream ended")),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z.set_dictionary(&dictionary::bytes()).map_err(|e| HeaderError::Zlib(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(HeaderError::Zlib(e.to_string())),
            }
            if out.len() > MAX_BLOCK {
                return Err(HeaderError::TooLarge);
            }
            let all_in = (self.z.total_in() - start_in) as usize == block.len();
            let progressed = (self.z.total_in(), self.z.total_out()) != before;
            if all_in && out.len() < out.capacity() {
                break;
            }
            if !progressed && out.len() < out.capacity() {
                return Err(HeaderError::Malformed("truncated compressed data"));
            }
        }
        parse(&out)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), HeaderError> {
    let len = u32::try_from(s.len()).map_err(|_| HeaderError::TooLarge)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn serialize(headers: &Headers) -> Result<Vec<u8>, HeaderError> {
    let mut raw = Vec::new();
    let count = u32::try_from(headers.0.len()).map_err(|_| HeaderError::TooLarge)?;
    raw.extend_from_slice(&count.to_be_bytes());
    for (name, value) in &headers.0 {
        if name.is_empty() {
            return Err(HeaderError::Malformed("empty header name"));
        }
        put_str(&mut raw, name)?;
        put_str(&mut raw, value)?;
    }
    if raw.len() > MAX_BLOCK {
        return Err(HeaderError::TooLarge);
    }
    Ok(raw)
}

fn parse(raw: &[u8]) -> Result<Headers, HeaderError> {
    let mut rest = raw;
    let mut take = |n: usize| -> Result<&[u8], HeaderError> {
        if rest.len() < n {
            return Err(HeaderError::Malformed("shorter than its lengths say"));
        }
        let (a, b) = rest.split_at(n);
        rest = b;
        Ok(a)
    };
    let word = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = word(take(4)?);
    // Each pair takes at least 8 bytes: a count beyond that is a lie, and
    // refusing it here keeps the allocation below bounded by the block.
    if count > raw.len() / 8 {
        return Err(HeaderError::Malformed("more pairs than bytes"));
    }
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let n = word(take(4)?);
        let name = take(n)?;
        let v = word(take(4)?);
        let value = take(v)?;
        if name.is_empty() {
            return Err(HeaderError::Malformed("empty header name"));
        }
        let name = std::str::from_utf8(name).map_err(|_| HeaderError::Malformed("header name is not UTF-8"))?;
        let value = std::str::from_utf8(value).map_err(|_| HeaderError::Malformed("header value is not UTF-8"))?;
        pairs.push((name.to_ascii_lowercase(), value.to_string()));
    }
    if !rest.is_empty() {
        return Err(HeaderError::Malformed("bytes after the last pair"));
    }
    Ok(Headers(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Headers {
        let mut h = Headers::default();
        h.push("streamType", "stdout");
        h.push("port", "8080");
        h.push("multi", "a\0b");
        h
    }

    #[test]
    fn blocks_round_trip_through_one_shared_stream() {
        let (mut enc, mut dec) = (HeaderEncoder::new(), HeaderDecoder::new());
        for i in 0..50 {
            let mut h = sample();
            h.push("requestid", i.to_string());
            let block = enc.encode(&h).unwrap();
            let back = dec.decode(&block).unwrap();
            assert_eq!(back, h);
            assert_eq!(back.get("StreamType"), Some("stdout"));
            assert_eq!(back.get("multi"), Some("a"));
        }
    }

    /// A block made by C zlib (Python's zlib module, primed with the same
    /// dictionary and sync-flushed, as Go's compress/zlib does for
    /// spdystream): proves the dictionary and framing interoperate.
    #[test]
    fn decodes_a_block_from_c_zlib() {
        let block = hex(concat!("78bbe3c6a7c202e50e703a2b294a4dcc851625aca9a0800625b10add92547041", "c192519a9303000000ffff"));
        let h = HeaderDecoder::new().decode(&block).unwrap();
        assert_eq!(h.get("streamtype"), Some("error"));
        assert_eq!(h.0.len(), 2);
        assert_eq!(h.get("x-test"), Some("hull"));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn hostile_blocks_are_refused() {
        // A zlib stream that inflates to far more than MAX_BLOCK.
        let mut big = Headers::default();
        big.push("a", "x".repeat(MAX_BLOCK));
        assert_eq!(HeaderEncoder::new().encode(&big), Err(HeaderError::TooLarge));
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&dictionary::bytes()).unwrap();
        let mut bomb = Vec::with_capacity(1 << 20);
        z.compress_vec(&vec![0u8; 4 * MAX_BLOCK], &mut bomb, FlushCompress::Sync).unwrap();
        assert_eq!(HeaderDecoder::new().decode(&bomb), Err(HeaderError::TooLarge));
        // Garbage is a zlib error, not a panic.
        assert!(HeaderDecoder::new().decode(b"not zlib at all").is_err());
        // Pair counts and lengths that lie.
        assert!(parse(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(parse(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
        assert!(parse(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(parse(&[0, 0, 0, 0, 1]).is_err());
    }
}
