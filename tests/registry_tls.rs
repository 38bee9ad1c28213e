//! Pulls over TLS with containerd-style hosts.toml settings: a registry with
//! its own CA that requires a client certificate (`ca`, `client`), and the
//! same with `skip_verify`.
mod common;
mod image_common;

use std::path::Path;

use common::*;
use image_common::*;

#[test]
fn hosts_toml_ca_client_and_skip_verify() {
    if !require_root() || !skopeo_present() {
        return;
    }
    if !Path::new("/usr/bin/openssl").exists() {
        eprintln!("skipped: openssl not installed");
        return;
    }
    // Push over plain HTTP, then serve the same storage over TLS with
    // client certificates required.
    let Some(plain) = Registry::start() else {
        return;
    };
    plain.push("hull-test:latest", "tls/img:v1", false);
    let certs = tempfile::tempdir().unwrap();
    common::certs::make_certs(certs.path());
    let c = certs.path().display();
    let tls = format!("  tls:\n    certificate: {c}/server.pem\n    key: {c}/server.key\n    clientcas:\n      - {c}/ca.pem\n");
    let Some(reg) = Registry::start_with(Some(&plain.dir.path().join("storage")), &tls) else {
        return;
    };
    let name = format!("{}/tls/img:v1", reg.host());

    let hosts = tempfile::tempdir().unwrap();
    let hd = hosts.path().join(reg.host());
    std::fs::create_dir_all(&hd).unwrap();
    // Paths relative to the hosts.toml's directory, as containerd takes them.
    for f in ["ca.pem", "client.pem", "client.key"] {
        std::fs::copy(certs.path().join(f), hd.join(f)).unwrap();
    }
    let server = format!("server = \"https://{}\"\n", reg.host());
    let im = Images::new();
    let pull = |toml: &str| {
        std::fs::write(hd.join("hosts.toml"), format!("{server}{toml}")).unwrap();
        im.hull(&["pull", "--quiet", "--hosts-dir", hosts.path().to_str().unwrap(), &name])
    };
    // The public roots do not know this CA.
    let o = pull("");
    assert_fails_mentioning(&o, &["tls/img:v1"]);
    assert!(s(&o.stderr).to_lowercase().contains("certificate"), "{}", show(&o));
    // The CA alone: the registry wants a client certificate.
    assert_fails(&pull("ca = \"ca.pem\"\n"));
    // CA and client pair.
    let out = s(&pull("ca = \"ca.pem\"\nclient = [[\"client.pem\", \"client.key\"]]\n").stdout);
    assert!(out.contains("3 layers unpacked"), "{out}");
    // skip_verify instead of the CA (on the [host] form this time).
    let im2 = Images::new();
    std::fs::write(
        hd.join("hosts.toml"),
        format!("[host.\"https://{}\"]\nskip_verify = true\nclient = [[\"client.pem\", \"client.key\"]]\n", reg.host()),
    )
    .unwrap();
    let o = im2.hull(&["pull", "--quiet", "--hosts-dir", hosts.path().to_str().unwrap(), &name]);
    assert_ok(&o);
    assert!(s(&o.stdout).contains("3 layers unpacked"), "{}", show(&o));
    // A bad CA file is an error naming it.
    std::fs::write(hd.join("bad.pem"), "not a certificate\n").unwrap();
    assert_fails_mentioning(&pull("ca = \"bad.pem\"\n"), &["bad.pem"]);
}
