//! TLS on every leg, with rustls: the client listener's certificate (and,
//! for mTLS, the CAs its clients' certificates must chain to), each
//! cluster's trusted CAs, name to verify and client certificate, and the
//! admin API's certificate. Certificates and keys are PEM files, read again
//! on SIGHUP, on `POST /v1/reload` and when a file changes: connections
//! opened afterwards get the new ones, connections already open keep theirs.
//!
//! Owns reading and checking those files and the rustls configurations made
//! from them; it does not open connections. Nothing here puts a key's bytes
//! into an error, a log line or a `Debug` output.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The client listener's TLS (`[tls]`) and the admin API's (`[admin_tls]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerTls {
    /// The certificate chain, leaf first (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Clients must present a certificate these CAs signed (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// A second client listener without TLS (`[tls]` only), so that
    /// applications move to TLS one at a time.
    pub plaintext_listen: Option<SocketAddr>,
    /// `[admin_tls]` only: the CAs the other instances' admin certificates
    /// chain to, for `?fleet=true` calls (the system's roots when unset).
    pub ca_file: Option<PathBuf>,
}

/// TLS towards one cluster (`[clusters.NAME.tls]`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterTls {
    /// The CAs to trust (PEM); the system's roots when unset.
    pub ca_file: Option<PathBuf>,
    /// The name every node's certificate must carry. Unset: a contact
    /// point's host for a contact point, a discovered node's IP address.
    pub server_name: Option<String>,
    /// The proxy's client certificate and key, for clusters that ask (mTLS).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Accept any certificate: no CA, no name checked. A warning at every
    /// start.
    pub insecure_skip_verify: bool,
}

impl ListenerTls {
    pub fn files(&self) -> Vec<PathBuf> {
        let mut f = vec![self.cert_file.clone(), self.key_file.clone()];
        f.extend(self.client_ca_file.clone());
        f
    }

    /// Paths relative to `dir` (the config file's folder).
    pub fn relative_to(&mut self, dir: &Path) {
        for p in [&mut self.cert_file, &mut self.key_file] {
            *p = beside(dir, p);
        }
        for p in [&mut self.client_ca_file, &mut self.ca_file]
            .into_iter()
            .flatten()
        {
            *p = beside(dir, p);
        }
    }

    /// How this instance reaches the other instances' admin APIs (they
    /// share its `[admin_tls]`): trusting `ca_file`, and presenting its own
    /// certificate when they verify clients (`client_ca_file`).
    pub fn peer_config(&self) -> Result<Arc<ClientConfig>, String> {
        client_config(&ClusterTls {
            ca_file: self.ca_file.clone(),
            server_name: None,
            cert_file: self.client_ca_file.as_ref().map(|_| self.cert_file.clone()),
            key_file: self.client_ca_file.as_ref().map(|_| self.key_file.clone()),
            insecure_skip_verify: false,
        })
    }
}

impl ClusterTls {
    pub fn files(&self) -> Vec<PathBuf> {
        [&self.ca_file, &self.cert_file, &self.key_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    pub fn relative_to(&mut self, dir: &Path) {
        for p in [&mut self.ca_file, &mut self.cert_file, &mut self.key_file]
            .into_iter()
            .flatten()
        {
            *p = beside(dir, p);
        }
    }
}

fn beside(dir: &Path, p: &Path) -> PathBuf {
    if p.is_relative() {
        dir.join(p)
    } else {
        p.to_path_buf()
    }
}

/// The one crypto provider (ring), named explicitly so that nothing
/// depends on which provider features other crates turn on.
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// TLS 1.2 and 1.3; nothing older.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The certificates in a PEM file (at least one).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {}", path.display(), pem_error(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {}", path.display(), pem_error(&e)))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (a PEM `BEGIN CERTIFICATE` block)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "{}: no private key in it (a PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` block)",
            path.display()
        ),
        e => format!("cannot read the key {}: {}", path.display(), pem_error(&e)),
    })
}

/// A PEM error in words, without the file's bytes.
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "nothing of the expected kind in it".into(),
        Error::MissingSectionEnd { .. } => "a PEM block without its END line".into(),
        Error::IllegalSectionStart { .. } => "a malformed PEM BEGIN line".into(),
        Error::Base64Decode(_) => "a PEM block that is not valid base64".into(),
        _ => "not a PEM file this proxy reads".into(),
    }
}

/// The CAs in `ca_file`, or the system's when None.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for c in read_certs(path)? {
                store
                    .add(c)
                    .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "no CA certificate found on this system; set ca_file to the CAs to trust"
                        .into(),
                );
            }
        }
    }
    Ok(store)
}

/// A server configuration: the listener's or the admin API's.
pub fn server_config(t: &ListenerTls) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certs(&t.cert_file)?;
    let key = read_key(&t.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?;
    let builder = match &t.client_ca_file {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(Some(ca))?),
                provider(),
            )
            .build()
            .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "{} and {} do not make a usable certificate and key: {e}",
            t.cert_file.display(),
            t.key_file.display()
        )
    })?;
    Ok(Arc::new(config))
}

/// A client configuration towards a cluster.
pub fn client_config(t: &ClusterTls) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?;
    let builder = if t.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
    } else {
        builder.with_root_certificates(roots(t.ca_file.as_deref())?)
    };
    let config = match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| {
                format!(
                    "{} and {} do not make a usable certificate and key: {e}",
                    cert.display(),
                    key.display()
                )
            })?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("cert_file and key_file go together".into()),
    };
    Ok(Arc::new(config))
}

/// `insecure_skip_verify`: any certificate is taken (the handshake's
/// signatures are still checked, so the peer holds the key it presents).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
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

/// A file's modification time and size: changed when either is.
type Stamp = Option<(Option<SystemTime>, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().ok(), m.len()))
}

type Build<T> = Box<dyn Fn() -> Result<Arc<T>, String> + Send + Sync>;

/// A rustls configuration made from files, made again when they change.
pub struct Reloading<T> {
    /// The config section, for log lines (`tls`, `clusters.origin.tls`).
    pub what: String,
    files: Vec<PathBuf>,
    build: Build<T>,
    current: ArcSwap<T>,
    stamps: parking_lot::Mutex<Vec<Stamp>>,
}

impl<T> Reloading<T> {
    pub fn new(
        what: impl Into<String>,
        files: Vec<PathBuf>,
        build: impl Fn() -> Result<Arc<T>, String> + Send + Sync + 'static,
    ) -> Result<Reloading<T>, String> {
        let stamps = files.iter().map(|f| stamp(f)).collect();
        let first = build()?;
        Ok(Reloading {
            what: what.into(),
            files,
            build: Box::new(build),
            current: ArcSwap::new(first),
            stamps: parking_lot::Mutex::new(stamps),
        })
    }

    /// The configuration a new connection gets.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Reads the files again; on a problem the configuration in force stays.
    pub fn reload(&self, by: &str) -> Result<(), String> {
        *self.stamps.lock() = self.files.iter().map(|f| stamp(f)).collect();
        match (self.build)() {
            Ok(c) => {
                self.current.store(c);
                tracing::info!(section = %self.what, by, "TLS certificates and keys read again; new connections get them");
                Ok(())
            }
            Err(e) => {
                tracing::error!(section = %self.what, by, error = %e, "TLS certificates and keys could not be read again; the ones in force stay");
                Err(format!("{}: {e}", self.what))
            }
        }
    }

    /// Whether a file changed since it was last read.
    fn changed(&self) -> bool {
        let now: Vec<Stamp> = self.files.iter().map(|f| stamp(f)).collect();
        *self.stamps.lock() != now
    }
}

/// Where a cluster's connections verify names and get their configuration.
pub struct UpstreamTls {
    pub config: Reloading<ClientConfig>,
    server_name: Option<String>,
    /// Contact points' host names by the address they resolved to.
    names: HashMap<SocketAddr, String>,
}

impl UpstreamTls {
    pub fn new(
        cluster: &str,
        t: &ClusterTls,
        contact_points: &[(String, SocketAddr)],
    ) -> Result<UpstreamTls, String> {
        let what = format!("clusters.{cluster}.tls");
        if t.insecure_skip_verify {
            tracing::warn!(
                section = %what,
                "insecure_skip_verify = true: the cluster's certificates are not verified; anyone on the path can pose as it"
            );
        }
        let owned = t.clone();
        let config = Reloading::new(what, t.files(), move || client_config(&owned))?;
        let names = contact_points
            .iter()
            .map(|(cp, addr)| (*addr, host_of(cp).to_string()))
            .collect();
        Ok(UpstreamTls {
            config,
            server_name: t.server_name.clone(),
            names,
        })
    }

    /// The name `addr`'s certificate must carry: `server_name`, else the
    /// contact point's host it came from, else its IP address.
    pub fn name_for(&self, addr: SocketAddr) -> ServerName<'static> {
        let name = self.server_name.as_ref().or_else(|| self.names.get(&addr));
        match name.and_then(|n| ServerName::try_from(n.clone()).ok()) {
            Some(n) => n,
            None => ServerName::IpAddress(addr.ip().into()),
        }
    }
}

/// The host of `host:port` (`[v6]:port` too).
pub fn host_of(contact_point: &str) -> &str {
    let host = match contact_point.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => contact_point,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Every reloadable TLS configuration of a proxy.
pub struct TlsSet {
    pub sections: Vec<Arc<dyn Reload>>,
}

/// What SIGHUP, `POST /v1/reload` and the file watcher call.
pub trait Reload: Send + Sync {
    fn what(&self) -> &str;
    fn reload(&self, by: &str) -> Result<(), String>;
    fn changed(&self) -> bool;
}

impl<T: Send + Sync> Reload for Reloading<T> {
    fn what(&self) -> &str {
        &self.what
    }
    fn reload(&self, by: &str) -> Result<(), String> {
        Reloading::reload(self, by)
    }
    fn changed(&self) -> bool {
        Reloading::changed(self)
    }
}

impl Reload for UpstreamTls {
    fn what(&self) -> &str {
        &self.config.what
    }
    fn reload(&self, by: &str) -> Result<(), String> {
        self.config.reload(by)
    }
    fn changed(&self) -> bool {
        self.config.changed()
    }
}

/// How often the watcher looks at the certificate files.
const WATCH_EVERY: Duration = Duration::from_secs(1);

impl TlsSet {
    /// Reads every section's files again; the problems, each naming its
    /// section (the configurations in force stay for those).
    pub fn reload(&self, by: &str) -> Vec<String> {
        self.sections
            .iter()
            .filter_map(|s| s.reload(by).err())
            .collect()
    }

    /// Reads a section's files again when one of them changes.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        if self.sections.is_empty() {
            return;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(WATCH_EVERY) => {}
            }
            for s in &self.sections {
                if s.changed() {
                    let _ = s.reload("the certificate file watcher");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_points_host_is_the_name_to_verify() {
        assert_eq!(host_of("cassandra.internal:9042"), "cassandra.internal");
        assert_eq!(host_of("10.0.0.1:9042"), "10.0.0.1");
        assert_eq!(host_of("[::1]:9042"), "::1");
        assert_eq!(host_of("db"), "db");
    }
}
