//! A test CA and certificates made with the openssl command line, for the
//! tests of TLS servers and clients.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{assert_ok, run_cmd};

/// Whether the openssl command is there (else the test says *skipped*).
pub fn have_openssl() -> bool {
    Path::new("/usr/bin/openssl").exists()
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = run_cmd(Command::new("openssl").current_dir(dir).args(args), Duration::from_secs(30));
    assert_ok(&o);
}

/// In `dir`: ca.pem/ca.key, a server certificate for 127.0.0.1
/// (server.pem/server.key) and a client one (client.pem/client.key).
pub fn make_certs(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=hull-test-ca"]);
    a.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(dir, &a);
    for (name, ext) in
        [("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"), ("client", "extendedKeyUsage=clientAuth\n")]
    {
        let mut a = vec!["req"];
        a.extend(ec);
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let subj = format!("/CN=hull-test-{name}");
        a.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &a);
        std::fs::write(dir.join(format!("{name}.ext")), format!("basicConstraints=CA:FALSE\n{ext}")).unwrap();
        let ext_file = format!("{name}.ext");
        let pem = format!("{name}.pem");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext_file,
            ],
        );
    }
}
