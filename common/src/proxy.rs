//! Trusted-proxy mode: a gateway in front of Sightline authenticates its clients itself and
//! names their tenant in an `X-Scope-OrgID` header (as Grafana Tempo, Loki and Mimir expect).
//! Sightline believes that header only from the peers listed in `[trusted_proxy] addresses`
//! — the TCP peer's address, never a forwarded one — and gives such a request the roles the
//! section names. From any other peer the header may only repeat the tenant of the key sent
//! with it (else 401), so a client cannot name a tenant by sending it; without the section
//! the header is ignored, as before. A request carrying the header twice is refused: a
//! gateway must replace what its client sent, not add to it. The default tenant (the
//! operator's) may be named only when the section allows it.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::auth::{Denied, Principal, Role};

/// The header a trusted proxy names the tenant in (HTTP; gRPC metadata `x-scope-orgid`).
pub const ORG_ID_HEADER: &str = "x-scope-orgid";

/// The key id a proxied request is known by in the audit (no key of its own; a real key id
/// is 16 hex digits, so this can name none).
pub const PROXY_KEY_ID: &str = "proxy";

/// What a request says in `X-Scope-OrgID`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrgId<'a> {
    #[default]
    Absent,
    One(&'a [u8]),
    /// More than one value: a gateway that adds its header instead of replacing the
    /// client's would otherwise let the client's copy decide.
    Repeated,
}

impl<'a> OrgId<'a> {
    /// The header's values in `headers` (HTTP headers and gRPC metadata alike).
    pub fn of(headers: &'a axum::http::HeaderMap) -> Self {
        let mut values = headers.get_all(ORG_ID_HEADER).iter();
        match (values.next(), values.next()) {
            (None, _) => OrgId::Absent,
            (Some(v), None) => OrgId::One(v.as_bytes()),
            (Some(_), Some(_)) => OrgId::Repeated,
        }
    }
}

/// The `[trusted_proxy]` section.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustedProxyConfig {
    /// Peers whose `X-Scope-OrgID` is believed: addresses (`10.0.0.7`) or networks
    /// (`10.0.0.0/24`, `fd00::/64`). Empty: trusted-proxy mode is off.
    pub addresses: Vec<String>,
    /// What a proxied request may do.
    pub roles: Vec<Role>,
    /// Whether the gateway may name the default tenant — the operator's, whose audit holds
    /// every failed attempt with an unknown key and whose admins read `/metrics` of all.
    pub allow_default_tenant: bool,
}

impl Default for TrustedProxyConfig {
    fn default() -> Self {
        Self {
            addresses: Vec::new(),
            roles: vec![Role::Ingest, Role::Read],
            allow_default_tenant: false,
        }
    }
}

impl TrustedProxyConfig {
    /// The proxies this section trusts, if it lists any.
    ///
    /// # Errors
    /// An address that is neither an address nor a network, or no role.
    pub fn compile(&self) -> Result<Option<TrustedProxy>, String> {
        if self.addresses.is_empty() {
            return Ok(None);
        }
        if self.roles.is_empty() {
            return Err("trusted_proxy.roles must name at least one role".into());
        }
        let networks = self
            .addresses
            .iter()
            .map(|a| {
                a.parse::<IpNet>()
                    .or_else(|_| a.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "trusted_proxy.addresses: {a:?} is not an address or a network \
                             (10.0.0.7, 10.0.0.0/24)"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(all) = networks.iter().find(|n| n.prefix_len() == 0) {
            return Err(format!(
                "trusted_proxy.addresses: {all} trusts every address, so anyone could name any \
                 tenant; list the gateways' own addresses"
            ));
        }
        Ok(Some(TrustedProxy {
            networks,
            roles: self.roles.clone(),
            allow_default_tenant: self.allow_default_tenant,
        }))
    }
}

/// The proxies a server trusts, and what their requests may do.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustedProxy {
    networks: Vec<IpNet>,
    roles: Vec<Role>,
    allow_default_tenant: bool,
}

impl TrustedProxy {
    /// Whether `client` is one of the trusted proxies (an IPv4-mapped IPv6 peer counts as its
    /// IPv4 address).
    pub fn trusts(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        self.networks.iter().any(|n| n.contains(&client))
    }

    /// Who a request from a trusted proxy with `X-Scope-OrgID: org_id` is.
    ///
    /// # Errors
    /// [`Denied::Unauthenticated`] when the header names no possible tenant.
    pub fn principal(&self, org_id: &[u8]) -> Result<Principal, Denied> {
        let tenant = std::str::from_utf8(org_id.trim_ascii())
            .ok()
            .filter(|t| crate::tenant::check_tenant(t).is_ok())
            .ok_or(Denied::Unauthenticated(
                "X-Scope-OrgID must name one tenant: 1 to 63 lower-case letters, digits, '-' \
                 and '_'",
            ))?;
        if tenant == crate::tenant::DEFAULT_TENANT && !self.allow_default_tenant {
            return Err(Denied::Unauthenticated(
                "X-Scope-OrgID may not name the default tenant (trusted_proxy.allow_default_tenant)",
            ));
        }
        Ok(Principal {
            tenant: tenant.to_string(),
            key_id: PROXY_KEY_ID.to_string(),
            roles: self.roles.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(addresses: &[&str]) -> TrustedProxy {
        TrustedProxyConfig {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }
        .compile()
        .expect("valid")
        .expect("on")
    }

    #[test]
    fn only_listed_peers_are_trusted_and_only_a_possible_tenant_is_named() {
        let p = proxy(&["10.0.0.0/24", "192.168.1.7", "fd00::/64"]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        for inside in [
            "10.0.0.200",
            "::ffff:192.168.1.7",
            "fd00::1:2",
            "192.168.1.7",
        ] {
            assert!(p.trusts(ip(inside)), "{inside} not trusted");
        }
        for outside in [
            "10.0.1.1",
            "192.168.1.8",
            "fd00:0:0:1::1",
            "127.0.0.1",
            "::1",
        ] {
            assert!(!p.trusts(ip(outside)), "{outside} trusted");
        }
        let who = p.principal(b" team-a ").expect("a tenant");
        assert_eq!(who.tenant, "team-a");
        assert_eq!(who.key_id, PROXY_KEY_ID);
        assert!(who.may(Role::Ingest) && who.may(Role::Read) && !who.may(Role::Admin));
        for bad in [
            &b"a|b"[..],
            b"../x",
            b"",
            b"Team",
            b"wal",
            b"\xff",
            &[b'a'; 64][..],
            "team-a\u{a0}".as_bytes(),
            b"default",
        ] {
            assert!(
                matches!(p.principal(bad), Err(Denied::Unauthenticated(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_section_is_checked_when_read() {
        assert_eq!(TrustedProxyConfig::default().compile(), Ok(None));
        let bad = TrustedProxyConfig {
            addresses: vec!["10.0.0.0/33".into()],
            ..Default::default()
        };
        assert!(
            bad.compile()
                .expect_err("bad network")
                .contains("10.0.0.0/33")
        );
        let none = TrustedProxyConfig {
            addresses: vec!["10.0.0.1".into()],
            roles: vec![],
            ..Default::default()
        };
        assert!(none.compile().expect_err("no roles").contains("roles"));
        for everyone in ["0.0.0.0/0", "::/0"] {
            let all = TrustedProxyConfig {
                addresses: vec!["10.0.0.1".into(), everyone.into()],
                ..Default::default()
            };
            assert!(all.compile().expect_err("trusts all").contains(everyone));
        }
        let operator = TrustedProxyConfig {
            addresses: vec!["10.0.0.1".into()],
            allow_default_tenant: true,
            ..Default::default()
        };
        let p = operator.compile().expect("valid").expect("on");
        assert_eq!(
            p.principal(b"default").map(|p| p.tenant),
            Ok("default".into())
        );
    }
}
