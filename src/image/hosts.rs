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
//! A host URL's scheme says HTTP or HTTPS. TLS, per host or for the
//! server at the top level, as containerd reads it:
//!
//! ```toml
//! ca = "/etc/hull/certs.d/reg.example/ca.crt"   # or a list; relative to this file's dir
//! client = [["client.cert", "client.key"]]      # or "both-in-one.pem"
//! skip_verify = true                           # any server certificate
//! ```
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{ImageError, IoContext, Result};
use super::reference::Reference;
use super::registry::is_loopback;
use super::tls::Tls;

/// One host to try: the URL up to and including `/v2` (or the override).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub api: String,
    /// May be asked for manifests by tag (containerd's "resolve").
    pub resolve: bool,
    pub pull: bool,
    pub tls: Tls,
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

/// The `ca`, `client` and `skip_verify` of a host (or the server), paths
/// taken relative to the hosts file's directory.
fn tls_settings(what: &str, dir: &Path, skip: Option<bool>, ca: &Option<toml::Value>, client: &Option<toml::Value>) -> Result<Tls> {
    let bad = |field: &str, why: &str| ImageError::InvalidArgument(format!("{what}: {field}: {why}"));
    let path = |v: &toml::Value, field: &str| -> Result<PathBuf> {
        let s = v.as_str().ok_or_else(|| bad(field, "expected a path"))?;
        if s.is_empty() {
            return Err(bad(field, "empty path"));
        }
        Ok(dir.join(s))
    };
    let ca = match ca {
        None => Vec::new(),
        Some(toml::Value::Array(list)) => list.iter().map(|v| path(v, "ca")).collect::<Result<Vec<_>>>()?,
        Some(v) => vec![path(v, "ca")?],
    };
    // containerd's forms: "cert" (key in the same file), [["cert", "key"], ...], ["cert", ...].
    let mut pairs = Vec::new();
    match client {
        None => {}
        Some(toml::Value::Array(list)) => {
            for item in list {
                match item {
                    toml::Value::Array(p) if p.len() == 2 => pairs.push((path(&p[0], "client")?, path(&p[1], "client")?)),
                    toml::Value::Array(p) if p.len() == 1 => pairs.push((path(&p[0], "client")?, path(&p[0], "client")?)),
                    toml::Value::Array(_) => return Err(bad("client", "a pair is [cert, key]")),
                    v => pairs.push((path(v, "client")?, path(v, "client")?)),
                }
            }
        }
        Some(v) => pairs.push((path(v, "client")?, path(v, "client")?)),
    }
    if pairs.len() > 1 {
        return Err(bad("client", "only one certificate and key per host is supported"));
    }
    Ok(Tls { ca, client: pairs.pop(), skip_verify: skip.unwrap_or(false) })
}

/// The hosts for `reference`, mirrors first, the upstream last.
/// `insecure`: registries whose upstream is plain HTTP (loopback ones are).
pub fn hosts_for(dir: Option<&Path>, reference: &Reference, insecure: &[String]) -> Result<Vec<Host>> {
    let upstream_host = reference.api_host();
    let plain = is_loopback(upstream_host) || insecure.iter().any(|h| h == upstream_host || h == &reference.registry);
    let mut server = format!("{}://{upstream_host}", if plain { "http" } else { "https" });
    let mut server_tls = Tls::default();
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
        let base = path.parent().unwrap_or(Path::new("/"));
        server_tls = tls_settings(&what, base, f.skip_verify, &f.ca, &f.client)?;
        if let Some(s) = f.server {
            server = s;
        }
        for (url, v) in f.host {
            let e: HostEntry = v.try_into().map_err(|e| ImageError::InvalidArgument(format!("{what}: host {url:?}: {e}")))?;
            let tls = tls_settings(&format!("{what}: host {url:?}"), base, e.skip_verify, &e.ca, &e.client)?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ImageError::InvalidArgument(format!("{what}: host {url:?}: expected an http:// or https:// URL")));
            }
            let caps = e.capabilities.unwrap_or_else(|| vec!["pull".into(), "resolve".into(), "push".into()]);
            out.push(Host {
                api: api_url(&url, e.override_path),
                resolve: caps.iter().any(|c| c == "resolve"),
                pull: caps.iter().any(|c| c == "pull"),
                tls,
            });
        }
    }
    out.push(Host { api: api_url(&server, false), resolve: true, pull: true, tls: server_tls });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_hosts_toml() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            hosts_for(None, &r, &[]).unwrap(),
            vec![Host { api: "https://registry-1.docker.io/v2".into(), resolve: true, pull: true, tls: Tls::default() }]
        );
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
        assert_eq!(h[0], Host { api: "http://127.0.0.1:5000/v2".into(), resolve: true, pull: true, tls: Tls::default() });
        assert_eq!(h[1], Host { api: "https://a.example/path".into(), resolve: false, pull: true, tls: Tls::default() });
        assert_eq!(h[2].api, "https://registry-1.docker.io/v2");

        std::fs::create_dir_all(t.path().join("_default")).unwrap();
        std::fs::write(
            t.path().join("_default/hosts.toml"),
            "ca = \"ca.pem\"\n[host.\"https://m.example\"]\nskip_verify = true\nclient = [[\"/c/cert.pem\", \"key.pem\"]]\nca = [\"/a.pem\", \"b.pem\"]\n",
        )
        .unwrap();
        let h = hosts_for(Some(t.path()), &Reference::parse("quay.io/x").unwrap(), &[]).unwrap();
        let d = t.path().join("_default");
        assert_eq!(
            h[0].tls,
            Tls { ca: vec!["/a.pem".into(), d.join("b.pem")], client: Some(("/c/cert.pem".into(), d.join("key.pem"))), skip_verify: true }
        );
        assert_eq!(h[1].tls, Tls { ca: vec![d.join("ca.pem")], client: None, skip_verify: false });
        std::fs::write(t.path().join("_default/hosts.toml"), "client = [[\"a\", \"b\", \"c\"]]\n").unwrap();
        let err = hosts_for(Some(t.path()), &Reference::parse("quay.io/x").unwrap(), &[]).unwrap_err();
        assert!(err.to_string().contains("client"), "{err}");
    }
}
