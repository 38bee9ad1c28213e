//! `hull image pull` against a real registry on 127.0.0.1 (Debian's
//! docker-registry, images pushed with skopeo from the fixture layout), and
//! against a small in-test registry for the Bearer-token and Basic flows.
mod common;
mod image_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use image_common::*;

#[test]
fn pull_multi_layer_and_multi_platform() {
    if !require_root() || !skopeo_present() {
        return;
    }
    let Some(reg) = Registry::start() else { return };
    reg.push("hull-test:latest", "test/busybox:latest", false);
    reg.push("hull-test:multi", "test/multi:v1", true);
    let im = Images::new();
    let out = im.ok(&["pull", "--quiet", &format!("{}/test/busybox", reg.host())]);
    assert!(out.contains("3 layers unpacked"), "{out}");
    let fx = fixture_digests();
    let name = format!("{}/test/busybox:latest", reg.host());
    let info = im.inspect(&name);
    assert_eq!(info["manifest_digest"], fx["manifest"]);
    let snaps: Vec<PathBuf> = info["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| PathBuf::from(s["path"].as_str().unwrap()))
        .collect();
    assert!(snaps[0].join("bin/busybox").is_file());
    assert_eq!(std::fs::read_to_string(snaps[2].join("etc/hull-release")).unwrap(), "layer3\n");
    assert_eq!(std::fs::read_to_string(snaps[2].join("opt/data/c")).unwrap(), "c\n");

    // The index gives the host's manifest; nothing is fetched or unpacked twice.
    let out = im.ok(&["pull", "--quiet", &format!("{}/test/multi:v1", reg.host())]);
    assert!(out.contains("0 layers unpacked, 3 reused"), "{out}");
    let multi = im.inspect(&format!("{}/test/multi:v1", reg.host()));
    assert_eq!(multi["manifest_digest"], fx["manifest"]);
    assert_eq!(multi["index_digest"], fx["index"]);

    // By digest.
    let by_digest = format!("{}/test/multi@{}", reg.host(), fx["other_manifest"].as_str().unwrap());
    let o = im.hull(&["pull", "--quiet", &by_digest]);
    assert_ok(&o);

    // Errors name the reference and what failed.
    let o = im.hull(&["pull", "--quiet", &format!("{}/test/nope:v1", reg.host())]);
    assert_fails_mentioning(&o, &["test/nope:v1: manifest v1: not found"]);
    let o = im.hull(&["pull", "--quiet", "--platform", "linux/s390x", &format!("{}/test/multi:v1", reg.host())]);
    assert_fails_mentioning(&o, &["no manifest for platform linux/s390x"]);
    // Nothing listening.
    let o = im.hull(&["pull", "--quiet", &format!("127.0.0.1:{}/x/y", free_port())]);
    assert_fails_mentioning(&o, &["x/y:latest"]);
}

#[test]
fn blob_with_wrong_digest_is_refused() {
    if !require_root() || !skopeo_present() {
        return;
    }
    let Some(reg) = Registry::start() else { return };
    reg.push("hull-test:latest", "test/bad:latest", false);
    let fx = fixture_digests();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(image_layout().join("blobs/sha256").join(&fx["manifest"].as_str().unwrap()[7..])).unwrap())
            .unwrap();
    // Corrupt layer 2 in the registry's storage (same size, other bytes).
    let layer = manifest["layers"][1]["digest"].as_str().unwrap().to_string();
    let data = reg.blob_data(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let im = Images::new();
    let o = im.hull(&["pull", "--quiet", &format!("{}/test/bad", reg.host())]);
    assert_fails_mentioning(&o, &["digest mismatch"]);
    assert!(s(&o.stderr).contains("test/bad:latest") && s(&o.stderr).contains(&layer), "{}", show(&o));
    let store = im.root();
    assert!(!store.join("blobs/sha256").join(&layer[7..]).exists(), "corrupt blob stored");
    assert_eq!(std::fs::read_dir(store.join("ingest")).unwrap().count(), 0, "temp files left");
    assert_eq!(im.ok(&["ls", "-q"]).trim(), "", "image recorded");
}

/// A minimal registry serving the fixture layout as `test/img`, behind a
/// Bearer token (from its /token, for alice:secret) or Basic auth.
struct FakeRegistry {
    port: u16,
    /// Range headers received, as "digest bytes=N-".
    ranges: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn respond(mut s: &TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
}

#[derive(Clone, Copy, PartialEq)]
enum Fake {
    Bearer,
    Basic,
    /// No auth; blobs over 4 KiB are cut off half-way (a dropped connection).
    Truncating,
}

impl FakeRegistry {
    fn start(mode: Fake) -> FakeRegistry {
        let basic = mode == Fake::Basic;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let ranges = Arc::new(std::sync::Mutex::new(Vec::new()));
        let ranges2 = ranges.clone();
        let layout = image_layout();
        let fx = fixture_digests();
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                let (conn, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut r = BufReader::new(&conn);
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut auth = String::new();
                let mut range = None;
                for _ in 0..100 {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("authorization") {
                            auth = v.trim().to_string();
                        }
                        if k.eq_ignore_ascii_case("range") {
                            range = v
                                .trim()
                                .strip_prefix("bytes=")
                                .and_then(|v| v.strip_suffix('-'))
                                .and_then(|n| n.parse::<usize>().ok());
                        }
                    }
                }
                let alice = format!("Basic {}", b64("alice:secret"));
                if path.starts_with("/token") {
                    if auth == alice && path.contains("scope=repository%3Atest%2Fimg%3Apull") {
                        respond(&conn, "200 OK", &[], br#"{"token":"good-token"}"#);
                    } else {
                        respond(&conn, "401 Unauthorized", &[], b"{}");
                    }
                    continue;
                }
                let ok = match mode {
                    Fake::Basic => auth == alice,
                    Fake::Bearer => auth == "Bearer good-token",
                    Fake::Truncating => true,
                };
                if !ok {
                    let challenge = if basic {
                        r#"Basic realm="fake""#.to_string()
                    } else {
                        format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake",scope="repository:test/img:pull""#)
                    };
                    respond(&conn, "401 Unauthorized", &[("WWW-Authenticate", challenge)], b"{}");
                    continue;
                }
                let digest = if path == "/v2/test/img/manifests/latest" {
                    fx["manifest"].as_str().unwrap().to_string()
                } else if let Some(d) = path.strip_prefix("/v2/test/img/blobs/").or(path.strip_prefix("/v2/test/img/manifests/")) {
                    d.to_string()
                } else {
                    String::new()
                };
                match std::fs::read(layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))) {
                    Ok(body) if mode == Fake::Truncating && path.contains("/blobs/") && body.len() > 4096 => {
                        let mut head =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
                        head.extend_from_slice(&body[..body.len() / 2]);
                        let _ = (&conn).write_all(&head);
                        let _ = conn.shutdown(std::net::Shutdown::Both);
                    }
                    Ok(body) if digest.starts_with("sha256:") && path.contains("/blobs/") && range.is_some_and(|n| n < body.len()) => {
                        let from = range.unwrap();
                        ranges2.lock().unwrap().push(format!("{digest} bytes={from}-"));
                        let cr = format!("bytes {from}-{}/{}", body.len() - 1, body.len());
                        respond(&conn, "206 Partial Content", &[("Content-Range", cr)], &body[from..])
                    }
                    Ok(body) if digest.starts_with("sha256:") => {
                        let ct = if path.contains("/manifests/") {
                            "application/vnd.oci.image.manifest.v1+json"
                        } else {
                            "application/octet-stream"
                        };
                        respond(&conn, "200 OK", &[("Content-Type", ct.to_string()), ("Docker-Content-Digest", digest.clone())], &body)
                    }
                    _ => respond(&conn, "404 Not Found", &[], b"{}"),
                }
                let mut rest = Vec::new();
                let _ = r.read_to_end(&mut rest);
            }
        });
        FakeRegistry { port, ranges, stop, thread: Some(thread) }
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn b64(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn bearer_token_and_basic_auth() {
    if !require_root() {
        return;
    }
    for basic in [false, true] {
        let reg = FakeRegistry::start(if basic { Fake::Basic } else { Fake::Bearer });
        let name = format!("127.0.0.1:{}/test/img", reg.port);
        let im = Images::new();
        let o = im.hull(&["pull", "--quiet", &name]);
        assert_fails_mentioning(&o, &["unauthorized"]);
        assert!(s(&o.stderr).contains("test/img:latest"), "{}", show(&o));
        let o = im.hull(&["pull", "--quiet", "--user", "alice:wrong", &name]);
        assert_fails_mentioning(&o, &["unauthorized"]);
        let out = im.ok(&["pull", "--quiet", "--user", "alice:secret", &name]);
        assert!(out.contains("3 layers unpacked"), "basic={basic}: {out}");
    }
}

#[test]
fn docker_schema2_manifest_and_list() {
    if !require_root() || !skopeo_present() {
        return;
    }
    let Some(reg) = Registry::start() else { return };
    // skopeo converts the all-gzip variant to Docker schema2 (same config
    // and diff ids, hence the same image id and snapshots).
    let push = |src: &str, dest: &str, all: bool| {
        let mut cmd = std::process::Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false", "--format", "v2s2"]);
        if all {
            cmd.arg("--all");
        }
        cmd.arg(format!("oci:{}:{src}", image_layout().display()))
            .arg(format!("docker://{}/{dest}", reg.host()));
        let o = run_cmd(&mut cmd, Duration::from_secs(120));
        assert_ok(&o);
    };
    push("hull-test:gzip", "docker/img:v1", false);
    push("hull-test:multi-gzip", "docker/list:v1", true);
    let im = Images::new();
    im.ok(&["pull", "--quiet", &format!("{}/docker/img:v1", reg.host())]);
    let info = im.inspect(&format!("{}/docker/img:v1", reg.host()));
    assert_eq!(info["manifest"]["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(info["id"], fixture_digests()["config"], "same config");
    let out = im.ok(&["pull", "--quiet", &format!("{}/docker/list:v1", reg.host())]);
    assert!(out.contains("3 reused"), "{out}");
    let list = im.inspect(&format!("{}/docker/list:v1", reg.host()));
    assert!(list["index_digest"].is_string());
    assert_eq!(list["id"], fixture_digests()["config"]);
}

#[test]
fn concurrent_pulls_of_one_image() {
    if !require_root() || !skopeo_present() {
        return;
    }
    let Some(reg) = Registry::start() else { return };
    reg.push("hull-test:latest", "test/conc:latest", false);
    let im = Images::new();
    let name = format!("{}/test/conc:latest", reg.host());
    let outs: Vec<std::process::Output> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3).map(|_| sc.spawn(|| im.hull(&["pull", "--quiet", &name]))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut unpacked = 0;
    for o in &outs {
        assert_ok(o);
        let out = s(&o.stdout);
        let n: usize = out.split(" layers unpacked").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
        unpacked += n;
    }
    assert_eq!(unpacked, 3, "each layer unpacked once across the pulls");
    assert_eq!(im.count("snapshots"), 3);
    assert_eq!(im.count("ingest"), 0, "temp or lock files left");
}

/// An OCI layout holding one image whose single layer is `layer` (a tar).
fn layout_with_layer(dir: &std::path::Path, layer: &[u8]) {
    use sha2::Digest as _;
    let hex = |b: &[u8]| format!("{:x}", sha2::Sha256::digest(b));
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(hex(layer)), layer).unwrap();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({"architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", hex(layer))]}})
    .to_string();
    std::fs::write(blobs.join(hex(config.as_bytes())), &config).unwrap();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", hex(config.as_bytes())), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{}", hex(layer)), "size": layer.len()}]})
    .to_string();
    std::fs::write(blobs.join(hex(manifest.as_bytes())), &manifest).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", hex(manifest.as_bytes())), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "evil:latest"}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

/// A tar entry with a raw name (the tar crate's builder refuses `..`).
fn raw_entry(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[test]
fn hostile_layers_are_refused_and_the_host_untouched() {
    if !require_root() || !skopeo_present() {
        return;
    }
    let Some(reg) = Registry::start() else { return };
    let host = tempfile::Builder::new().prefix("hull-host-").tempdir().unwrap();
    std::fs::write(host.path().join("secret"), "host data").unwrap();
    let hp = host.path().display().to_string();
    type Build<'a> = Box<dyn Fn(&mut tar::Builder<Vec<u8>>) + 'a>;
    let cases: Vec<(&str, Build)> = vec![
        ("dotdot", Box::new(|b| raw_entry(b, &format!("../../../../../../..{hp}/pwned"), tar::EntryType::Regular, None, b"x"))),
        ("absolute", Box::new(|b| raw_entry(b, &format!("{hp}/pwned"), tar::EntryType::Regular, None, b"x"))),
        (
            "symlink",
            Box::new(|b| {
                raw_entry(b, "escape", tar::EntryType::Symlink, Some(&hp), b"");
                raw_entry(b, "escape/pwned", tar::EntryType::Regular, None, b"x");
            }),
        ),
        ("hardlink", Box::new(|b| raw_entry(b, "stolen", tar::EntryType::Link, Some(&format!("../../../../../..{hp}/secret")), b""))),
    ];
    for (name, build) in cases {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let layer = b.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        layout_with_layer(dir.path(), &layer);
        let o = run_cmd(
            std::process::Command::new("skopeo")
                .args(["copy", "--quiet", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:evil:latest", dir.path().display()))
                .arg(format!("docker://{}/evil/{name}:latest", reg.host())),
            Duration::from_secs(60),
        );
        assert_ok(&o);
        let im = Images::new();
        let o = im.hull(&["pull", "--quiet", &format!("{}/evil/{name}", reg.host())]);
        assert_fails_mentioning(&o, &["refused entry"]);
        assert!(s(&o.stderr).contains(&format!("evil/{name}:latest")), "{name}: {}", show(&o));
        let left: Vec<_> = std::fs::read_dir(host.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("secret")], "{name}: host dir changed");
        assert_eq!(std::fs::read_to_string(host.path().join("secret")).unwrap(), "host data");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(host.path().join("secret")).unwrap().nlink(), 1, "{name}");
        assert_eq!(im.count("snapshots"), 0, "{name}: a snapshot was kept");
        assert_eq!(im.ok(&["ls", "-q"]).trim(), "", "{name}: image recorded");
    }
}

#[test]
fn mirrors_from_hosts_toml() {
    if !require_root() || !skopeo_present() {
        return;
    }
    let Some(reg) = Registry::start() else { return };
    reg.push("hull-test:latest", "library/mirrored:v1", false);
    let im = Images::new();
    let hosts = im.dir.path().join("certs.d");
    std::fs::create_dir_all(hosts.join("docker.io")).unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let write = |caps: &str| {
        std::fs::write(
            hosts.join("docker.io/hosts.toml"),
            format!("server = \"{dead}\"\n[host.\"http://{}\"]\n  capabilities = [{caps}]\n", reg.host()),
        )
        .unwrap();
    };
    let pull = |r: &str| im.hull(&["pull", "--quiet", "--hosts-dir", hosts.to_str().unwrap(), r]);
    // Docker Hub names, served by the mirror (the upstream is unreachable).
    write("\"pull\", \"resolve\"");
    let o = pull("mirrored:v1");
    assert_ok(&o);
    assert!(s(&o.stdout).contains("docker.io/library/mirrored:v1"), "{}", show(&o));
    // A pull-only mirror is not asked for tags; by digest it is.
    write("\"pull\"");
    let o = pull("mirrored:v2");
    assert_fails_mentioning(&o, &["docker.io/library/mirrored:v2"]);
    let digest = fixture_digests()["manifest"].as_str().unwrap().to_string();
    let o = pull(&format!("mirrored@{digest}"));
    assert_ok(&o);
    // TLS settings are honoured (tests/registry_tls.rs): a missing CA file is an error naming it.
    std::fs::write(hosts.join("docker.io/hosts.toml"), "[host.\"https://m.example\"]\nca = \"/x.pem\"\n").unwrap();
    assert_fails_mentioning(&pull("mirrored:v1"), &["/x.pem"]);
}

#[test]
fn interrupted_pull_resumes() {
    if !require_root() {
        return;
    }
    let im = Images::new();
    let bad = FakeRegistry::start(Fake::Truncating);
    let o = im.hull(&["pull", "--quiet", &format!("127.0.0.1:{}/test/img", bad.port)]);
    assert_fails_mentioning(&o, &["test/img:latest"]);
    assert!(s(&o.stderr).contains("layer"), "{}", show(&o));
    // Nothing half-written in the store: only the received part, kept in
    // ingest/ to resume from; no snapshot, no record.
    let names: Vec<String> = std::fs::read_dir(im.root().join("ingest"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(".partial"), "{names:?}");
    let partial_len = std::fs::metadata(im.root().join("ingest").join(&names[0])).unwrap().len();
    assert!(partial_len > 0);
    assert!(!im.root().join("blobs/sha256").join(names[0].trim_end_matches(".partial")).exists());
    assert_eq!(im.count("snapshots"), 0);
    assert_eq!(im.ok(&["ls", "-q"]).trim(), "");
    let blobs_after_failure = im.count("blobs/sha256");
    drop(bad);
    // The same pull from a working registry completes, reusing what was whole.
    let good = FakeRegistry::start(Fake::Bearer);
    let out = im.ok(&["pull", "--quiet", "--user", "alice:secret", &format!("127.0.0.1:{}/test/img", good.port)]);
    assert!(out.contains("3 layers unpacked"), "{out}");
    // Only the cut-off base layer is fetched again, from where it broke off;
    // the config and the two small layers completed the first time.
    assert!(out.contains("1 blobs fetched") && out.contains("2 already present"), "{out}");
    assert_eq!(im.count("blobs/sha256"), blobs_after_failure + 1);
    let ranges = good.ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![format!("sha256:{} bytes={partial_len}-", names[0].trim_end_matches(".partial"))]);
    assert_eq!(im.count("ingest"), 0);
}
