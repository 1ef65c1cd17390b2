//! API keys: who may send, read and administer. A key belongs to one tenant and has one or
//! more roles; only its SHA-256 is stored (`<data_dir>/keys.json`, a versioned file), and a
//! presented key is checked against it in constant time. The server reloads the file when it
//! changes, so a key created or revoked with `sightline keys` counts within a second, without
//! a restart.
//!
//! A key reads `sl_<id>_<secret>`: the id (16 hex digits) names its record and is safe to log;
//! the secret is 32 random bytes (base64url). Clients send it as `Authorization: Bearer KEY`
//! (HTTP and gRPC metadata alike), or as `Authorization: Basic base64(tenant:KEY)`.
//!
//! Failed attempts are counted per client address (an IPv6 client per /64): past
//! [`MAX_FAILURES`] in a minute, that address is refused (429) until the minute is over, valid
//! key or not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use crate::clock::{Nanos, now, rfc3339};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Send telemetry over OTLP.
    Ingest,
    /// SQL, the UI and the query APIs.
    Read,
    /// Silences, flushes, SLO and notification administration, `/metrics`; includes `read`.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "ingest" => Ok(Role::Ingest),
            "read" => Ok(Role::Read),
            "admin" => Ok(Role::Admin),
            other => Err(format!("{other:?} is not a role (ingest, read, admin)")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

pub use crate::tenant::DEFAULT_TENANT;

/// One key's record: never the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub tenant: String,
    pub roles: Vec<Role>,
    /// Hex SHA-256 of the whole key.
    pub sha256: String,
    #[serde(default)]
    pub name: String,
    pub created: Nanos,
    #[serde(default)]
    pub expires: Option<Nanos>,
    #[serde(default)]
    pub revoked: Option<Nanos>,
}

impl KeyRecord {
    /// Whether the key works at `t`.
    pub fn active(&self, t: Nanos) -> bool {
        self.revoked.is_none_or(|r| r > t) && self.expires.is_none_or(|e| e > t)
    }

    /// "active", "revoked" or "expired" at `t`.
    pub fn state(&self, t: Nanos) -> &'static str {
        match (self.revoked, self.expires) {
            (Some(r), _) if r <= t => "revoked",
            (_, Some(e)) if e <= t => "expired",
            _ => "active",
        }
    }
}

/// The keys file's current version.
pub const KEYS_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct KeysFile {
    version: u32,
    keys: Vec<KeyRecord>,
}

/// The keys file of a data directory.
pub fn keys_path(data_dir: &Path) -> PathBuf {
    data_dir.join("keys.json")
}

/// The records in `path` (none when it does not exist).
///
/// # Errors
/// A file that cannot be read, does not parse, or is of a version this build does not know.
pub fn read_keys(path: &Path) -> Result<Vec<KeyRecord>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let file: KeysFile = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not a keys file: {e}", path.display()))?;
    if file.version != KEYS_VERSION {
        return Err(format!(
            "{} is version {}; this build reads version {KEYS_VERSION}",
            path.display(),
            file.version
        ));
    }
    // A tenant names a directory: a hand-edited record must not name another one.
    for k in &file.keys {
        crate::tenant::check_tenant(&k.tenant)
            .map_err(|e| format!("{}: key {}: {e}", path.display(), k.id))?;
    }
    Ok(file.keys)
}

/// Writes `keys` to `path`, atomically and durably, readable by its owner only.
///
/// # Errors
/// When the file cannot be written.
pub fn write_keys(path: &Path, keys: &[KeyRecord]) -> Result<(), String> {
    let body = serde_json::to_vec_pretty(&KeysFile {
        version: KEYS_VERSION,
        keys: keys.to_vec(),
    })
    .map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    crate::process::private_files();
    crate::durable::write_atomically(path, &body)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn sha256_hex(key: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, key.as_bytes()))
}

/// A new key for `tenant` with `roles`: the key (shown once) and its record.
///
/// # Errors
/// No role, a tenant name [`crate::tenant::check_tenant`] refuses, or no randomness from the
/// system.
pub fn new_key(
    tenant: &str,
    roles: &[Role],
    name: &str,
    expires: Option<Nanos>,
) -> Result<(String, KeyRecord), String> {
    if roles.is_empty() {
        return Err("a key needs at least one role (ingest, read, admin)".into());
    }
    crate::tenant::check_tenant(tenant)?;
    use ring::rand::SecureRandom as _;
    let rng = ring::rand::SystemRandom::new();
    let (mut id, mut secret) = ([0u8; 8], [0u8; 32]);
    rng.fill(&mut id)
        .and_then(|()| rng.fill(&mut secret))
        .map_err(|_| "the system gave no randomness".to_string())?;
    let id = hex::encode(id);
    let key = format!(
        "sl_{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    let record = KeyRecord {
        id,
        tenant: tenant.to_string(),
        roles,
        sha256: sha256_hex(&key),
        name: name.to_string(),
        created: now(),
        expires,
        revoked: None,
    };
    Ok((key, record))
}

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    pub key_id: String,
    pub roles: Vec<Role>,
}

impl Principal {
    /// Whether the key has `role`; `admin` includes `read` (administering what one cannot see
    /// makes no sense), not `ingest`.
    pub fn may(&self, role: Role) -> bool {
        self.roles.contains(&role) || (role == Role::Read && self.roles.contains(&Role::Admin))
    }
}

/// Why a request is not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No credentials, or ones that match no working key: HTTP 401, gRPC `UNAUTHENTICATED`.
    Unauthenticated(&'static str),
    /// A working key without the role: HTTP 403, gRPC `PERMISSION_DENIED`.
    Forbidden(Role),
    /// Too many failures from this address: HTTP 429, gRPC `RESOURCE_EXHAUSTED`.
    TooManyFailures { retry_after: Duration },
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Unauthenticated(why) => write!(f, "{why}"),
            Denied::Forbidden(role) => write!(f, "this key lacks the {} role", role.name()),
            Denied::TooManyFailures { retry_after } => write!(
                f,
                "too many failed attempts from this address; try again in {} s",
                retry_after.as_secs().max(1)
            ),
        }
    }
}

/// A client's address, put in a request's extensions by the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Who a client certificate says the client is (see [`crate::tls`]), put in a request's
/// extensions by the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate(pub Principal);

/// What a request presents: its `Authorization` header value, its address, and the identity
/// of its client certificate; and where it arrived (`api`, `otlp_grpc`, `otlp_http`), for the
/// audit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub authorization: Option<&'a [u8]>,
    pub client: Option<IpAddr>,
    pub certificate: Option<&'a Principal>,
    /// Its `X-Scope-OrgID` header, believed only from a trusted proxy ([`crate::proxy`]).
    pub org_id: crate::proxy::OrgId<'a>,
    pub via: &'static str,
}

/// One row of the audit: an admin action or an authentication failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub time: Nanos,
    pub tenant: String,
    /// `silence.create`, `silence.expire`, `flush`, `key.create`, `key.revoke`, `auth.failure`.
    pub action: &'static str,
    /// The acting (or failing) key's id, never the key.
    pub key_id: Option<String>,
    pub client: Option<IpAddr>,
    /// `api`, `otlp_grpc`, `otlp_http` or `cli`.
    pub via: &'static str,
    /// What was acted on (a silence id, a key id).
    pub target: Option<String>,
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An action of `principal` (from `client`, through `via`) on `target`.
    pub fn action(
        action: &'static str,
        principal: Option<&Principal>,
        client: Option<IpAddr>,
        via: &'static str,
        target: Option<String>,
    ) -> Self {
        AuditEvent {
            time: now(),
            tenant: principal
                .map_or(DEFAULT_TENANT, |p| p.tenant.as_str())
                .into(),
            action,
            key_id: principal
                .map(|p| p.key_id.clone())
                .filter(|k| !k.is_empty()),
            client,
            via,
            target,
            detail: None,
        }
    }
}

/// Where audit events go (the store's `audit` table). Recording never blocks and never fails
/// the request; a sink that is full drops and counts.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    fn record(&self, event: AuditEvent);
}

/// Failures from one address per minute before it is refused for the rest of the minute.
pub const MAX_FAILURES: u32 = 20;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at once (the oldest window is forgotten first).
const MAX_TRACKED: usize = 10_000;
/// How often the keys file is looked at for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Loaded {
    records: HashMap<String, KeyRecord>,
    /// The file's modification time and length when read.
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

/// The keys a server checks requests against.
#[derive(Debug)]
pub struct Keys {
    path: PathBuf,
    loaded: Mutex<Loaded>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// Client certificates can stand for a tenant: then credentials are needed even with no
    /// key.
    certificates: bool,
    /// Peers whose `X-Scope-OrgID` names the tenant: then credentials are needed even with no
    /// key.
    proxy: Option<crate::proxy::TrustedProxy>,
    /// Where failed attempts and key changes are recorded, once set.
    audit: std::sync::OnceLock<std::sync::Arc<dyn AuditSink>>,
    /// Key creations and revocations up to this time are in the audit already.
    audited_until: Mutex<Nanos>,
    /// Requests refused for a missing or invalid key, on every listener.
    failed_total: prometheus_client::metrics::counter::Counter,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Keys {
    /// The keys in `path` (the data directory's `keys.json`).
    ///
    /// # Errors
    /// As [`read_keys`].
    pub fn open(path: &Path) -> Result<Keys, String> {
        let records = read_keys(path)?;
        Ok(Keys {
            path: path.to_path_buf(),
            loaded: Mutex::new(Loaded {
                records: records.into_iter().map(|r| (r.id.clone(), r)).collect(),
                stamp: stamp(path),
                checked: Instant::now(),
            }),
            failures: Mutex::default(),
            certificates: false,
            proxy: None,
            audit: std::sync::OnceLock::new(),
            audited_until: Mutex::new(0),
            failed_total: Default::default(),
        })
    }

    /// Records failed attempts, and key creations and revocations (made with `sightline keys`,
    /// seen when the file is read) in `sink` from now on; those after `since` (the last one
    /// the audit holds) are recorded at once, so that changes made while the server was
    /// stopped are not missed.
    pub fn set_audit(&self, sink: std::sync::Arc<dyn AuditSink>, since: Nanos) {
        *self.audited_until.lock().unwrap_or_else(|e| e.into_inner()) = since;
        if self.audit.set(sink).is_ok() {
            let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            self.audit_key_changes(&loaded.records);
        }
    }

    /// Records the creations and revocations in `records` newer than the audit's last.
    fn audit_key_changes(&self, records: &HashMap<String, KeyRecord>) {
        let Some(sink) = self.audit.get() else {
            return;
        };
        let mut until = self.audited_until.lock().unwrap_or_else(|e| e.into_inner());
        let mut events: Vec<AuditEvent> = Vec::new();
        for r in records.values() {
            let roles: Vec<&str> = r.roles.iter().map(|r| r.name()).collect();
            let mut add = |time: Nanos, action: &'static str, detail: String| {
                if time > *until {
                    events.push(AuditEvent {
                        time,
                        tenant: r.tenant.clone(),
                        action,
                        key_id: None,
                        client: None,
                        via: "cli",
                        target: Some(r.id.clone()),
                        detail: Some(detail),
                    });
                }
            };
            let name = if r.name.is_empty() {
                String::new()
            } else {
                format!(", name {:?}", r.name)
            };
            add(
                r.created,
                "key.create",
                format!("roles {}{name}", roles.join(",")),
            );
            if let Some(t) = r.revoked {
                add(t, "key.revoke", format!("roles {}{name}", roles.join(",")));
            }
        }
        events.sort_by_key(|e| e.time);
        if let Some(last) = events.last() {
            *until = last.time;
        }
        drop(until);
        for e in events {
            sink.record(e);
        }
    }

    /// Client certificates stand for tenants (`[[tls.clients]]`): requests need credentials
    /// (a key or such a certificate) even when no key exists.
    #[must_use]
    pub fn with_certificate_identities(mut self, on: bool) -> Self {
        self.certificates = on;
        self
    }

    /// Requests from `proxy`'s peers carrying `X-Scope-OrgID` are that tenant's, with the
    /// proxy's roles; every other request needs credentials even when no key exists.
    #[must_use]
    pub fn with_trusted_proxy(mut self, proxy: Option<crate::proxy::TrustedProxy>) -> Self {
        self.proxy = proxy;
        self
    }

    /// Whether any key was ever created (or client certificates stand for tenants, or a
    /// trusted proxy names them): then every request needs credentials.
    pub fn configured(&self) -> bool {
        self.certificates || self.proxy.is_some() || !self.lock().records.is_empty()
    }

    /// The tenants of the keys that work now (not revoked, not expired), sorted.
    pub fn tenants(&self) -> Vec<String> {
        let t = now();
        let mut out: Vec<String> = self
            .lock()
            .records
            .values()
            .filter(|r| r.revoked.is_none() && r.expires.is_none_or(|e| e > t))
            .map(|r| r.tenant.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Failed attempts since start.
    pub fn failures(&self) -> u64 {
        self.failed_total.get()
    }

    /// Publishes the failed attempts as `sightline_auth_failures_total`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "sightline_auth_failures",
            "Requests refused for a missing or invalid API key, on every listener",
            self.failed_total.clone(),
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        let mut l = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if l.checked.elapsed() >= RELOAD_EVERY {
            l.checked = Instant::now();
            let now_stamp = stamp(&self.path);
            if now_stamp != l.stamp {
                match read_keys(&self.path) {
                    Ok(records) => {
                        l.records = records.into_iter().map(|r| (r.id.clone(), r)).collect();
                        l.stamp = now_stamp;
                        tracing::info!(keys = l.records.len(), "keys reloaded");
                        self.audit_key_changes(&l.records);
                    }
                    // Half-written or broken: keep what works and say so.
                    Err(e) => tracing::warn!(error = %e, "keys not reloaded"),
                }
            }
        }
        l
    }

    /// Checks a request's `Authorization` header (its value, if any) for `role`, from
    /// `client`. With no key configured every request is let in, as the default tenant.
    ///
    /// # Errors
    /// [`Denied`], as the request is to be answered.
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        client: Option<IpAddr>,
        role: Role,
    ) -> Result<Principal, Denied> {
        let credentials = Credentials {
            authorization,
            client,
            certificate: None,
            org_id: Default::default(),
            via: "",
        };
        self.authenticate(&credentials, Some(role))
    }

    /// As [`Keys::check`], for any working key whatever its roles (to say who it is).
    ///
    /// # Errors
    /// [`Denied`], as the request is to be answered.
    pub fn identify(
        &self,
        authorization: Option<&[u8]>,
        client: Option<IpAddr>,
    ) -> Result<Principal, Denied> {
        let credentials = Credentials {
            authorization,
            client,
            certificate: None,
            org_id: Default::default(),
            via: "",
        };
        self.authenticate(&credentials, None)
    }

    /// Who `credentials` are, if they may do `role` (any role: `None`). With a trusted proxy
    /// configured, an `X-Scope-OrgID` header decides (from a trusted peer: that tenant, with
    /// the proxy's roles; from any other: refused). Otherwise an `Authorization` header is
    /// checked as a key; without one, a client certificate's identity stands. With no key
    /// configured (and no certificate identities or proxy) every request is let in, as the
    /// default tenant.
    ///
    /// # Errors
    /// [`Denied`], as the request is to be answered.
    pub fn authenticate(
        &self,
        credentials: &Credentials<'_>,
        role: Option<Role>,
    ) -> Result<Principal, Denied> {
        let Credentials {
            authorization,
            client,
            certificate,
            org_id,
            via,
        } = *credentials;
        // One look at the keys per request: whether any is configured, then the key.
        let loaded = self.lock();
        if loaded.records.is_empty() && !self.certificates && self.proxy.is_none() {
            return Ok(Principal {
                tenant: DEFAULT_TENANT.into(),
                key_id: String::new(),
                roles: vec![Role::Ingest, Role::Read, Role::Admin],
            });
        }
        // A trusted gateway speaks for many clients: its failures are its clients' (or a
        // neighbour's in its IPv6 /64), and locking it out would lock out every tenant
        // behind it. It is neither locked out nor counted against.
        let trusted = client.is_some_and(|c| self.proxy.as_ref().is_some_and(|p| p.trusts(c)));
        if !trusted && let Some(retry_after) = client.and_then(|ip| self.locked_out(ip)) {
            return Err(Denied::TooManyFailures { retry_after });
        }
        use crate::proxy::OrgId;
        // A key when one is sent, else a client certificate's identity.
        let key_or_certificate = || match (authorization, certificate) {
            (None, Some(p)) => Ok(p.clone()),
            _ => verify(&loaded, authorization),
        };
        let presented = match (&self.proxy, org_id) {
            (Some(_), OrgId::Repeated) => Err(Denied::Unauthenticated(
                "X-Scope-OrgID must be sent once (a gateway replaces its client's, never adds \
                 one)",
            )),
            (Some(proxy), OrgId::One(org_id)) if trusted => proxy.principal(org_id),
            // Not from a proxy: the header may only repeat the tenant of the key sent with
            // it (exporters set up for a Mimir-style gateway send both).
            (Some(_), OrgId::One(_)) if authorization.is_none() && certificate.is_none() => {
                Err(Denied::Unauthenticated(
                    "X-Scope-OrgID is believed only from the addresses in trusted_proxy; send \
                     an API key",
                ))
            }
            (Some(_), OrgId::One(org_id)) => key_or_certificate().and_then(|p| {
                if org_id.trim_ascii() == p.tenant.as_bytes() {
                    Ok(p)
                } else {
                    Err(Denied::Unauthenticated(
                        "X-Scope-OrgID names another tenant than the key's",
                    ))
                }
            }),
            _ => key_or_certificate(),
        };
        let result = presented.and_then(|p| match role {
            Some(role) if !p.may(role) => Err(Denied::Forbidden(role)),
            _ => Ok(p),
        });
        if let Err(Denied::Unauthenticated(why)) = &result {
            self.failed_total.inc();
            if let Some(ip) = client.filter(|_| !trusted) {
                self.fail(ip);
            }
            if let Some(sink) = self.audit.get() {
                // The id part of what was presented, when it names a key (never the secret).
                let id = authorization
                    .and_then(presented_id)
                    .filter(|id| loaded.records.contains_key(id));
                let tenant = id
                    .as_ref()
                    .and_then(|id| loaded.records.get(id))
                    .map_or(DEFAULT_TENANT, |r| r.tenant.as_str())
                    .to_string();
                sink.record(AuditEvent {
                    time: now(),
                    tenant,
                    action: "auth.failure",
                    key_id: id,
                    client,
                    via,
                    target: None,
                    detail: Some((*why).to_string()),
                });
            }
        }
        drop(loaded);
        result
    }

    /// How long `ip` is still refused, if it (its network, see [`failure_bucket`]) failed
    /// too often.
    fn locked_out(&self, ip: IpAddr) -> Option<Duration> {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (since, n) = f.get(&failure_bucket(ip))?;
        let left = FAILURE_WINDOW.checked_sub(since.elapsed())?;
        (*n >= MAX_FAILURES).then_some(left)
    }

    fn fail(&self, ip: IpAddr) {
        let ip = failure_bucket(ip);
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() >= MAX_TRACKED && !f.contains_key(&ip) {
            f.retain(|_, (since, _)| since.elapsed() < FAILURE_WINDOW);
            if f.len() >= MAX_TRACKED
                && let Some(oldest) = f.iter().min_by_key(|(_, (s, _))| *s).map(|(ip, _)| *ip)
            {
                f.remove(&oldest);
            }
        }
        let e = f.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= FAILURE_WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 += 1;
    }
}

/// What failed attempts are counted under: an IPv4 address (IPv4-mapped IPv6 included), or an
/// IPv6 address's /64 — one host usually holds a whole /64 and could otherwise try from a new
/// address each time.
fn failure_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// The key id in an `Authorization` header value (Bearer or Basic), if it has the shape of a
/// key.
fn presented_id(header: &[u8]) -> Option<String> {
    let (_, key) = presented_key(header).ok()?;
    let id = key_id(&key)?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// The id part of a key (`sl_<id>_<secret>`).
fn key_id(key: &str) -> Option<&str> {
    key.strip_prefix("sl_")?.split_once('_').map(|(id, _)| id)
}

/// The tenant (Basic only) and the key in an `Authorization` header value.
fn presented_key(header: &[u8]) -> Result<(Option<String>, String), Denied> {
    let header = std::str::from_utf8(header)
        .map_err(|_| Denied::Unauthenticated("the Authorization header is not text"))?;
    let (scheme, value) = header
        .trim()
        .split_once(' ')
        .ok_or(Denied::Unauthenticated(
            "Authorization must be Bearer <key> or Basic base64(tenant:key)",
        ))?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok((None, value.trim().to_string()))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(Denied::Unauthenticated(
                "Basic credentials are not base64 text",
            ))?;
        let (t, k) = decoded.split_once(':').ok_or(Denied::Unauthenticated(
            "Basic credentials must be tenant:key",
        ))?;
        Ok((Some(t.to_string()), k.to_string()))
    } else {
        Err(Denied::Unauthenticated(
            "Authorization must be Bearer <key> or Basic base64(tenant:key)",
        ))
    }
}

/// The key in an `Authorization` header value, checked against `loaded`.
fn verify(loaded: &Loaded, authorization: Option<&[u8]>) -> Result<Principal, Denied> {
    let header = authorization.ok_or(Denied::Unauthenticated(
        "an API key is needed: send Authorization: Bearer <key>",
    ))?;
    let (tenant, key) = presented_key(header)?;
    let invalid = Denied::Unauthenticated("the API key is not valid");
    let id = key_id(&key).ok_or(invalid.clone())?;
    let record = loaded.records.get(id).ok_or(invalid.clone())?;
    let presented = sha256_hex(&key);
    let matches: bool = presented.as_bytes().ct_eq(record.sha256.as_bytes()).into();
    if !matches || !record.active(now()) {
        return Err(invalid);
    }
    if tenant.is_some_and(|t| t != record.tenant) {
        return Err(invalid);
    }
    Ok(Principal {
        tenant: record.tenant.clone(),
        key_id: record.id.clone(),
        roles: record.roles.clone(),
    })
}

/// A record's line for `sightline keys list`.
pub fn describe(r: &KeyRecord, t: Nanos) -> String {
    format!(
        "{}  tenant={}  roles={}  {}  created {}{}{}",
        r.id,
        r.tenant,
        r.roles
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(","),
        r.state(t),
        rfc3339(r.created),
        r.expires
            .map(|e| format!("  expires {}", rfc3339(e)))
            .unwrap_or_default(),
        if r.name.is_empty() {
            String::new()
        } else {
            format!("  {:?}", r.name)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_with(records: &[KeyRecord]) -> (tempfile::TempDir, Keys) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = keys_path(dir.path());
        write_keys(&path, records).expect("write");
        let keys = Keys::open(&path).expect("open");
        (dir, keys)
    }

    fn bearer(key: &str) -> Vec<u8> {
        format!("Bearer {key}").into_bytes()
    }

    #[test]
    fn a_key_works_for_its_roles_only_and_is_stored_as_a_hash() {
        let (key, record) = new_key(DEFAULT_TENANT, &[Role::Read], "", None).expect("key");
        assert!(!record.sha256.contains(&key) && record.sha256.len() == 64);
        let (_dir, keys) = keys_with(&[record]);
        let p = keys
            .check(Some(&bearer(&key)), None, Role::Read)
            .expect("read");
        assert_eq!(p.tenant, DEFAULT_TENANT);
        assert_eq!(
            keys.check(Some(&bearer(&key)), None, Role::Ingest),
            Err(Denied::Forbidden(Role::Ingest))
        );
        assert_eq!(
            keys.check(Some(&bearer(&key)), None, Role::Admin),
            Err(Denied::Forbidden(Role::Admin))
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("default:{key}"))
        );
        assert!(keys.check(Some(basic.as_bytes()), None, Role::Read).is_ok());
        let other = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("other:{key}"))
        );
        assert!(matches!(
            keys.check(Some(other.as_bytes()), None, Role::Read),
            Err(Denied::Unauthenticated(_))
        ));
        // A key of the right shape with one character changed.
        let mut wrong = key.clone();
        wrong.pop();
        wrong.push(if key.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(
            keys.check(Some(&bearer(&wrong)), None, Role::Read),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            keys.check(None, None, Role::Read),
            Err(Denied::Unauthenticated(_))
        ));
    }

    #[test]
    fn no_keys_lets_everyone_in_and_revoked_or_expired_keys_do_not_work() {
        let (_dir, open) = keys_with(&[]);
        assert!(open.check(None, None, Role::Admin).is_ok());
        let (key, mut record) = new_key(DEFAULT_TENANT, &[Role::Ingest], "", None).expect("key");
        record.revoked = Some(now() - 1);
        let (k2, mut r2) = new_key(DEFAULT_TENANT, &[Role::Ingest], "", None).expect("key");
        r2.expires = Some(now() - 1);
        let (_dir, keys) = keys_with(&[record, r2]);
        for k in [key, k2] {
            assert!(matches!(
                keys.check(Some(&bearer(&k)), None, Role::Ingest),
                Err(Denied::Unauthenticated(_))
            ));
        }
    }

    #[test]
    fn a_client_certificate_stands_in_for_a_key_and_a_key_header_still_wins() {
        let cert = Principal {
            tenant: DEFAULT_TENANT.into(),
            key_id: "cert:edge.collectors".into(),
            roles: vec![Role::Ingest],
        };
        let (key, record) = new_key(DEFAULT_TENANT, &[Role::Read], "", None).expect("key");
        let (_dir, keys) = keys_with(&[]);
        let keys = keys.with_certificate_identities(true);
        assert!(keys.configured(), "certificate identities need credentials");
        let nothing = Credentials::default();
        assert!(matches!(
            keys.authenticate(&nothing, Some(Role::Ingest)),
            Err(Denied::Unauthenticated(_))
        ));
        let with_cert = Credentials {
            certificate: Some(&cert),
            ..Credentials::default()
        };
        assert_eq!(
            keys.authenticate(&with_cert, Some(Role::Ingest)),
            Ok(cert.clone())
        );
        assert_eq!(
            keys.authenticate(&with_cert, Some(Role::Read)),
            Err(Denied::Forbidden(Role::Read))
        );
        // A key sent along is checked as a key: a wrong one fails even with a certificate.
        let (_dir, keys) = keys_with(&[record]);
        let header = bearer(&key);
        let both = Credentials {
            authorization: Some(&header),
            certificate: Some(&cert),
            ..Credentials::default()
        };
        assert_eq!(
            keys.authenticate(&both, Some(Role::Read)).map(|p| p.roles),
            Ok(vec![Role::Read])
        );
        let wrong = Credentials {
            authorization: Some(b"Bearer sl_nope_nope"),
            certificate: Some(&cert),
            ..Credentials::default()
        };
        assert!(matches!(
            keys.authenticate(&wrong, Some(Role::Ingest)),
            Err(Denied::Unauthenticated(_))
        ));
    }

    #[test]
    fn a_trusted_proxy_names_the_tenant_and_no_one_else_can() {
        let (key, record) = new_key("team-a", &[Role::Ingest], "", None).expect("key");
        let proxy = crate::proxy::TrustedProxyConfig {
            addresses: vec!["10.1.0.0/16".into()],
            roles: vec![Role::Ingest],
            ..Default::default()
        }
        .compile()
        .expect("valid");
        let (_dir, keys) = keys_with(&[]);
        let keys = keys.with_trusted_proxy(proxy.clone());
        assert!(keys.configured(), "with a proxy, requests need credentials");
        let ask = |keys: &Keys, org: &[u8], from: &str, key: Option<&[u8]>, role: Role| {
            keys.authenticate(
                &Credentials {
                    authorization: key,
                    client: Some(from.parse().expect("address")),
                    org_id: crate::proxy::OrgId::One(org),
                    ..Credentials::default()
                },
                Some(role),
            )
        };
        let who = ask(&keys, b"team-b", "10.1.2.3", None, Role::Ingest).expect("from the proxy");
        assert_eq!(
            (who.tenant.as_str(), who.key_id.as_str()),
            ("team-b", "proxy")
        );
        assert_eq!(
            ask(&keys, b"team-b", "10.1.2.3", None, Role::Read),
            Err(Denied::Forbidden(Role::Read)),
            "the proxy's roles only"
        );
        assert!(matches!(
            ask(&keys, b"team-b", "10.2.0.1", None, Role::Ingest),
            Err(Denied::Unauthenticated(_))
        ));
        assert_eq!(
            keys.failures(),
            1,
            "a header from elsewhere is a failed attempt"
        );
        let twice = Credentials {
            client: Some("10.1.2.3".parse().expect("address")),
            org_id: crate::proxy::OrgId::Repeated,
            ..Credentials::default()
        };
        assert!(matches!(
            keys.authenticate(&twice, Some(Role::Ingest)),
            Err(Denied::Unauthenticated(_))
        ));
        // The gateway's clients failing (or a neighbour in its /64) never lock it out.
        for _ in 0..2 * MAX_FAILURES {
            let _ = ask(&keys, b"Team-B", "10.1.2.3", None, Role::Ingest);
        }
        assert!(ask(&keys, b"team-b", "10.1.2.3", None, Role::Ingest).is_ok());
        for _ in 0..2 * MAX_FAILURES {
            let _ = ask(&keys, b"team-b", "10.2.0.9", None, Role::Ingest);
        }
        assert!(matches!(
            ask(&keys, b"team-b", "10.2.0.9", None, Role::Ingest),
            Err(Denied::TooManyFailures { .. })
        ));
        // Beside a key, from elsewhere: the header may repeat the key's tenant, no other.
        let (_dir, keys) = keys_with(&[record]);
        let keys = keys.with_trusted_proxy(proxy);
        let header = bearer(&key);
        let who = ask(&keys, b"team-a", "10.2.0.1", Some(&header), Role::Ingest).expect("its own");
        assert_eq!(who.tenant, "team-a");
        assert!(matches!(
            ask(&keys, b"team-b", "10.2.0.1", Some(&header), Role::Ingest),
            Err(Denied::Unauthenticated(_))
        ));
        // Without the header a key is a key, from anywhere.
        assert!(keys.check(Some(&header), None, Role::Ingest).is_ok());
    }

    #[test]
    fn a_failed_attempt_is_known_by_its_key_id_never_its_secret() {
        let id = "3f9c0a1b2c3d4e5f";
        let key = format!("sl_{id}_{}", "s".repeat(43));
        assert_eq!(presented_id(&bearer(&key)).as_deref(), Some(id));
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("default:{key}"));
        assert_eq!(
            presented_id(format!("Basic {basic}").as_bytes()).as_deref(),
            Some(id)
        );
        for junk in [
            "Bearer nope",
            "Bearer sl_zz_secret",
            "Basic !!",
            "",
            "Bearer sl_3f9c",
        ] {
            assert_eq!(presented_id(junk.as_bytes()), None, "{junk}");
        }
    }

    #[test]
    fn keys_need_a_role_and_a_tenant_name_that_is_a_safe_directory() {
        assert!(new_key("team-a", &[Role::Read], "", None).is_ok());
        assert!(new_key("../x", &[Role::Read], "", None).is_err());
        assert!(new_key("wal", &[Role::Read], "", None).is_err());
        assert!(new_key(DEFAULT_TENANT, &[], "", None).is_err());
    }

    #[test]
    fn an_address_that_fails_too_often_is_refused_even_with_a_good_key() {
        let (key, record) = new_key(DEFAULT_TENANT, &[Role::Read], "", None).expect("key");
        let (_dir, keys) = keys_with(&[record]);
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        for _ in 0..MAX_FAILURES {
            assert!(
                keys.check(Some(b"Bearer nope"), Some(ip), Role::Read)
                    .is_err()
            );
        }
        assert!(matches!(
            keys.check(Some(&bearer(&key)), Some(ip), Role::Read),
            Err(Denied::TooManyFailures { .. })
        ));
        let elsewhere: IpAddr = "192.0.2.8".parse().expect("ip");
        assert!(
            keys.check(Some(&bearer(&key)), Some(elsewhere), Role::Read)
                .is_ok()
        );
        // The same host as IPv4-mapped IPv6 (a dual-stack listener) is the same address.
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert!(matches!(
            keys.check(Some(&bearer(&key)), Some(mapped), Role::Read),
            Err(Denied::TooManyFailures { .. })
        ));
        assert_eq!(keys.failures(), u64::from(MAX_FAILURES));
    }

    /// Version 1 as `sightline keys create` first wrote it.
    const V1: &str = r#"{
  "version": 1,
  "keys": [
    {
      "id": "00112233aabbccdd",
      "tenant": "default",
      "roles": ["ingest", "read"],
      "sha256": "9f4a4e2b8a5e1a0c6f0a2b8f2a0d7f7e5c1c9e5a8e4b8f3f5d3f1e2a3b4c5d6e",
      "name": "ci",
      "created": 1793577600000000000,
      "expires": null,
      "revoked": null
    }
  ]
}"#;

    #[test]
    fn version_1_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = keys_path(dir.path());
        std::fs::write(&path, V1).expect("write");
        let keys = read_keys(&path).expect("v1");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].roles, vec![Role::Ingest, Role::Read]);
        assert!(keys[0].active(1_793_577_600_000_000_001));
    }

    #[test]
    fn an_ipv6_host_cannot_escape_the_limit_by_changing_its_address_in_its_64() {
        let (key, record) = new_key(DEFAULT_TENANT, &[Role::Read], "", None).expect("key");
        let (_dir, keys) = keys_with(&[record]);
        for i in 0..MAX_FAILURES {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().expect("ip");
            assert!(
                keys.check(Some(b"Bearer nope"), Some(ip), Role::Read)
                    .is_err()
            );
        }
        let next: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ip");
        assert!(matches!(
            keys.check(Some(&bearer(&key)), Some(next), Role::Read),
            Err(Denied::TooManyFailures { .. })
        ));
        let other_network: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert!(
            keys.check(Some(&bearer(&key)), Some(other_network), Role::Read)
                .is_ok()
        );
    }

    #[test]
    fn a_newer_version_of_the_file_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = keys_path(dir.path());
        std::fs::write(&path, r#"{"version": 9, "keys": []}"#).expect("write");
        let e = read_keys(&path).expect_err("refused");
        assert!(e.contains("version 9"), "{e}");
    }
}
