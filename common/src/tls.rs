//! TLS for every listener (the `[tls]` config section): rustls on `ring`, TLS 1.2 or 1.3 only,
//! the certificate and key read from PEM files and read again when they change (at most once a
//! second, on the next connection: no restart, connections already open keep their session),
//! optionally client certificates checked against a CA of their own (mTLS) and mapped to a
//! tenant and roles by a DNS name they carry. A broken or half-written file is reported and
//! the certificate in use is kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;

use crate::auth::{DEFAULT_TENANT, Principal, Role};

/// Whether a client must present a certificate when a client CA is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Certificates are checked when presented; clients without one use API keys.
    #[default]
    Optional,
    /// A connection without a certificate from the client CA is refused in the handshake.
    Required,
}

/// The oldest protocol version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum MinVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// A client certificate's identity: a certificate from the client CA that carries `name` as a
/// DNS subject alternative name is `tenant` with `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIdentity {
    pub name: String,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub roles: Vec<String>,
}

fn default_tenant() -> String {
    DEFAULT_TENANT.into()
}

/// The `[tls]` section: off unless `cert_file` is set.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM, leaf first).
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to; enables mTLS.
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub min_version: MinVersion,
    /// A connection that has not completed its handshake in this time is closed.
    #[serde(deserialize_with = "crate::config::duration")]
    pub handshake_timeout: Duration,
    /// What verified client certificates are allowed to do (`[[tls.clients]]`).
    pub clients: Vec<ClientIdentity>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            client_auth: ClientAuth::Optional,
            min_version: MinVersion::Tls12,
            handshake_timeout: Duration::from_secs(10),
            clients: Vec::new(),
        }
    }
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }

    /// # Errors
    /// The first value that cannot work, naming its key.
    pub fn validate(&self) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("tls.cert_file and tls.key_file go together".into());
        }
        let rest_set = self.client_ca_file.is_some()
            || self.client_auth == ClientAuth::Required
            || !self.clients.is_empty();
        if !self.enabled() && rest_set {
            return Err("tls.client_ca_file, client_auth and clients need tls.cert_file".into());
        }
        if self.client_ca_file.is_none()
            && (self.client_auth == ClientAuth::Required || !self.clients.is_empty())
        {
            return Err(
                "tls.client_auth = \"required\" and tls.clients need tls.client_ca_file".into(),
            );
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(300))
            .contains(&self.handshake_timeout)
        {
            return Err("tls.handshake_timeout must be between 100ms and 5m".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &self.clients {
            identity_principal(c)?;
            if !names.insert(c.name.as_str()) {
                return Err(format!("tls.clients: {:?} is listed twice", c.name));
            }
        }
        Ok(())
    }
}

fn identity_principal(c: &ClientIdentity) -> Result<(ServerName<'static>, Principal), String> {
    let name = ServerName::try_from(c.name.clone())
        .map_err(|_| format!("tls.clients: {:?} is not a DNS name", c.name))?;
    if !matches!(name, ServerName::DnsName(_)) {
        return Err(format!("tls.clients: {:?} is not a DNS name", c.name));
    }
    crate::tenant::check_tenant(&c.tenant)
        .map_err(|e| format!("tls.clients: {:?}: {e}", c.name))?;
    if c.roles.is_empty() {
        return Err(format!("tls.clients: {:?} needs at least one role", c.name));
    }
    let roles = c
        .roles
        .iter()
        .map(|r| Role::parse(r).map_err(|e| format!("tls.clients: {:?}: {e}", c.name)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        name,
        Principal {
            tenant: c.tenant.clone(),
            key_id: format!("cert:{}", c.name),
            roles,
        },
    ))
}

/// What a listener speaks inside TLS, announced by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/2 only (gRPC clients insist on `h2`).
    Grpc,
    /// HTTP/2 or HTTP/1.1.
    Http,
}

/// Largest PEM file read (a chain of a few certificates is a few KiB).
const MAX_PEM_BYTES: u64 = 1 << 20;
/// How often the files are looked at for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Current {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
    /// The files' modification times and lengths when read.
    stamps: Vec<Option<(SystemTime, u64)>>,
    /// Stamps of files that failed to load (so that a broken file is reported once).
    failed: Option<Vec<Option<(SystemTime, u64)>>>,
    checked: Instant,
}

/// The TLS side of every listener: the current server configurations and who client
/// certificates are.
#[derive(Debug)]
pub struct Tls {
    config: TlsConfig,
    identities: Vec<(ServerName<'static>, Principal)>,
    current: Mutex<Current>,
    reloads: Counter,
    reload_failures: Counter,
}

impl Tls {
    /// Reads the files of an enabled `config`.
    ///
    /// # Errors
    /// A file that cannot be read or holds no usable certificate or key, named.
    pub fn load(config: &TlsConfig) -> Result<Arc<Tls>, String> {
        config.validate()?;
        let identities = config
            .clients
            .iter()
            .map(identity_principal)
            .collect::<Result<Vec<_>, _>>()?;
        let stamps = files(config).iter().map(|p| stamp(p)).collect();
        let (grpc, http) = build(config)?;
        Ok(Arc::new(Tls {
            config: config.clone(),
            identities,
            current: Mutex::new(Current {
                grpc,
                http,
                stamps,
                failed: None,
                checked: Instant::now(),
            }),
            reloads: Counter::default(),
            reload_failures: Counter::default(),
        }))
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.config.handshake_timeout
    }

    /// Whether every connection must present a client certificate.
    pub fn client_auth_required(&self) -> bool {
        self.config.client_auth == ClientAuth::Required
    }

    /// Whether client certificates can stand for a tenant (then requests need credentials).
    pub fn identities_configured(&self) -> bool {
        !self.identities.is_empty()
    }

    /// Publishes `sightline_tls_reloads_total` and `sightline_tls_reload_failures_total`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "sightline_tls_reloads",
            "Times the TLS certificate, key or client CA files were read again after a change",
            self.reloads.clone(),
        );
        registry.register(
            "sightline_tls_reload_failures",
            "Changed TLS files that could not be used (the previous certificate stays in use)",
            self.reload_failures.clone(),
        );
    }

    /// The configuration for a new connection, read again first if a file changed.
    pub fn server_config(&self, alpn: Alpn) -> Arc<ServerConfig> {
        let mut c = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if c.checked.elapsed() >= RELOAD_EVERY {
            c.checked = Instant::now();
            let now: Vec<_> = files(&self.config).iter().map(|p| stamp(p)).collect();
            if now != c.stamps && c.failed.as_ref() != Some(&now) {
                match build(&self.config) {
                    Ok((grpc, http)) => {
                        (c.grpc, c.http, c.stamps, c.failed) = (grpc, http, now, None);
                        self.reloads.inc();
                        tracing::info!("TLS certificate reloaded");
                    }
                    Err(e) => {
                        // Half-written or broken: keep what works, say so once, try again
                        // when the files change again.
                        c.failed = Some(now);
                        self.reload_failures.inc();
                        tracing::warn!(error = %e, "TLS files not reloaded; the previous certificate stays in use");
                    }
                }
            }
        }
        match alpn {
            Alpn::Grpc => c.grpc.clone(),
            Alpn::Http => c.http.clone(),
        }
    }

    /// Who a verified client certificate (the leaf) is, if it carries a configured name.
    pub fn identity(&self, leaf: &CertificateDer<'_>) -> Option<Principal> {
        let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
        self.identities
            .iter()
            .find(|(name, _)| cert.verify_is_valid_for_subject_name(name).is_ok())
            .map(|(_, p)| p.clone())
    }
}

fn files(config: &TlsConfig) -> Vec<&Path> {
    [&config.cert_file, &config.key_file, &config.client_ca_file]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
        .collect()
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn read_pem(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("{key} {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!("{key} {}: larger than 1 MiB", path.display()));
    }
    Ok(bytes)
}

fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{key} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// The server configurations (gRPC, HTTP) from the files as they are now.
fn build(config: &TlsConfig) -> Result<(Arc<ServerConfig>, Arc<ServerConfig>), String> {
    let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
        return Err("tls.cert_file and tls.key_file are needed".into());
    };
    let chain = certificates("tls.cert_file", cert_file)?;
    let key = PrivateKeyDer::from_pem_slice(&read_pem("tls.key_file", key_file)?)
        .map_err(|e| format!("tls.key_file {}: {e}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match config.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let verifier = match &config.client_ca_file {
        None => None,
        Some(ca_file) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates("tls.client_ca_file", ca_file)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("tls.client_ca_file {}: {e}", ca_file.display()))?;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = match config.client_auth {
                ClientAuth::Optional => builder.allow_unauthenticated(),
                ClientAuth::Required => builder,
            };
            Some(
                builder
                    .build()
                    .map_err(|e| format!("tls.client_ca_file {}: {e}", ca_file.display()))?,
            )
        }
    };
    let one = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, String> {
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| format!("tls: {e}"))?;
        let builder = match &verifier {
            None => builder.with_no_client_auth(),
            Some(v) => builder.with_client_cert_verifier(v.clone()),
        };
        let mut server = builder
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| {
                format!(
                    "tls.cert_file {} and tls.key_file {}: {e}",
                    cert_file.display(),
                    key_file.display()
                )
            })?;
        server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(server))
    };
    Ok((one(&[b"h2"])?, one(&[b"h2", b"http/1.1"])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
        /// A self-signed certificate for `names`, written as `cert.pem` and `key.pem`.
        fn issue(&self, names: &[&str]) -> CertificateDer<'static> {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let c = rcgen::generate_simple_self_signed(names).expect("certificate");
            std::fs::write(self.path("cert.pem"), c.cert.pem()).expect("write");
            std::fs::write(self.path("key.pem"), c.signing_key.serialize_pem()).expect("write");
            c.cert.der().clone()
        }
        fn config(&self) -> TlsConfig {
            TlsConfig {
                cert_file: Some(self.path("cert.pem")),
                key_file: Some(self.path("key.pem")),
                ..TlsConfig::default()
            }
        }
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = TlsConfig {
            cert_file: Some("a.pem".into()),
            ..TlsConfig::default()
        };
        assert!(c.validate().expect_err("refused").contains("key_file"));
        c.key_file = Some("b.pem".into());
        assert!(c.validate().is_ok());
        c.client_auth = ClientAuth::Required;
        assert!(
            c.validate()
                .expect_err("refused")
                .contains("client_ca_file")
        );
        c.client_ca_file = Some("ca.pem".into());
        c.clients = vec![ClientIdentity {
            name: "collector.example".into(),
            tenant: "default".into(),
            roles: vec!["ingest".into()],
        }];
        assert!(c.validate().is_ok());
        c.clients[0].roles = vec!["root".into()];
        assert!(
            c.validate()
                .expect_err("refused")
                .contains("collector.example")
        );
        c.clients[0].roles = vec!["ingest".into()];
        c.clients[0].name = "10.0.0.1".into();
        assert!(c.validate().expect_err("refused").contains("DNS name"));
        c.clients[0].name = "collector.example".into();
        c.handshake_timeout = Duration::from_secs(3600);
        assert!(
            c.validate()
                .expect_err("refused")
                .contains("handshake_timeout")
        );
        let off = TlsConfig {
            client_ca_file: Some("ca.pem".into()),
            ..TlsConfig::default()
        };
        assert!(off.validate().expect_err("refused").contains("cert_file"));
    }

    #[test]
    fn missing_or_broken_files_are_named() {
        let f = Files::new();
        let e = Tls::load(&f.config()).expect_err("refused");
        assert!(e.contains("tls.cert_file") && e.contains("cert.pem"), "{e}");
        f.issue(&["localhost"]);
        std::fs::write(f.path("key.pem"), "not a key").expect("write");
        let e = Tls::load(&f.config()).expect_err("refused");
        assert!(e.contains("tls.key_file"), "{e}");
        // A key that is not the certificate's.
        let other = rcgen::generate_simple_self_signed(vec!["x".into()]).expect("cert");
        std::fs::write(f.path("key.pem"), other.signing_key.serialize_pem()).expect("write");
        let e = Tls::load(&f.config()).expect_err("refused");
        assert!(
            e.contains("tls.cert_file") && e.contains("tls.key_file"),
            "{e}"
        );
        f.issue(&["localhost"]);
        let tls = Tls::load(&f.config()).expect("loads");
        assert_eq!(
            tls.server_config(Alpn::Grpc).alpn_protocols,
            vec![b"h2".to_vec()]
        );
        assert_eq!(tls.server_config(Alpn::Http).alpn_protocols.len(), 2);
    }

    #[test]
    fn changed_files_are_read_again_and_broken_ones_kept_out() {
        let f = Files::new();
        f.issue(&["localhost"]);
        let tls = Tls::load(&f.config()).expect("loads");
        let first = tls.server_config(Alpn::Http);
        // A broken certificate: the working one stays.
        std::fs::write(f.path("cert.pem"), "-----BEGIN CERTIFICATE-----\nAAAA").expect("write");
        tls.current.lock().expect("lock").checked -= RELOAD_EVERY;
        let kept = tls.server_config(Alpn::Http);
        assert!(Arc::ptr_eq(&first, &kept));
        assert_eq!(tls.reload_failures.get(), 1);
        // Asked again with the same broken file: not read again, not reported again.
        tls.current.lock().expect("lock").checked -= RELOAD_EVERY;
        let _ = tls.server_config(Alpn::Http);
        assert_eq!(tls.reload_failures.get(), 1);
        // A new pair: used from the next connection on.
        f.issue(&["localhost", "sightline.example"]);
        tls.current.lock().expect("lock").checked -= RELOAD_EVERY;
        let next = tls.server_config(Alpn::Http);
        assert!(!Arc::ptr_eq(&first, &next));
        assert_eq!(tls.reloads.get(), 1);
        // Unchanged files: the same configuration.
        tls.current.lock().expect("lock").checked -= RELOAD_EVERY;
        assert!(Arc::ptr_eq(&next, &tls.server_config(Alpn::Http)));
    }

    #[test]
    fn client_certificates_are_who_their_names_say() {
        let f = Files::new();
        let client = rcgen::generate_simple_self_signed(vec!["edge.collectors".into()])
            .expect("certificate");
        std::fs::write(f.path("ca.pem"), client.cert.pem()).expect("write");
        let stranger =
            rcgen::generate_simple_self_signed(vec!["someone.else".into()]).expect("certificate");
        f.issue(&["localhost"]);
        let config = TlsConfig {
            client_ca_file: Some(f.path("ca.pem")),
            clients: vec![ClientIdentity {
                name: "edge.collectors".into(),
                tenant: "default".into(),
                roles: vec!["ingest".into()],
            }],
            ..f.config()
        };
        let tls = Tls::load(&config).expect("loads");
        assert!(tls.identities_configured() && !tls.client_auth_required());
        let p = tls.identity(client.cert.der()).expect("known name");
        assert_eq!(p.tenant, "default");
        assert_eq!(p.key_id, "cert:edge.collectors");
        assert!(p.may(Role::Ingest) && !p.may(Role::Read));
        assert_eq!(tls.identity(stranger.cert.der()), None);
        assert_eq!(tls.identity(&CertificateDer::from(vec![0u8; 8])), None);
    }
}
