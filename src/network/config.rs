//! CNI network configuration: where it is found and what it says.
//!
//! As libcni (and containerd) do, the config directory's files named
//! `*.conflist`, `*.conf` or `*.json` are sorted by name and the first one
//! that parses is used; a single-plugin `.conf` is wrapped into a list of
//! one. Plugins are looked up by their `type` in the plugin directories, in
//! order.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{NetworkError, Result};

pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
pub const DEFAULT_PLUGIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];
/// Time limit for one plugin invocation; the plugin is killed after it.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// cniVersions whose result format hull understands (0.3.0 introduced the
/// `interfaces`/`ips` result shape that 1.0 keeps).
const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Where to find network configs and plugins.
#[derive(Debug, Clone)]
pub struct CniOptions {
    pub conf_dir: PathBuf,
    pub plugin_dirs: Vec<PathBuf>,
    pub timeout: Duration,
}

impl Default for CniOptions {
    fn default() -> Self {
        CniOptions {
            conf_dir: PathBuf::from(DEFAULT_CONF_DIR),
            plugin_dirs: DEFAULT_PLUGIN_DIRS.iter().map(PathBuf::from).collect(),
            timeout: DEFAULT_PLUGIN_TIMEOUT,
        }
    }
}

/// A network config list (the `.conflist` format). Serialises back to the
/// same shape, so an [`super::Attachment`] records the exact config used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfigList {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "disableCheck", default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_check: bool,
    pub plugins: Vec<PluginConfig>,
    /// Other top-level keys, kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One plugin's config object. Everything but `type` and `capabilities` is
/// passed to the plugin untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginConfig {
    #[serde(rename = "type")]
    pub plugin_type: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capabilities: BTreeMap<String, bool>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// A loaded network config and the options to run its plugins with.
#[derive(Debug, Clone)]
pub struct CniConfig {
    pub list: NetworkConfigList,
    /// The file it came from (empty for built-in configs).
    pub source: PathBuf,
    pub plugin_dirs: Vec<PathBuf>,
    pub timeout: Duration,
}

impl CniConfig {
    /// Whether a plugin of this network takes port mappings (CNI's
    /// `portMappings` capability, which the portmap plugin declares).
    pub fn maps_ports(&self) -> bool {
        self.list.plugins.iter().any(|p| p.capabilities.get("portMappings") == Some(&true))
    }

    /// The first network config in `opts.conf_dir` (sorted by file name).
    /// A file that does not parse is an error naming it and the field, not
    /// skipped: a typo must not silently select another network.
    pub fn discover(opts: &CniOptions) -> Result<CniConfig> {
        let entries = std::fs::read_dir(&opts.conf_dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                NetworkError::NoConfig { dir: opts.conf_dir.clone() }
            } else {
                NetworkError::ConfigRead { path: opts.conf_dir.clone(), source: e }
            }
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("conflist" | "conf" | "json")) && p.is_file())
            .collect();
        files.sort();
        let first = files.into_iter().next().ok_or_else(|| NetworkError::NoConfig { dir: opts.conf_dir.clone() })?;
        Self::from_file(&first, opts)
    }

    /// Load one config file (`.conflist`, or a single plugin `.conf`).
    pub fn from_file(path: &Path, opts: &CniOptions) -> Result<CniConfig> {
        let text = std::fs::read(path).map_err(|e| NetworkError::ConfigRead { path: path.to_path_buf(), source: e })?;
        let list = parse_config(&text, path)?;
        Ok(CniConfig { list, source: path.to_path_buf(), plugin_dirs: opts.plugin_dirs.clone(), timeout: opts.timeout })
    }

    /// The built-in network that brings `lo` up with the loopback plugin.
    pub fn loopback(opts: &CniOptions) -> CniConfig {
        let list = NetworkConfigList {
            cni_version: "1.0.0".into(),
            name: "cni-loopback".into(),
            disable_check: false,
            plugins: vec![PluginConfig { plugin_type: "loopback".into(), capabilities: BTreeMap::new(), rest: Map::new() }],
            extra: Map::new(),
        };
        CniConfig { list, source: PathBuf::new(), plugin_dirs: opts.plugin_dirs.clone(), timeout: opts.timeout }
    }
}

/// Parse a `.conflist`, or a single plugin config (an object with `type`
/// and no `plugins`) wrapped into a list of one, as libcni does.
pub fn parse_config(text: &[u8], path: &Path) -> Result<NetworkConfigList> {
    let invalid =
        |field: &str, message: String| NetworkError::ConfigInvalid { path: path.to_path_buf(), field: field.to_string(), message };
    let value: Value = serde_json::from_slice(text).map_err(|e| invalid(".", e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(invalid(".", "expected a JSON object".into()));
    };
    if !obj.contains_key("plugins") && obj.contains_key("type") {
        // A single plugin config: name and cniVersion belong to the list,
        // and stay in the plugin object too (they are overwritten there
        // when invoking anyway).
        let mut list = Map::new();
        for key in ["cniVersion", "name", "disableCheck"] {
            if let Some(v) = obj.get(key) {
                list.insert(key.to_string(), v.clone());
            }
        }
        obj.remove("disableCheck");
        list.insert("plugins".into(), Value::Array(vec![Value::Object(obj)]));
        obj = list;
    }
    let list: NetworkConfigList = serde_path_to_error::deserialize(Value::Object(obj)).map_err(|e| {
        let field = e.path().to_string();
        invalid(&field, e.into_inner().to_string())
    })?;
    validate(&list).map_err(|(field, message)| invalid(&field, message))?;
    Ok(list)
}

fn validate(list: &NetworkConfigList) -> std::result::Result<(), (String, String)> {
    if list.name.is_empty() {
        return Err(("name".into(), "must not be empty".into()));
    }
    if !SUPPORTED_VERSIONS.contains(&list.cni_version.as_str()) {
        return Err((
            "cniVersion".into(),
            format!("{:?} is not supported (supported: {})", list.cni_version, SUPPORTED_VERSIONS.join(", ")),
        ));
    }
    if list.plugins.is_empty() {
        return Err(("plugins".into(), "must list at least one plugin".into()));
    }
    for (i, p) in list.plugins.iter().enumerate() {
        // The type is a file name looked up in the plugin dirs: no paths.
        if p.plugin_type.is_empty() || p.plugin_type.contains('/') || p.plugin_type.starts_with('.') {
            return Err((format!("plugins[{i}].type"), format!("{:?} is not a plugin name", p.plugin_type)));
        }
    }
    Ok(())
}

/// True for cniVersions that have the CHECK command (0.4.0 and later).
pub(crate) fn supports_check(version: &str) -> bool {
    !matches!(version, "0.3.0" | "0.3.1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NetworkConfigList> {
        parse_config(text.as_bytes(), Path::new("/x/10-test.conflist"))
    }

    #[test]
    fn parses_a_conflist() {
        let l = parse(
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[
                {"type":"bridge","bridge":"b0","ipam":{"type":"host-local"}},
                {"type":"portmap","capabilities":{"portMappings":true},"snat":true}]}"#,
        )
        .unwrap();
        assert_eq!(l.name, "n");
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(l.plugins[0].plugin_type, "bridge");
        assert_eq!(l.plugins[0].rest["bridge"], "b0");
        assert_eq!(l.plugins[1].capabilities.get("portMappings"), Some(&true));
        assert_eq!(l.plugins[1].rest["snat"], true);
        // Round trip keeps everything.
        let back: NetworkConfigList = serde_json::from_value(serde_json::to_value(&l).unwrap()).unwrap();
        assert_eq!(back, l);
    }

    #[test]
    fn wraps_a_single_conf() {
        let l = parse(r#"{"cniVersion":"0.4.0","name":"one","type":"bridge","bridge":"b1"}"#).unwrap();
        assert_eq!(l.name, "one");
        assert_eq!(l.cni_version, "0.4.0");
        assert_eq!(l.plugins.len(), 1);
        assert_eq!(l.plugins[0].plugin_type, "bridge");
        assert_eq!(l.plugins[0].rest["bridge"], "b1");
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"bridge":"x"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/x/10-test.conflist") && e.contains("plugins[1]") && e.contains("type"), "{e}");
        let e = parse(r#"{"cniVersion":"1.0.0","name":7,"plugins":[]}"#).unwrap_err().to_string();
        assert!(e.contains("field name"), "{e}");
        let e = parse(r#"{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"bridge"}]}"#).unwrap_err().to_string();
        assert!(e.contains("field cniVersion") && e.contains("0.2.0"), "{e}");
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../bin/sh"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("plugins[0].type"), "{e}");
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#).unwrap_err().to_string();
        assert!(e.contains("field plugins"), "{e}");
        let e = parse("{not json").unwrap_err().to_string();
        assert!(e.contains("10-test.conflist") && e.contains("field ."), "{e}");
    }

    #[test]
    fn discovery_takes_the_first_file_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README"), "not a config").unwrap();
        std::fs::write(dir.path().join("20-b.conflist"), r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}"#).unwrap();
        std::fs::write(dir.path().join("10-a.conf"), r#"{"cniVersion":"1.0.0","name":"a","type":"ptp"}"#).unwrap();
        let opts = CniOptions { conf_dir: dir.path().to_path_buf(), ..Default::default() };
        let c = CniConfig::discover(&opts).unwrap();
        assert_eq!(c.list.name, "a");
        assert_eq!(c.source, dir.path().join("10-a.conf"));

        let empty = tempfile::tempdir().unwrap();
        let opts = CniOptions { conf_dir: empty.path().to_path_buf(), ..Default::default() };
        assert!(matches!(CniConfig::discover(&opts), Err(NetworkError::NoConfig { .. })));
        let opts = CniOptions { conf_dir: empty.path().join("missing"), ..Default::default() };
        assert!(matches!(CniConfig::discover(&opts), Err(NetworkError::NoConfig { .. })));
    }

    #[test]
    fn the_shipped_default_config_parses() {
        let l = parse_config(include_bytes!("../../examples/cni/10-hull.conflist"), Path::new("10-hull.conflist")).unwrap();
        assert_eq!((l.name.as_str(), l.cni_version.as_str()), ("hull", "1.0.0"));
        let types: Vec<&str> = l.plugins.iter().map(|p| p.plugin_type.as_str()).collect();
        assert_eq!(types, ["bridge", "portmap"]);
        assert_eq!(l.plugins[0].rest["bridge"], "hull0");
    }

    #[test]
    fn default_options() {
        let o = CniOptions::default();
        assert_eq!(o.conf_dir, Path::new("/etc/cni/net.d"));
        assert_eq!(o.plugin_dirs, vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")]);
        assert!(supports_check("1.0.0") && !supports_check("0.3.1"));
    }
}
