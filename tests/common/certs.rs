//! Certificates made by the tests: a CA, and leaf certificates it signs,
//! written as PEM files to a folder of the test's own.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

pub struct Pki {
    pub dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA named `name`, its files under a fresh folder.
    pub fn new(name: &str) -> Pki {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cutover-pki-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca, ca_key }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `names` (DNS names or IP addresses), as
    /// `<stem>.pem` and `<stem>-key.pem`.
    pub fn issue(&self, stem: &str, names: &[&str]) -> Issued {
        let (cert, key) = self.make(stem, names);
        let issued = Issued {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}-key.pem")),
        };
        std::fs::write(&issued.cert, cert).unwrap();
        std::fs::write(&issued.key, key).unwrap();
        issued
    }

    /// A certificate's PEM and its key's PEM, not written.
    pub fn make(&self, common_name: &str, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            })
            .collect();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A client configuration that trusts this CA (and presents `client`).
    pub fn client_config(&self, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in cutover::tls::read_certs(&self.ca_file()).unwrap() {
            roots.add(c).unwrap();
        }
        let b = rustls::ClientConfig::builder_with_provider(cutover::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        Arc::new(match client {
            None => b.with_no_client_auth(),
            Some(c) => b
                .with_client_auth_cert(
                    cutover::tls::read_certs(&c.cert).unwrap(),
                    cutover::tls::read_key(&c.key).unwrap(),
                )
                .unwrap(),
        })
    }

    /// `client_config` and the name to verify, for `cutover::client`.
    pub fn to(&self, name: &str, client: Option<&Issued>) -> cutover::client::TlsTo {
        cutover::client::TlsTo {
            config: self.client_config(client),
            name: rustls::pki_types::ServerName::try_from(name.to_string()).unwrap(),
        }
    }

    /// A server configuration for the embedded node.
    pub fn server_config(
        &self,
        issued: &Issued,
        client_ca: Option<&Path>,
    ) -> Arc<rustls::ServerConfig> {
        cutover::tls::server_config(&cutover::tls::ListenerTls {
            cert_file: issued.cert.clone(),
            key_file: issued.key.clone(),
            client_ca_file: client_ca.map(Path::to_path_buf),
            plaintext_listen: None,
            ca_file: None,
        })
        .unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
