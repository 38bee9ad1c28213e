//! TLS for the streaming server: a certificate chain and its key (PEM
//! files, as `hull daemon`'s `stream_tls_cert` and `stream_tls_key` name
//! them) as a rustls server config. With it the URLs the CRI returns are
//! `https://`, as containerd's with `enable_tls_streaming`.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The most a certificate or key file may hold.
const MAX_PEM: u64 = 1 << 20;

fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut data = Vec::new();
    f.take(MAX_PEM + 1).read_to_end(&mut data).map_err(|e| format!("read {}: {e}", path.display()))?;
    if data.len() as u64 > MAX_PEM {
        return Err(format!("{}: larger than {MAX_PEM} bytes", path.display()));
    }
    Ok(data)
}

/// The server config for `cert` (a PEM chain, the server's certificate
/// first) and `key` (a PEM private key: PKCS#8, PKCS#1 or SEC1). The
/// error names the file at fault.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = CertificateDer::pem_slice_iter(&read_pem(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no PEM certificate in it", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read_pem(key)?).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
    // Upgrades are HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let (cert, key) = (d.path().join("cert.pem"), d.path().join("key.pem"));
        let e = server_config(&cert, &key).unwrap_err();
        assert!(e.contains("cert.pem"), "{e}");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let e = server_config(&cert, &key).unwrap_err();
        assert!(e.contains("cert.pem") && e.contains("no PEM certificate"), "{e}");
        std::fs::write(&cert, vec![b'x'; (MAX_PEM + 1) as usize]).unwrap();
        assert!(server_config(&cert, &key).unwrap_err().contains("larger than"));
        // A certificate-shaped block, then a key file with no key in it.
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        std::fs::write(&key, "nothing\n").unwrap();
        let e = server_config(&cert, &key).unwrap_err();
        assert!(e.contains("key.pem"), "{e}");
    }
}
