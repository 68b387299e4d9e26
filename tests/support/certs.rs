//! A throwaway certificate authority for TLS tests: a CA, a certificate for
//! 127.0.0.1/localhost (usable by servers and clients), and a second CA that
//! trusts nothing of ours, all written as PEM files into a temporary directory.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM files of one test PKI; removed when dropped.
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// A fresh CA and a loopback certificate signed by it, plus an unrelated CA.
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = certificate_authority("switchboard test CA");
        let other = certificate_authority("someone else's CA");
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "switchboard test service");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &ca).unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.pem", ca.pem());
        write("other-ca.pem", other.pem());
        write("cert.pem", cert.pem());
        write("key.pem", key.serialize_pem());
        // One file with key and chain, as Kafka's PEM key store reads it.
        write(
            "keystore.pem",
            format!("{}{}", key.serialize_pem(), cert.pem()),
        );
        TestPki { dir }
    }

    /// The path of one of the files: `ca.pem`, `other-ca.pem`, `cert.pem`, `key.pem`, `keystore.pem`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path as a string, for URLs and config files.
    pub fn file(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// The directory holding the files.
    #[allow(dead_code)]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}
