//! Which hosts to pull from for a registry, in containerd's `hosts.toml`
//! format (`DIR/<registry>/hosts.toml`, else `DIR/_default/hosts.toml`):
//!
//! ```toml
//! server = "https://registry-1.docker.io"     # the upstream (default as shown)
//! [host."http://127.0.0.1:5000"]               # mirrors, tried first, in file order
//!   capabilities = ["pull", "resolve"]         # resolve: may answer tag lookups
//!   override_path = false                      # true: the URL already has the API path
//! ```
//!
//! A host URL's scheme says HTTP or HTTPS. `skip_verify`, `ca` and `client`
//! (custom TLS) are not supported and refused rather than ignored.
use std::path::Path;

use serde::Deserialize;

use super::error::{ImageError, IoContext, Result};
use super::reference::Reference;
use super::registry::is_loopback;

/// One host to try: the URL up to and including `/v2` (or the override).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub api: String,
    /// May be asked for manifests by tag (containerd's "resolve").
    pub resolve: bool,
    pub pull: bool,
}

#[derive(Deserialize)]
struct HostEntry {
    capabilities: Option<Vec<String>>,
    #[serde(default)]
    override_path: bool,
    skip_verify: Option<bool>,
    ca: Option<toml::Value>,
    client: Option<toml::Value>,
}

#[derive(Deserialize)]
struct HostsFile {
    server: Option<String>,
    #[serde(default)]
    host: toml::map::Map<String, toml::Value>,
    skip_verify: Option<bool>,
    ca: Option<toml::Value>,
    client: Option<toml::Value>,
}

fn api_url(url: &str, override_path: bool) -> String {
    let u = url.trim_end_matches('/');
    if override_path || u.ends_with("/v2") {
        u.to_string()
    } else {
        format!("{u}/v2")
    }
}

fn tls_unsupported(what: &str, skip: Option<bool>, ca: &Option<toml::Value>, client: &Option<toml::Value>) -> Result<()> {
    if skip == Some(true) || ca.is_some() || client.is_some() {
        return Err(ImageError::Unsupported(format!(
            "{what}: skip_verify, ca and client (custom TLS) are not supported; use an http:// host or a publicly trusted certificate"
        )));
    }
    Ok(())
}

/// The hosts for `reference`, mirrors first, the upstream last.
/// `insecure`: registries whose upstream is plain HTTP (loopback ones are).
pub fn hosts_for(dir: Option<&Path>, reference: &Reference, insecure: &[String]) -> Result<Vec<Host>> {
    let upstream_host = reference.api_host();
    let plain = is_loopback(upstream_host) || insecure.iter().any(|h| h == upstream_host || h == &reference.registry);
    let mut server = format!("{}://{upstream_host}", if plain { "http" } else { "https" });
    let mut out = Vec::new();
    let file = dir.and_then(|d| {
        [reference.registry.as_str(), "_default"]
            .iter()
            .map(|n| d.join(n).join("hosts.toml"))
            .find(|p| p.is_file())
    });
    if let Some(path) = file {
        let what = path.display().to_string();
        let text = std::fs::read_to_string(&path).ctx(|| format!("read {what}"))?;
        let f: HostsFile = toml::from_str(&text).map_err(|e| ImageError::InvalidArgument(format!("{what}: {e}")))?;
        tls_unsupported(&what, f.skip_verify, &f.ca, &f.client)?;
        if let Some(s) = f.server {
            server = s;
        }
        for (url, v) in f.host {
            let e: HostEntry = v.try_into().map_err(|e| ImageError::InvalidArgument(format!("{what}: host {url:?}: {e}")))?;
            tls_unsupported(&format!("{what}: host {url:?}"), e.skip_verify, &e.ca, &e.client)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ImageError::InvalidArgument(format!("{what}: host {url:?}: expected an http:// or https:// URL")));
            }
            let caps = e.capabilities.unwrap_or_else(|| vec!["pull".into(), "resolve".into(), "push".into()]);
            out.push(Host {
                api: api_url(&url, e.override_path),
                resolve: caps.iter().any(|c| c == "resolve"),
                pull: caps.iter().any(|c| c == "pull"),
            });
        }
    }
    out.push(Host { api: api_url(&server, false), resolve: true, pull: true });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_hosts_toml() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(hosts_for(None, &r, &[]).unwrap(), vec![Host { api: "https://registry-1.docker.io/v2".into(), resolve: true, pull: true }]);
        let local = Reference::parse("127.0.0.1:5000/a").unwrap();
        assert_eq!(hosts_for(None, &local, &[]).unwrap()[0].api, "http://127.0.0.1:5000/v2");
        let other = Reference::parse("reg.example:5000/a").unwrap();
        assert_eq!(hosts_for(None, &other, &["reg.example:5000".into()]).unwrap()[0].api, "http://reg.example:5000/v2");

        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("docker.io")).unwrap();
        std::fs::write(
            t.path().join("docker.io/hosts.toml"),
            r#"server = "https://registry-1.docker.io"
[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
[host."https://a.example/path"]
  capabilities = ["pull"]
  override_path = true
"#,
        )
        .unwrap();
        let h = hosts_for(Some(t.path()), &r, &[]).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h[0], Host { api: "http://127.0.0.1:5000/v2".into(), resolve: true, pull: true });
        assert_eq!(h[1], Host { api: "https://a.example/path".into(), resolve: false, pull: true });
        assert_eq!(h[2].api, "https://registry-1.docker.io/v2");

        std::fs::create_dir_all(t.path().join("_default")).unwrap();
        std::fs::write(t.path().join("_default/hosts.toml"), "[host.\"https://m.example\"]\nskip_verify = true\n").unwrap();
        let err = hosts_for(Some(t.path()), &Reference::parse("quay.io/x").unwrap(), &[]).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }
}
