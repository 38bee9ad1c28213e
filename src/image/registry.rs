//! Pulling from a registry (OCI distribution spec / Docker Registry HTTP
//! API v2): manifests (index → this host's manifest), blobs streamed into
//! the store with digest and size verified, layers fetched in parallel.
//!
//! A small client on `ureq` (blocking, rustls) rather than `oci-client`:
//! oci-client needs reqwest and a tokio runtime, and hull keeps its
//! processes single-threaded and runtime-free (the container create path
//! forks); blocking requests on a few scoped threads give parallel layer
//! downloads without an async runtime anywhere in the binary.
//!
//! Hosts: mirrors from a containerd-style hosts.toml first, then the
//! registry itself (see `hosts`).
//!
//! Auth: anonymous first; on 401 the `WWW-Authenticate` challenge is
//! answered: `Basic` with the user's credentials, `Bearer` by fetching a
//! token from the realm (with the credentials, if any, as Basic auth).
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;

use super::digest::Digest;
use super::error::{ImageError, Result};
use super::hosts::{hosts_for, Host};
use super::ingest::{self, BlobSource, IngestReport, Progress};
use super::manifest::{self, Descriptor, Index, Platform};
use super::reference::Reference;
use super::store::{Expect, ImageRecord, Store};

use super::ingest::MAX_MANIFEST;
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// Talk plain HTTP to these registries (host[:port]); loopback
    /// registries (localhost, 127.0.0.0/8, ::1) always use plain HTTP, as
    /// Docker treats them as insecure registries.
    pub insecure: Vec<String>,
    /// User name and password for Basic auth or for the token realm.
    pub credentials: Option<(String, String)>,
    /// An OAuth2 refresh token (CRI `identity_token`, Docker's identity
    /// token) exchanged at the token realm for an access token.
    pub identity_token: Option<String>,
    /// A bearer token sent to the registry as it is (CRI `registry_token`).
    pub registry_token: Option<String>,
    /// Platform to select from an index (default: this host's).
    pub platform: Option<Platform>,
    /// containerd-style `<registry>/hosts.toml` directory (mirrors, TLS).
    pub hosts_dir: Option<std::path::PathBuf>,
}

pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    };
    host == "localhost" || host == "[::1]" || host.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

pub struct Client {
    reference: Reference,
    /// Mirrors first, the upstream last (see `hosts`).
    hosts: Vec<HostState>,
    credentials: Option<(String, String)>,
    identity_token: Option<String>,
    registry_token: Option<String>,
}

struct HostState {
    host: Host,
    /// With the host's TLS settings (hosts.toml `ca`, `client`, `skip_verify`).
    agent: ureq::Agent,
    /// `<api>/<repository>`
    base: String,
    /// The Authorization header value once this host's challenge was answered.
    auth: Mutex<Option<String>>,
}

/// A parsed `WWW-Authenticate` header: scheme and parameters.
fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, after)) = s.split_once('=') else { break };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_string(), &q[end + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].trim().to_string(), &after[end..]),
                None => (after.trim().to_string(), ""),
            }
        };
        params.push((k, v));
        s = next.trim_start_matches([',', ' ']);
    }
    (scheme.to_ascii_lowercase(), params)
}

fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub fn new(reference: &Reference, opts: &PullOptions) -> Result<Client> {
        let agent = |host: &Host| -> Result<ureq::Agent> {
            let mut b = ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(15))
                .timeout_read(Duration::from_secs(60))
                .user_agent(concat!("hull/", env!("CARGO_PKG_VERSION")));
            if let Some(config) = host.tls.client_config(&host.api)? {
                b = b.tls_config(config);
            }
            Ok(b.build())
        };
        let hosts = hosts_for(opts.hosts_dir.as_deref(), reference, &opts.insecure)?
            .into_iter()
            .map(|host| {
                Ok(HostState { base: format!("{}/{}", host.api, reference.repository), agent: agent(&host)?, host, auth: Mutex::new(None) })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Client {
            reference: reference.clone(),
            hosts,
            credentials: opts.credentials.clone(),
            identity_token: opts.identity_token.clone(),
            registry_token: opts.registry_token.clone(),
        })
    }

    fn err(&self, what: impl Into<String>) -> ImageError {
        ImageError::Registry { reference: self.reference.to_string(), what: what.into() }
    }

    /// GET `path` under the repository from the first host that has it
    /// (mirrors, then the upstream); `resolve`: a lookup by tag, which only
    /// hosts with that capability answer.
    fn get(&self, path: &str, accept: Option<&str>, what: &str, resolve: bool, from: u64) -> Result<ureq::Response> {
        let hosts: Vec<&HostState> = self.hosts.iter().filter(|h| if resolve { h.host.resolve } else { h.host.pull }).collect();
        let mut last = None;
        for (i, h) in hosts.iter().enumerate() {
            match self.get_from(h, path, accept, what, from) {
                Ok(resp) => return Ok(resp),
                Err(e) if i + 1 < hosts.len() => log::info!("{}: {e}; trying the next host", h.host.api),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| self.err(format!("{what}: no host to ask"))))
    }

    /// GET from one host, answering one auth challenge.
    fn get_from(&self, h: &HostState, path: &str, accept: Option<&str>, what: &str, from: u64) -> Result<ureq::Response> {
        let url = format!("{}/{path}", h.base);
        let mut challenged = false;
        loop {
            let mut req = h.agent.get(&url);
            if let Some(a) = accept {
                req = req.set("Accept", a);
            }
            if from > 0 {
                req = req.set("Range", &format!("bytes={from}-"));
            }
            if let Some(auth) = h.auth.lock().ok().and_then(|a| a.clone()) {
                req = req.set("Authorization", &auth);
            }
            match req.call() {
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) if !challenged => {
                    challenged = true;
                    let challenge = resp.header("www-authenticate").unwrap_or("").to_string();
                    self.authenticate(h, &challenge)?;
                }
                Err(ureq::Error::Status(401 | 403, resp)) => {
                    return Err(ImageError::Unauthorized {
                        reference: self.reference.to_string(),
                        what: format!("{what}: HTTP {} {}", resp.status(), body_hint(resp)),
                    })
                }
                Err(ureq::Error::Status(404, _)) => return Err(self.err(format!("{what}: not found"))),
                Err(ureq::Error::Status(code, resp)) => return Err(self.err(format!("{what}: HTTP {code} {}", body_hint(resp)))),
                Err(ureq::Error::Transport(t)) => return Err(self.err(format!("{what}: {t}"))),
            }
        }
    }

    fn authenticate(&self, h: &HostState, challenge: &str) -> Result<()> {
        let (scheme, params) = parse_challenge(challenge);
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let basic = self
            .credentials
            .as_ref()
            .map(|(u, p)| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))));
        let header = match scheme.as_str() {
            "basic" => basic.ok_or_else(|| ImageError::Unauthorized {
                reference: self.reference.to_string(),
                what: "the registry wants credentials (--user)".into(),
            })?,
            "bearer" if self.registry_token.is_some() => format!("Bearer {}", self.registry_token.as_deref().unwrap_or_default()),
            "bearer" => {
                let realm = param("realm").ok_or_else(|| self.err("Bearer challenge without realm"))?;
                let scope = param("scope").unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
                let service = param("service");
                let resp = if let Some(refresh) = &self.identity_token {
                    // OAuth2 refresh-token grant (the distribution token spec's POST form).
                    let mut form = vec![
                        ("grant_type", "refresh_token"),
                        ("refresh_token", refresh.as_str()),
                        ("scope", scope.as_str()),
                        ("client_id", "hull"),
                    ];
                    if let Some(s) = &service {
                        form.push(("service", s.as_str()));
                    }
                    h.agent.post(&realm).send_form(&form)
                } else {
                    let mut url = format!("{realm}{}scope={}", if realm.contains('?') { '&' } else { '?' }, query_escape(&scope));
                    if let Some(service) = &service {
                        url.push_str(&format!("&service={}", query_escape(service)));
                    }
                    let mut req = h.agent.get(&url);
                    if let Some(b) = &basic {
                        req = req.set("Authorization", b);
                    }
                    req.call()
                };
                let resp = resp.map_err(|e| match e {
                    ureq::Error::Status(401 | 403, _) => ImageError::Unauthorized {
                        reference: self.reference.to_string(),
                        what: "the token server refused the credentials".into(),
                    },
                    other => self.err(format!("token from {realm}: {other}")),
                })?;
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let mut body = String::new();
                resp.into_reader()
                    .take(1 << 20)
                    .read_to_string(&mut body)
                    .map_err(|e| self.err(format!("token: {e}")))?;
                let t: Token = manifest::parse("token response", body.as_bytes())?;
                let token = t.token.or(t.access_token).ok_or_else(|| self.err("token response without a token"))?;
                format!("Bearer {token}")
            }
            _ => {
                return Err(ImageError::Unauthorized {
                    reference: self.reference.to_string(),
                    what: format!("unsupported auth challenge {challenge:?}"),
                })
            }
        };
        if let Ok(mut a) = h.auth.lock() {
            *a = Some(header);
        }
        Ok(())
    }

    /// A manifest or index by tag or digest: (bytes, media type, digest),
    /// the digest checked against the one asked for.
    pub fn manifest(&self, object: &str) -> Result<(Vec<u8>, String, Digest)> {
        let by_tag = !object.starts_with("sha256:");
        let resp = self.get(&format!("manifests/{object}"), Some(ACCEPT), &format!("manifest {object}"), by_tag, 0)?;
        let header_type = resp.content_type().to_string();
        let header_digest = resp.header("docker-content-digest").map(str::to_string);
        let mut data = Vec::new();
        resp.into_reader()
            .take(MAX_MANIFEST + 1)
            .read_to_end(&mut data)
            .map_err(|e| self.err(format!("manifest {object}: {e}")))?;
        if data.len() as u64 > MAX_MANIFEST {
            return Err(self.err(format!("manifest {object}: larger than {MAX_MANIFEST} bytes")));
        }
        let digest = Digest::of(&data);
        let expected = if object.starts_with("sha256:") { Some(object.to_string()) } else { header_digest };
        if let Some(want) = expected {
            if want != digest.as_str() {
                return Err(ImageError::DigestMismatch {
                    what: format!("{}: manifest {object}", self.reference),
                    expected: want,
                    actual: digest.to_string(),
                });
            }
        }
        let media_type = manifest::sniff_media_type(&data).unwrap_or(header_type);
        Ok((data, media_type, digest))
    }
}

fn body_hint(resp: ureq::Response) -> String {
    let mut s = String::new();
    let _ = resp.into_reader().take(300).read_to_string(&mut s);
    s.trim().to_string()
}

impl BlobSource for Client {
    fn open(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        self.open_at(desc, 0).map(|(r, _)| r)
    }

    /// Resume with a Range request; a registry that ignores it answers 200
    /// with the whole blob, and the caller starts over.
    fn open_at(&self, desc: &Descriptor, offset: u64) -> Result<(Box<dyn Read + Send + '_>, u64)> {
        let resp = self.get(&format!("blobs/{}", desc.digest), None, &format!("blob {}", desc.digest), false, offset)?;
        let served = if resp.status() == 206 && resp.header("content-range").is_some_and(|r| r.starts_with(&format!("bytes {offset}-"))) {
            offset
        } else {
            0
        };
        Ok((resp.into_reader(), served))
    }
}

/// Pull `reference` into the store: the manifest for this host's platform,
/// config and layers (verified), snapshots, and the image record.
pub fn pull(store: &Store, reference: &Reference, opts: &PullOptions, progress: &dyn Progress) -> Result<(ImageRecord, IngestReport)> {
    let name = reference.to_string();
    let _gc = store.gc_guard(false)?;
    let client = Client::new(reference, opts)?;
    let (data, media_type, digest) = client.manifest(&reference.object())?;
    ingest::check_manifest_type(&name, &media_type)?;
    store.put_bytes(&data, Some(Expect { digest: &digest, size: None }), &format!("{name}: manifest"))?;
    let (manifest_digest, index) = if manifest::is_index(&media_type) {
        let idx: Index = manifest::parse(&format!("{name}: index"), &data)?;
        let platform = opts.platform.clone().unwrap_or_else(Platform::host);
        let chosen = idx
            .select(&platform)
            .ok_or_else(|| ImageError::NoPlatform { reference: name.clone(), platform: platform.to_string() })?;
        let (mdata, mtype, mdigest) = client.manifest(chosen.digest.as_str())?;
        if !manifest::is_manifest(&mtype) {
            return Err(client.err(format!("{}: expected an image manifest, got {mtype}", chosen.digest)));
        }
        store.put_bytes(&mdata, Some(Expect { digest: &mdigest, size: Some(chosen.size) }), &format!("{name}: manifest"))?;
        (mdigest, Some(digest))
    } else {
        (digest, None)
    };
    ingest::complete(store, &client, &name, &manifest_digest, index, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p[0], ("realm".into(), "https://auth.docker.io/token".into()));
        assert_eq!(p[1], ("service".into(), "registry.docker.io".into()));
        assert_eq!(p[2], ("scope".into(), "repository:library/busybox:pull".into()));
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((s.as_str(), p.len()), ("basic", 1));
        assert_eq!(query_escape("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }

    #[test]
    fn loopback_is_plain_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("docker.io"));
        assert!(!is_loopback("127.example.com"));
    }
}
