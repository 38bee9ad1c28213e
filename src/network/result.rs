//! CNI results (spec 1.0 "Success" and "Error" output) as typed values.
//!
//! The raw JSON a plugin printed is what gets chained as the next plugin's
//! `prevResult` and recorded; these types are the reading of it for hull.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The result of ADD: interfaces, addresses, routes, DNS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for interfaces inside the container; absent for host
    /// interfaces (the bridge, the host end of the veth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR notation, e.g. "10.88.0.2/16".
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

impl IpConfig {
    /// The address without its prefix length.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.split('/').next()?.parse().ok()
    }
    pub fn prefix_len(&self) -> Option<u8> {
        self.address.split_once('/')?.1.parse().ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl CniResult {
    /// Parse a plugin's result. Older (0.3.x/0.4.0) results have the same
    /// shape plus an ignored per-IP `version`.
    pub fn parse(value: &serde_json::Value) -> Result<CniResult, String> {
        serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let path = e.path().to_string();
            format!("field {path}: {}", e.into_inner())
        })
    }

    /// Addresses on interfaces inside the sandbox (the pod's IPs), v4 first.
    /// IPs whose interface index is absent or points at no sandbox
    /// interface are included only when no IP is tied to a sandbox one.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        let in_sandbox = |ip: &&IpConfig| {
            ip.interface
                .and_then(|i| self.interfaces.get(i))
                .map(|itf| itf.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
                .unwrap_or(false)
        };
        let mut chosen: Vec<&IpConfig> = self.ips.iter().filter(in_sandbox).collect();
        if chosen.is_empty() {
            chosen = self.ips.iter().collect();
        }
        let mut ips: Vec<IpAddr> = chosen.iter().filter_map(|c| c.ip()).collect();
        ips.sort_by_key(|ip| ip.is_ipv6());
        ips
    }
}

/// A plugin's error output: `{"cniVersion", "code", "msg", "details"}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CniErrorOutput {
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

impl CniErrorOutput {
    pub fn parse(stdout: &[u8]) -> Option<CniErrorOutput> {
        serde_json::from_slice(stdout).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE_RESULT: &str = r#"{
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "hull0", "mac": "96:49:31:5d:c2:21"},
            {"name": "veth98e8f313", "mac": "6a:c0:6f:c9:88:ab"},
            {"name": "eth0", "mac": "46:13:2f:4c:00:67", "sandbox": "/run/hull/netns/p1"}
        ],
        "ips": [
            {"interface": 2, "address": "fd00:88::5/64", "gateway": "fd00:88::1"},
            {"interface": 2, "address": "10.88.0.5/16", "gateway": "10.88.0.1"}
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00:88::1"}],
        "dns": {"nameservers": ["10.88.0.1"], "search": ["svc.local"]}
    }"#;

    #[test]
    fn parses_a_bridge_result() {
        let v: serde_json::Value = serde_json::from_str(BRIDGE_RESULT).unwrap();
        let r = CniResult::parse(&v).unwrap();
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.interfaces[2].sandbox.as_deref(), Some("/run/hull/netns/p1"));
        assert_eq!(r.ips[1].ip(), Some("10.88.0.5".parse().unwrap()));
        assert_eq!(r.ips[1].prefix_len(), Some(16));
        assert_eq!(r.ips[1].gateway, Some("10.88.0.1".parse().unwrap()));
        assert_eq!(r.routes[1].gw, Some("fd00:88::1".parse().unwrap()));
        assert_eq!(r.dns.nameservers, vec!["10.88.0.1"]);
        let ips = r.pod_ips();
        assert_eq!(ips, vec!["10.88.0.5".parse::<IpAddr>().unwrap(), "fd00:88::5".parse().unwrap()]);
    }

    #[test]
    fn parses_old_and_minimal_results() {
        let v = serde_json::json!({"cniVersion": "0.4.0",
            "ips": [{"version": "4", "address": "172.31.9.2/24"}], "dns": {}});
        let r = CniResult::parse(&v).unwrap();
        assert_eq!(r.pod_ips(), vec!["172.31.9.2".parse::<IpAddr>().unwrap()]);
        let r = CniResult::parse(&serde_json::json!({"cniVersion": "1.0.0"})).unwrap();
        assert!(r.ips.is_empty() && r.interfaces.is_empty());
        let e = CniResult::parse(&serde_json::json!({"ips": [{"address": 5}]})).unwrap_err();
        assert!(e.contains("ips[0].address"), "{e}");
    }

    #[test]
    fn parses_error_output() {
        let e = CniErrorOutput::parse(br#"{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"x"}"#).unwrap();
        assert_eq!((e.code, e.msg.as_str(), e.details.as_str()), (7, "bad config", "x"));
        let e = CniErrorOutput::parse(br#"{"code":999,"msg":"loopback interface is down"}"#).unwrap();
        assert_eq!(e.details, "");
        assert!(CniErrorOutput::parse(b"panic: oops").is_none());
    }
}
