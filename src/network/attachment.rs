//! A container's attachment to a CNI network: everything ADD, CHECK and
//! DEL need, in one serialisable record.
//!
//! The caller stores the record *before* ADD and again after it (with the
//! result): after a crash, the stored record alone is enough for DEL, even
//! if the config directory changed meanwhile, since it holds the exact
//! config list, plugin dirs, netns path, ids and port mappings used.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::{supports_check, CniConfig, NetworkConfigList};
use super::error::{NetworkError, Result};
use super::invoke::{invoke, CniCommand, Invocation};
use super::result::CniResult;

/// A hostPort → containerPort mapping, in the shape the portmap plugin
/// takes as its `portMappings` capability argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// "tcp", "udp" or "sctp".
    pub protocol: String,
    /// Host address to listen on; empty or absent means all.
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

impl std::str::FromStr for PortMapping {
    type Err = NetworkError;

    /// `[HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]`, e.g. `8080:80`,
    /// `127.0.0.1:5353:53/udp`, `[::1]:8080:80/tcp`.
    fn from_str(spec: &str) -> Result<PortMapping> {
        let bad = |why: &str| NetworkError::InvalidPortMapping { spec: spec.to_string(), why: why.to_string() };
        let (ports, protocol) = match spec.rsplit_once('/') {
            Some((p, proto)) => (p, proto.to_ascii_lowercase()),
            None => (spec, "tcp".to_string()),
        };
        if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
            return Err(bad("protocol must be tcp, udp or sctp"));
        }
        let (rest, container) = ports.rsplit_once(':').ok_or_else(|| bad("expected HOSTPORT:CONTAINERPORT"))?;
        let (host_ip, host) = match rest.rsplit_once(':') {
            Some((ip, port)) => (ip.trim_start_matches('[').trim_end_matches(']').to_string(), port),
            None => (String::new(), rest),
        };
        if !host_ip.is_empty() && host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(bad("host IP is not an IP address"));
        }
        let port = |s: &str| s.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("ports are 1-65535"));
        Ok(PortMapping { host_port: port(host)?, container_port: port(container)?, protocol, host_ip })
    }
}

/// The record of one container's attachment to one network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub container_id: String,
    /// The pinned network namespace (see [`super::netns`]).
    pub netns: PathBuf,
    pub ifname: String,
    /// The config list used, exactly as loaded.
    pub config: NetworkConfigList,
    /// Where `config` was loaded from (for messages only).
    #[serde(default)]
    pub config_source: PathBuf,
    pub plugin_dirs: Vec<PathBuf>,
    /// Time limit per plugin call, in milliseconds.
    pub timeout_ms: u64,
    /// Passed to plugins that declare the `portMappings` capability.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    /// Other capability arguments (`bandwidth`, `dns`, `ips`, `mac`...),
    /// passed to plugins that declare them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capability_args: BTreeMap<String, Value>,
    /// CNI_ARGS key/value pairs (e.g. K8S_POD_NAME); `IgnoreUnknown=1` is
    /// added in front when there are any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<(String, String)>,
    /// The ADD result, as the last plugin printed it (chained as
    /// `prevResult` into CHECK and DEL). None before ADD succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

impl CniConfig {
    /// A new attachment record for `container_id` in `netns` on `ifname`.
    /// Set `port_mappings` (and the rest) before storing it and calling ADD.
    pub fn attachment(&self, container_id: &str, netns: &Path, ifname: &str) -> Attachment {
        Attachment {
            container_id: container_id.to_string(),
            netns: netns.to_path_buf(),
            ifname: ifname.to_string(),
            config: self.list.clone(),
            config_source: self.source.clone(),
            plugin_dirs: self.plugin_dirs.clone(),
            timeout_ms: self.timeout.as_millis().min(u64::MAX as u128) as u64,
            port_mappings: Vec::new(),
            capability_args: BTreeMap::new(),
            args: Vec::new(),
            result: None,
        }
    }
}

impl Attachment {
    /// ADD: run the plugins in order, each getting the previous one's result
    /// as `prevResult`. On success the final result is kept in
    /// `self.result` (store the record again) and returned. On failure the
    /// plugins are DELeted in reverse order, so nothing is left behind, and
    /// the first error (with the plugin's message) is returned.
    pub fn add(&mut self) -> Result<CniResult> {
        self.validate()?;
        self.netns_usable(CniCommand::Add)?;
        let mut prev: Option<Value> = None;
        for plugin in &self.config.plugins {
            let step = self
                .call(CniCommand::Add, plugin.plugin_type.as_str(), self.plugin_stdin(plugin, prev.as_ref())?)
                .and_then(|out| parse_result(&plugin.plugin_type, &out));
            match step {
                Ok(v) => prev = Some(v),
                Err(e) => {
                    self.rollback();
                    return Err(e);
                }
            }
        }
        let last = self.config.plugins.last().map(|p| p.plugin_type.clone()).unwrap_or_default();
        let value = prev.unwrap_or(Value::Null);
        match CniResult::parse(&value) {
            Ok(r) => {
                self.result = Some(value);
                Ok(r)
            }
            Err(message) => {
                self.rollback();
                Err(NetworkError::BadResult { plugin: last, command: "ADD", message })
            }
        }
    }

    /// The typed reading of the recorded ADD result.
    pub fn parsed_result(&self) -> Option<CniResult> {
        self.result.as_ref().and_then(|v| CniResult::parse(v).ok())
    }

    /// CHECK: every plugin verifies the container's networking is as ADD
    /// left it. Needs a recorded ADD result and cniVersion 0.4.0 or later;
    /// a config with `disableCheck` passes without running anything.
    pub fn check(&self) -> Result<()> {
        self.validate()?;
        self.netns_usable(CniCommand::Check)?;
        if !supports_check(&self.config.cni_version) {
            return Err(NetworkError::InvalidRequest(format!(
                "CHECK needs cniVersion 0.4.0 or later; network {:?} is {}",
                self.config.name, self.config.cni_version
            )));
        }
        let Some(result) = self.result.as_ref() else {
            return Err(NetworkError::InvalidRequest(format!(
                "CHECK of {:?} on network {:?}: no ADD result recorded",
                self.container_id, self.config.name
            )));
        };
        if self.config.disable_check {
            return Ok(());
        }
        for plugin in &self.config.plugins {
            self.call(CniCommand::Check, &plugin.plugin_type, self.plugin_stdin(plugin, Some(result))?)?;
        }
        Ok(())
    }

    /// DEL: the plugins in reverse order, with the recorded result as
    /// `prevResult`. Idempotent: deleting what is already gone succeeds
    /// (the plugins are built so), and a netns that no longer exists is
    /// passed as an empty CNI_NETNS, as the spec allows for DEL. Every
    /// plugin is called even when one fails; the first error is returned.
    pub fn del(&self) -> Result<()> {
        self.validate()?;
        let prev = if supports_check(&self.config.cni_version) { self.result.as_ref() } else { None };
        let mut first_err = None;
        for plugin in self.config.plugins.iter().rev() {
            let r = self
                .plugin_stdin(plugin, prev)
                .and_then(|stdin| self.call(CniCommand::Del, &plugin.plugin_type, stdin));
            if let Err(e) = r {
                log::debug!("CNI DEL {}: {e}", plugin.plugin_type);
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Undo a failed ADD. Its own failure is only logged: the ADD error is
    /// the one the user needs to see.
    fn rollback(&mut self) {
        self.result = None;
        if let Err(e) = self.del() {
            log::warn!("cleaning up after a failed CNI ADD of {:?}: {e}", self.container_id);
        }
    }

    fn call(&self, command: CniCommand, plugin: &str, stdin: Vec<u8>) -> Result<Vec<u8>> {
        let own = super::netns::is_own_netns(&self.netns);
        if own && command != CniCommand::Del {
            return Err(self.own_netns_refused(command));
        }
        // A netns that is gone is passed as "" (the spec allows it for DEL;
        // plugins then release what they hold outside it, like IPAM). So is
        // hull's own netns, which a stale /proc/<pid>/ns/net path can name
        // once the pid is reused: DEL must not delete host interfaces.
        let netns = if command == CniCommand::Del && (own || !super::netns::is_netns(&self.netns)) {
            String::new()
        } else {
            self.netns.to_string_lossy().into_owned()
        };
        let args = self.cni_args();
        let inv = Invocation {
            command,
            container_id: &self.container_id,
            netns: &netns,
            ifname: &self.ifname,
            args: &args,
            plugin_dirs: &self.plugin_dirs,
            timeout: Duration::from_millis(self.timeout_ms),
        };
        invoke(plugin, &stdin, &inv)
    }

    fn cni_args(&self) -> String {
        if self.args.is_empty() {
            return String::new();
        }
        let mut parts = vec!["IgnoreUnknown=1".to_string()];
        parts.extend(self.args.iter().map(|(k, v)| format!("{k}={v}")));
        parts.join(";")
    }

    /// The plugin's config as libcni builds it: the plugin object with the
    /// list's name and cniVersion, the previous result, and a
    /// `runtimeConfig` holding the capability args the plugin declares.
    fn plugin_stdin(&self, plugin: &super::config::PluginConfig, prev: Option<&Value>) -> Result<Vec<u8>> {
        let Value::Object(mut obj) = serde_json::to_value(plugin).map_err(|e| bad_request(e.to_string()))? else {
            return Err(bad_request("plugin config is not an object".into()));
        };
        obj.insert("name".into(), Value::String(self.config.name.clone()));
        obj.insert("cniVersion".into(), Value::String(self.config.cni_version.clone()));
        if let Some(p) = prev {
            obj.insert("prevResult".into(), p.clone());
        }
        let mut runtime = Map::new();
        for (cap, enabled) in &plugin.capabilities {
            if !enabled {
                continue;
            }
            if cap == "portMappings" && !self.port_mappings.is_empty() {
                runtime.insert(cap.clone(), serde_json::to_value(&self.port_mappings).map_err(|e| bad_request(e.to_string()))?);
            } else if let Some(v) = self.capability_args.get(cap) {
                runtime.insert(cap.clone(), v.clone());
            }
        }
        if !runtime.is_empty() {
            obj.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        serde_json::to_vec(&Value::Object(obj)).map_err(|e| bad_request(e.to_string()))
    }

    /// ADD and CHECK need the namespace, and never hull's own; say so
    /// before any plugin runs rather than let each fail its own way.
    fn netns_usable(&self, command: CniCommand) -> Result<()> {
        if !self.netns.exists() {
            return Err(bad_request(format!("network namespace {} does not exist", self.netns.display())));
        }
        if super::netns::is_own_netns(&self.netns) {
            return Err(self.own_netns_refused(command));
        }
        Ok(())
    }

    fn own_netns_refused(&self, command: CniCommand) -> NetworkError {
        bad_request(format!("refusing CNI {} in {}: it is hull's own network namespace", command.as_str(), self.netns.display()))
    }

    /// The spec's rules for the identifiers, checked before any plugin runs.
    fn validate(&self) -> Result<()> {
        let id_ok = !self.container_id.is_empty()
            && self.container_id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            && self.container_id.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !id_ok {
            return Err(bad_request(format!(
                "container id {:?}: must start with a letter or digit and hold only letters, digits, '_', '.', '-'",
                self.container_id
            )));
        }
        let ifname_ok = !self.ifname.is_empty()
            && self.ifname.len() <= 15
            && self.ifname != "."
            && self.ifname != ".."
            && !self.ifname.contains(|c: char| c == '/' || c == ':' || c.is_whitespace());
        if !ifname_ok {
            return Err(bad_request(format!("interface name {:?} is not valid", self.ifname)));
        }
        if !self.netns.is_absolute() {
            return Err(bad_request(format!("netns path {} must be absolute", self.netns.display())));
        }
        Ok(())
    }
}

fn bad_request(msg: String) -> NetworkError {
    NetworkError::InvalidRequest(msg)
}

fn parse_result(plugin: &str, out: &[u8]) -> Result<Value> {
    let bad = |message: String| NetworkError::BadResult { plugin: plugin.into(), command: "ADD", message };
    if out.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("empty output".into()));
    }
    let v: Value = serde_json::from_slice(out).map_err(|e| bad(e.to_string()))?;
    if !v.is_object() {
        return Err(bad("not a JSON object".into()));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::config::{parse_config, CniOptions};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn port_mapping_specs() {
        let p: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(p, PortMapping { host_port: 8080, container_port: 80, protocol: "tcp".into(), host_ip: String::new() });
        let p: PortMapping = "127.0.0.1:5353:53/UDP".parse().unwrap();
        assert_eq!((p.host_ip.as_str(), p.host_port, p.container_port, p.protocol.as_str()), ("127.0.0.1", 5353, 53, "udp"));
        let p: PortMapping = "[::1]:8080:80/tcp".parse().unwrap();
        assert_eq!(p.host_ip, "::1");
        for bad in ["80", "0:80", "8080:80/icmp", "x:1:2", "70000:80", ""] {
            assert!(bad.parse::<PortMapping>().is_err(), "{bad}");
        }
        let v = serde_json::to_value("8080:80".parse::<PortMapping>().unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}));
    }

    fn config(dir: &Path) -> CniConfig {
        let list = parse_config(
            br#"{"cniVersion":"1.0.0","name":"net1","plugins":[
                {"type":"first","opt":1},
                {"type":"second","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
            Path::new("t.conflist"),
        )
        .unwrap();
        let opts = CniOptions { plugin_dirs: vec![dir.to_path_buf()], timeout: Duration::from_secs(10), ..Default::default() };
        CniConfig { list, source: "t.conflist".into(), plugin_dirs: opts.plugin_dirs, timeout: opts.timeout }
    }

    /// A fake plugin that logs "COMMAND TYPE" and its stdin into `log`,
    /// and prints a result naming itself for ADD.
    fn fake(dir: &Path, name: &str, log: &Path, fail_add: bool) {
        let add = if fail_add {
            r#"echo '{"code":7,"msg":"bad things"}'; exit 1"#.to_string()
        } else {
            format!(r#"echo '{{"cniVersion":"1.0.0","ips":[{{"address":"10.1.0.{}/24"}}]}}'"#, name.len())
        };
        let body = format!(
            "#!/bin/sh\nin=$(cat)\necho \"$CNI_COMMAND {name} $in\" >> {log}\nif [ \"$CNI_COMMAND\" = ADD ]; then {add}; fi\nexit 0\n",
            log = log.display()
        );
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn calls(log: &Path) -> Vec<(String, String, Value)> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut it = l.splitn(3, ' ');
                let (c, n, j) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
                (c.to_string(), n.to_string(), serde_json::from_str(j).unwrap())
            })
            .collect()
    }

    #[test]
    fn add_chains_results_and_del_runs_in_reverse() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        fake(dir.path(), "first", &log, false);
        fake(dir.path(), "second", &log, false);
        let ns = dir.path().join("ns");
        std::fs::write(&ns, "").unwrap();
        let mut a = config(dir.path()).attachment("c-1", &ns, "eth0");
        a.port_mappings = vec!["8080:80".parse().unwrap()];
        a.capability_args.insert("bandwidth".into(), serde_json::json!({"ingressRate": 1}));
        let r = a.add().unwrap();
        assert_eq!(r.pod_ips(), vec!["10.1.0.6".parse::<std::net::IpAddr>().unwrap()]);
        a.check().unwrap();
        // The record survives a round trip, and DEL from it works.
        let stored: Attachment = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(stored, a);
        stored.del().unwrap();

        let c = calls(&log);
        let order: Vec<String> = c.iter().map(|(c, n, _)| format!("{c} {n}")).collect();
        assert_eq!(order, ["ADD first", "ADD second", "CHECK first", "CHECK second", "DEL second", "DEL first"]);
        let (_, _, first_add) = &c[0];
        assert_eq!(first_add["name"], "net1");
        assert_eq!(first_add["cniVersion"], "1.0.0");
        assert_eq!(first_add["opt"], 1);
        assert!(first_add.get("prevResult").is_none() && first_add.get("runtimeConfig").is_none());
        let (_, _, second_add) = &c[1];
        assert_eq!(second_add["prevResult"]["ips"][0]["address"], "10.1.0.5/24");
        // Only declared and enabled capabilities are passed.
        assert_eq!(
            second_add["runtimeConfig"],
            serde_json::json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
        );
        for (_, _, del) in &c[4..] {
            assert_eq!(del["prevResult"]["ips"][0]["address"], "10.1.0.6/24");
        }
    }

    #[test]
    fn failed_add_rolls_back_and_keeps_the_plugin_message() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        fake(dir.path(), "first", &log, false);
        fake(dir.path(), "second", &log, true);
        let ns = dir.path().join("ns");
        std::fs::write(&ns, "").unwrap();
        let mut a = config(dir.path()).attachment("c-2", &ns, "eth0");
        let e = a.add().unwrap_err();
        assert!(e.to_string().contains("bad things"), "{e}");
        assert!(a.result.is_none());
        let order: Vec<String> = calls(&log).iter().map(|(c, n, _)| format!("{c} {n}")).collect();
        assert_eq!(order, ["ADD first", "ADD second", "DEL second", "DEL first"]);
        assert!(a.check().is_err(), "CHECK without a result");
    }

    #[test]
    fn a_hanging_plugin_times_out_and_add_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        fake(dir.path(), "first", &log, false);
        let p = dir.path().join("second");
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\ncat >/dev/null\necho \"$CNI_COMMAND second {{}}\" >> {}\n[ \"$CNI_COMMAND\" = ADD ] && exec sleep 30\nexit 0\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ns = dir.path().join("ns");
        std::fs::write(&ns, "").unwrap();
        let mut c = config(dir.path());
        c.timeout = Duration::from_millis(500);
        let mut a = c.attachment("c-4", &ns, "eth0");
        let t = std::time::Instant::now();
        let e = a.add().unwrap_err();
        assert!(matches!(e, NetworkError::PluginTimeout { .. }), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let order: Vec<String> = calls(&log).iter().map(|(c, n, _)| format!("{c} {n}")).collect();
        assert_eq!(order, ["ADD first", "ADD second", "DEL second", "DEL first"]);
    }

    #[test]
    fn never_in_hulls_own_netns() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        for name in ["first", "second"] {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\ncat >/dev/null\necho \"$CNI_COMMAND [$CNI_NETNS]\" >> {}\n", seen.display())).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut a = config(dir.path()).attachment("c-3", Path::new("/proc/self/ns/net"), "eth0");
        let e = a.add().unwrap_err().to_string();
        assert!(e.contains("own network namespace"), "{e}");
        assert!(a.check().is_err());
        a.del().unwrap();
        assert_eq!(std::fs::read_to_string(&seen).unwrap(), "DEL []\nDEL []\n");
    }

    #[test]
    fn invalid_identifiers_are_refused_before_any_plugin_runs() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        for (id, ns, ifname) in
            [("", "/ns", "eth0"), ("a/b", "/ns", "eth0"), ("c", "rel/ns", "eth0"), ("c", "/ns", "a:b"), ("c", "/ns", "0123456789abcdef")]
        {
            let mut a = c.attachment(id, Path::new(ns), ifname);
            assert!(matches!(a.add(), Err(NetworkError::InvalidRequest(_))), "{id} {ns} {ifname}");
        }
        let mut a = c.attachment("c", Path::new("/nonexistent/ns"), "eth0");
        let e = a.add().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ns") && e.contains("does not exist"), "{e}");
        assert!(matches!(a.check(), Err(NetworkError::InvalidRequest(_))));
    }
}
