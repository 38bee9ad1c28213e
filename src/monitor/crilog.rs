//! Container logs in the CRI format kubelet and crictl read:
//! `2016-10-06T00:17:09.669794202Z stdout F line`, with `P` for a partial
//! line (cut at 16 KiB, or the last bytes before the stream ends).
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest line written as one record; longer ones are split into partials.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

pub struct CriLog {
    path: PathBuf,
    file: Option<File>,
    /// Bytes of an unfinished line, per stream.
    pending: [Vec<u8>; 2],
}

impl CriLog {
    pub fn open(path: &Path) -> CriLog {
        let mut log = CriLog { path: path.to_path_buf(), file: None, pending: [Vec::new(), Vec::new()] };
        log.reopen();
        log
    }

    /// (Re)open the log file, e.g. after it was rotated away.
    pub fn reopen(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        self.file = OpenOptions::new().create(true).append(true).open(&self.path).ok();
    }

    pub fn write(&mut self, stream: Stream, mut data: &[u8]) {
        let idx = stream as usize;
        while let Some(nl) = data.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(&mut self.pending[idx]);
            line.extend_from_slice(&data[..nl]);
            self.emit_long(stream, &line);
            data = &data[nl + 1..];
        }
        self.pending[idx].extend_from_slice(data);
        while self.pending[idx].len() >= MAX_LINE {
            let rest = self.pending[idx].split_off(MAX_LINE);
            let chunk = std::mem::replace(&mut self.pending[idx], rest);
            self.record(stream, 'P', &chunk);
        }
    }

    /// The stream ended: whatever is left is written as a final record.
    pub fn flush_partial(&mut self, stream: Stream) {
        let idx = stream as usize;
        if !self.pending[idx].is_empty() {
            let line = std::mem::take(&mut self.pending[idx]);
            self.record(stream, 'F', &line);
        }
    }

    fn emit_long(&mut self, stream: Stream, line: &[u8]) {
        let mut chunks = line.chunks(MAX_LINE).peekable();
        if chunks.peek().is_none() {
            self.record(stream, 'F', b"");
        }
        while let Some(c) = chunks.next() {
            let tag = if chunks.peek().is_some() { 'P' } else { 'F' };
            self.record(stream, tag, c);
        }
    }

    fn record(&mut self, stream: Stream, tag: char, content: &[u8]) {
        let Some(f) = self.file.as_mut() else { return };
        let ts = humantime::format_rfc3339_nanos(std::time::SystemTime::now());
        let mut out = Vec::with_capacity(content.len() + 48);
        let _ = write!(out, "{ts} {} {tag} ", stream.name());
        out.extend_from_slice(content);
        out.push(b'\n');
        let _ = f.write_all(&out);
    }
}

/// Parse one CRI log line into (stream, partial?, content).
pub fn parse_line(line: &str) -> Option<(&str, bool, &str)> {
    let mut parts = line.splitn(4, ' ');
    let _time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or("");
    Some((stream, tag == "P", content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_partials_and_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = CriLog::open(&path);
        log.write(Stream::Stdout, b"hello\nwor");
        log.write(Stream::Stderr, b"oops\n");
        log.write(Stream::Stdout, b"ld\n");
        log.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 10]);
        log.flush_partial(Stream::Stdout);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<(&str, bool, &str)> = text.lines().map(|l| parse_line(l).unwrap()).collect();
        assert_eq!(lines[0], ("stdout", false, "hello"));
        assert_eq!(lines[1], ("stderr", false, "oops"));
        assert_eq!(lines[2], ("stdout", false, "world"));
        assert!(lines[3].1);
        assert_eq!(lines[3].2.len(), MAX_LINE);
        assert_eq!(lines[4], ("stdout", false, "xxxxxxxxxx"));
        let ts = text.split(' ').next().unwrap();
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
    }
}
