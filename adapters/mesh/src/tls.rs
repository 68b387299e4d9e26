//! `https://` services: the server's rustls configuration, and the client
//! settings that make peers verify each other (optionally both ways).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use super::listener::Protocol;
use switchboard_core::error::{Error, Result};

/// The files of an `https://` service (options `tls_cert`, `tls_key`, `tls_ca`, `tls_client_auth`).
#[derive(Debug, Clone)]
pub struct HttpTls {
    /// PEM certificate chain this service presents, to callers and (for mutual TLS) to peers.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// PEM file of the CA that signed the peers' certificates; without it the
    /// system's trusted roots verify peers.
    pub ca: Option<PathBuf>,
    /// Mutual TLS: callers must present a certificate signed by `ca`.
    pub client_auth: bool,
}

/// What a gRPC client presents (`cert`, `key`) and trusts (`ca`, if given), as PEM.
pub struct ClientPems {
    /// The certificate chain this service presents.
    pub cert: Vec<u8>,
    /// Its private key.
    pub key: Vec<u8>,
    /// The CA peers must be signed by; `None`: the system's roots.
    pub ca: Option<Vec<u8>>,
}

fn crypto() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(option: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::config(format!(
            "option `{option}`: cannot read {}: {e}",
            path.display()
        ))
    })
}

fn certificates(option: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(option, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::config(format!("option `{option}`: {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "option `{option}`: {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read("tls_key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        Error::config(format!(
            "option `tls_key`: {} holds no usable PEM private key: {e}",
            path.display()
        ))
    })
}

fn roots(path: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates("tls_ca", path)? {
        roots
            .add(cert)
            .map_err(|e| Error::config(format!("option `tls_ca`: {}: {e}", path.display())))?;
    }
    Ok(roots)
}

impl HttpTls {
    /// The server side: this service's certificate, and the client check for
    /// mutual TLS; ALPN offers the one HTTP version the server speaks.
    pub(super) fn acceptor(&self, protocol: Protocol) -> Result<tokio_rustls::TlsAcceptor> {
        let builder = rustls::ServerConfig::builder_with_provider(crypto())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS: {e}")))?;
        let builder = if self.client_auth {
            let ca = self.ca.as_deref().ok_or_else(|| {
                Error::config("option `tls_client_auth` needs `tls_ca`: the CA client certificates must be signed by")
            })?;
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                crypto(),
            )
            .build()
            .map_err(|e| Error::config(format!("option `tls_ca`: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(
                certificates("tls_cert", &self.cert)?,
                private_key(&self.key)?,
            )
            .map_err(|e| Error::config(format!("options `tls_cert`/`tls_key`: {e}")))?;
        config.alpn_protocols = vec![match protocol {
            Protocol::Http1 => b"http/1.1".to_vec(),
            // gRPC clients (tonic, grpcio) insist on `h2` by ALPN.
            Protocol::Http2 => b"h2".to_vec(),
        }];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// The PEM files a gRPC client presents and trusts, each checked to hold PEM.
    pub fn client_pems(&self) -> Result<ClientPems> {
        certificates("tls_cert", &self.cert)?;
        private_key(&self.key)?;
        let ca = match &self.ca {
            Some(ca) => {
                certificates("tls_ca", ca)?;
                Some(read("tls_ca", ca)?)
            }
            None => None,
        };
        Ok(ClientPems {
            cert: read("tls_cert", &self.cert)?,
            key: read("tls_key", &self.key)?,
            ca,
        })
    }

    /// What a reqwest-style client needs to verify peers (optionally both
    /// ways): the certificates of `ca`, when given (DER), and this service's
    /// identity, its certificate chain followed by its key (PEM).
    pub fn client_trust(&self) -> Result<ClientTrust> {
        let ca = self
            .ca
            .as_ref()
            .map(|ca| certificates("tls_ca", ca))
            .transpose()?;
        let mut identity = read("tls_cert", &self.cert)?;
        identity.extend_from_slice(b"\n");
        identity.extend_from_slice(&read("tls_key", &self.key)?);
        Ok(ClientTrust { ca, identity })
    }
}

/// What a client trusts and presents, from [`HttpTls::client_trust`].
pub struct ClientTrust {
    /// The CA certificates peers must be signed by; `None`: the system's roots.
    pub ca: Option<Vec<CertificateDer<'static>>>,
    /// This service's certificate chain and private key, as one PEM text.
    pub identity: Vec<u8>,
}
