//! TLS to PostgreSQL with rustls (no OpenSSL), chosen by the URL's
//! `sslmode`:
//! - `disable`: plain TCP (a trusted network or a local socket);
//! - `prefer` / `require`: encrypted; the server certificate is verified
//!   against `KONTEXTUAL_DATABASE_CA` (a PEM file) when it is set — with the
//!   host name — and otherwise, as libpq's `require` does, not verified.
//!
//! `postgres::Config` knows no `verify-full`; setting the CA file is how to
//! ask for verification.

use std::sync::Arc;

use crate::{Result, StoreError};
use postgres::Config;
use postgres::config::SslMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The environment variable naming a CA certificate file (PEM).
pub const CA_ENV: &str = "KONTEXTUAL_DATABASE_CA";

pub(crate) enum Tls {
    None,
    Rustls(MakeRustlsConnect),
}

fn tls_err(what: impl std::fmt::Display) -> StoreError {
    StoreError::InvalidInput(format!("TLS to PostgreSQL: {what}"))
}

impl Tls {
    pub(crate) fn for_config(config: &Config) -> Result<Tls> {
        if config.get_ssl_mode() == SslMode::Disable {
            return Ok(Tls::None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?;
        let client = match std::env::var_os(CA_ENV) {
            Some(path) => {
                let pem = std::fs::read(&path).map_err(|e| {
                    tls_err(format!("reading {CA_ENV}={}: {e}", path.to_string_lossy()))
                })?;
                let mut roots = rustls::RootCertStore::empty();
                let mut n = 0;
                for cert in rustls_pki_certs(&pem)? {
                    roots.add(cert).map_err(tls_err)?;
                    n += 1;
                }
                if n == 0 {
                    return Err(tls_err(format!("{CA_ENV}: no certificate in the file")));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
                .with_no_client_auth(),
        };
        Ok(Tls::Rustls(MakeRustlsConnect::new(client)))
    }
}

fn rustls_pki_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("{CA_ENV}: {e:?}")))
}

/// `sslmode=require` without a CA: encrypted, server not authenticated (the
/// handshake signatures are still checked).
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
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
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
