//! TLS settings of a registry host from `hosts.toml` (`ca`, `client`,
//! `skip_verify`) as a rustls client config for the registry client.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::error::{ImageError, IoContext, Result};

/// The most a certificate or key file may hold.
const MAX_PEM: u64 = 1 << 20;

/// A host's TLS settings; the default is the public web roots, no client
/// certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// Extra CA certificates (PEM files) trusted besides the public roots.
    pub ca: Vec<PathBuf>,
    /// Client certificate and key (PEM; the key may be in the cert file).
    pub client: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate (the handshake's signatures are still
    /// checked, so the connection is encrypted, but to whoever answers).
    pub skip_verify: bool,
}

fn read_pem(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path).ctx(|| format!("open {}", path.display()))?;
    let mut data = Vec::new();
    f.take(MAX_PEM + 1).read_to_end(&mut data).ctx(|| format!("read {}", path.display()))?;
    if data.len() as u64 > MAX_PEM {
        return Err(ImageError::InvalidArgument(format!("{}: larger than {MAX_PEM} bytes", path.display())));
    }
    Ok(data)
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let data = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ImageError::InvalidArgument(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ImageError::InvalidArgument(format!("{}: no PEM certificate in it", path.display())));
    }
    Ok(certs)
}

/// Accepts any server certificate (`skip_verify`), verifying only that
/// the server holds the key of the certificate it sent.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Tls {
    /// The rustls config for these settings; None for the defaults (the
    /// registry client's own).
    pub fn client_config(&self, what: &str) -> Result<Option<Arc<rustls::ClientConfig>>> {
        if *self == Tls::default() {
            return Ok(None);
        }
        let bad = |e: rustls::Error| ImageError::InvalidArgument(format!("{what}: TLS: {e}"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(bad)?;
        let builder = if self.skip_verify {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        } else {
            let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            for path in &self.ca {
                for cert in certs(path)? {
                    roots
                        .add(cert)
                        .map_err(|e| ImageError::InvalidArgument(format!("{what}: ca {}: {e}", path.display())))?;
                }
            }
            builder.with_root_certificates(roots)
        };
        let config = match &self.client {
            Some((cert, key)) => {
                let chain = certs(cert)?;
                let key = PrivateKeyDer::from_pem_slice(&read_pem(key)?)
                    .map_err(|e| ImageError::InvalidArgument(format!("{what}: client key {}: {e}", key.display())))?;
                builder.with_client_auth_cert(chain, key).map_err(bad)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Some(Arc::new(config)))
    }
}
