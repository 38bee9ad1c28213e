//! The Kubernetes streaming subprotocols, independent of the transport:
//! which versions exist and are negotiated, the channels of the WebSocket
//! forms, the Status JSON the v4+ error stream carries, and terminal resize
//! messages.

use serde::Deserialize;

/// remotecommand (exec, attach) over SPDY, best first.
pub const SPDY_REMOTECOMMAND: &[&str] = &["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];
/// remotecommand over WebSocket, best first (v5 adds the close signal).
pub const WS_REMOTECOMMAND: &[&str] =
    &["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];
/// port-forward over SPDY.
pub const SPDY_PORTFORWARD: &[&str] = &["portforward.k8s.io"];
/// port-forward over WebSocket: channel pairs per port, or SPDY tunnelled
/// in binary messages (KEP-4006).
pub const WS_PORTFORWARD: &[&str] = &["v4.portforward.k8s.io", "portforward.k8s.io", TUNNEL_PORTFORWARD];
pub const TUNNEL_PORTFORWARD: &str = "SPDY/3.1+portforward.k8s.io";

/// The header SPDY clients offer their versions in (once per version).
pub const PROTOCOL_HEADER: &str = "X-Stream-Protocol-Version";

/// The first protocol of the client's list (in its order of preference)
/// that the server speaks.
pub fn negotiate<'a>(offered: &[String], ours: &[&'a str]) -> Option<&'a str> {
    offered
        .iter()
        .flat_map(|o| o.split(','))
        .map(str::trim)
        .find_map(|o| ours.iter().find(|p| **p == o).copied())
}

/// The version of remotecommand a negotiated name stands for (1..=5).
pub fn remotecommand_version(protocol: &str) -> u8 {
    match protocol {
        "v5.channel.k8s.io" => 5,
        "v4.channel.k8s.io" => 4,
        "v3.channel.k8s.io" => 3,
        "v2.channel.k8s.io" => 2,
        _ => 1,
    }
}

/// Channel numbers of the WebSocket remotecommand protocols (the first byte
/// of every binary message).
pub mod channel {
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    pub const ERROR: u8 = 3;
    pub const RESIZE: u8 = 4;
    /// v5: `[CLOSE, n]` says channel n is closed (stdin EOF).
    pub const CLOSE: u8 = 255;
}

/// SPDY stream types (the `streamType` header).
pub mod stream_type {
    pub const STDIN: &str = "stdin";
    pub const STDOUT: &str = "stdout";
    pub const STDERR: &str = "stderr";
    pub const ERROR: &str = "error";
    pub const RESIZE: &str = "resize";
    pub const DATA: &str = "data";
}

/// What the error stream says at the end of an exec or attach: a v1 Status
/// object for v4 and later, plain text before (empty on success).
pub fn final_status(version: u8, exit_code: Option<i32>, failure: Option<&str>) -> Vec<u8> {
    let message = match (failure, exit_code) {
        (Some(f), _) => Some(f.to_string()),
        (None, Some(c)) if c != 0 => Some(format!("command terminated with non-zero exit code: exit status {c}")),
        _ => None,
    };
    if version < 4 {
        return message.unwrap_or_default().into_bytes();
    }
    let status = match (failure, exit_code, message) {
        (None, Some(c), Some(m)) if c != 0 => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": m,
            "reason": "NonZeroExitCode",
            "details": { "causes": [ { "reason": "ExitCode", "message": c.to_string() } ] },
        }),
        (_, _, Some(m)) => serde_json::json!({ "metadata": {}, "status": "Failure", "message": m }),
        _ => serde_json::json!({ "metadata": {}, "status": "Success" }),
    };
    status.to_string().into_bytes()
}

/// A terminal size from the resize stream or channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Resize messages arrive as a stream of JSON objects that reads may cut
/// anywhere; this collects bytes and yields whole messages.
#[derive(Default)]
pub struct ResizeDecoder {
    buf: Vec<u8>,
}

/// Bound on a partial resize message (they are ~30 bytes).
const MAX_RESIZE_MESSAGE: usize = 4096;

impl ResizeDecoder {
    /// Feed bytes; returns the sizes completed, or an error for a message
    /// that is not a terminal size.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<TerminalSize>, String> {
        self.buf.extend_from_slice(bytes);
        let mut sizes = Vec::new();
        let mut used = 0;
        let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<TerminalSize>();
        loop {
            match it.next() {
                Some(Ok(s)) => {
                    sizes.push(s);
                    used = it.byte_offset();
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => return Err(format!("resize message: {e}")),
                None => {
                    used = it.byte_offset();
                    break;
                }
            }
        }
        self.buf.drain(..used);
        if self.buf.len() > MAX_RESIZE_MESSAGE {
            return Err("resize message too long".into());
        }
        Ok(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_clients_first_supported() {
        let offered = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(negotiate(&offered(&["v4.channel.k8s.io", "channel.k8s.io"]), SPDY_REMOTECOMMAND), Some("v4.channel.k8s.io"));
        assert_eq!(negotiate(&offered(&["v9.x", "v3.channel.k8s.io"]), SPDY_REMOTECOMMAND), Some("v3.channel.k8s.io"));
        // WebSocket clients send one comma-separated header.
        assert_eq!(negotiate(&offered(&["v5.channel.k8s.io, v4.channel.k8s.io"]), WS_REMOTECOMMAND), Some("v5.channel.k8s.io"));
        assert_eq!(negotiate(&offered(&["v5.channel.k8s.io"]), SPDY_REMOTECOMMAND), None);
        assert_eq!(negotiate(&[], SPDY_REMOTECOMMAND), None);
        assert_eq!(remotecommand_version("v4.channel.k8s.io"), 4);
        assert_eq!(remotecommand_version("channel.k8s.io"), 1);
    }

    #[test]
    fn status_json_as_kubectl_reads_it() {
        let ok: serde_json::Value = serde_json::from_slice(&final_status(4, Some(0), None)).unwrap();
        assert_eq!(ok["status"], "Success");
        let bad: serde_json::Value = serde_json::from_slice(&final_status(4, Some(3), None)).unwrap();
        assert_eq!(bad["status"], "Failure");
        assert_eq!(bad["reason"], "NonZeroExitCode");
        assert_eq!(bad["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(bad["details"]["causes"][0]["message"], "3");
        let failed: serde_json::Value = serde_json::from_slice(&final_status(5, None, Some("no such file"))).unwrap();
        assert_eq!(failed["message"], "no such file");
        assert!(failed.get("reason").is_none());
        assert!(final_status(3, Some(0), None).is_empty());
        assert!(String::from_utf8(final_status(2, Some(2), None)).unwrap().contains("exit status 2"));
    }

    #[test]
    fn resize_messages_split_anywhere() {
        let msgs = br#"{"Width":80,"Height":24}{"Width":120,"Height":40}"#;
        for cut in 0..msgs.len() {
            let mut d = ResizeDecoder::default();
            let mut got = d.feed(&msgs[..cut]).unwrap();
            got.extend(d.feed(&msgs[cut..]).unwrap());
            assert_eq!(got, [TerminalSize { width: 80, height: 24 }, TerminalSize { width: 120, height: 40 }], "cut {cut}");
        }
        assert!(ResizeDecoder::default().feed(br#""wide""#).is_err());
        assert!(ResizeDecoder::default().feed(br#"{"Width":-1,"Height":2}"#).is_err());
        assert!(ResizeDecoder::default().feed(&[b'{'; 5000]).is_err());
    }
}
