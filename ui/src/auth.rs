//! API keys on the UI's listener: which role each request needs, and the answer when it lacks
//! it. The pages and their assets, `/healthz` and `/readyz` need none (the pages hold no data;
//! they fetch it from the API); reading the API (GET, and SQL) needs `read`; changing
//! anything (silences, flushes) needs `admin`, and so does `/metrics`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sightline_common::auth::{ClientCertificate, ClientIp, Credentials, Denied, Keys, Role};

/// Where a session asks who it is: any working key may.
pub const WHOAMI: &str = "/api/v1/whoami";

/// The role a request needs, or `None` for the pages, their assets and the health checks.
pub fn role_for(method: &Method, path: &str) -> Option<Role> {
    if path == "/metrics" {
        return Some(Role::Admin);
    }
    if path != "/api" && !path.starts_with("/api/") {
        return None;
    }
    if method == Method::GET || method == Method::HEAD || path == "/api/v1/sql" {
        Some(Role::Read)
    } else {
        Some(Role::Admin)
    }
}

/// Axum middleware: lets a request through when its key has the role its route needs.
pub async fn require(
    State(keys): State<Arc<Keys>>,
    client: Option<axum::Extension<ClientIp>>,
    certificate: Option<axum::Extension<ClientCertificate>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let role = role_for(req.method(), path);
    let whoami = path == WHOAMI;
    if role.is_none() && !whoami {
        return next.run(req).await;
    }
    let credentials = Credentials {
        authorization: req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        client: client.map(|c| c.0.0),
        certificate: certificate.as_ref().map(|c| &c.0.0),
        org_id: sightline_common::proxy::OrgId::of(req.headers()),
        via: "api",
    };
    let checked = keys.authenticate(&credentials, role.filter(|_| !whoami));
    match checked {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(denied) => refusal(&denied),
    }
}

/// `GET /api/v1/whoami`: the session's tenant, key id and roles, and whether keys are
/// configured at all.
pub async fn whoami(
    State(keys): State<Arc<Keys>>,
    principal: Option<axum::Extension<sightline_common::auth::Principal>>,
) -> Response {
    let p = principal.map(|p| p.0);
    Json(serde_json::json!({
        "tenant": p.as_ref().map_or(sightline_common::auth::DEFAULT_TENANT, |p| p.tenant.as_str()),
        "key_id": p.as_ref().map(|p| p.key_id.as_str()).filter(|id| !id.is_empty()),
        "roles": p.as_ref().map(|p| p.roles.iter().map(|r| r.name()).collect::<Vec<_>>()).unwrap_or_default(),
        "keys_configured": keys.configured(),
    }))
    .into_response()
}

/// 401 (with `WWW-Authenticate`), 403 or 429 (with `Retry-After`), and what to do about it.
pub fn refusal(denied: &Denied) -> Response {
    let status = match denied {
        Denied::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Denied::Forbidden(_) => StatusCode::FORBIDDEN,
        Denied::TooManyFailures { .. } => StatusCode::TOO_MANY_REQUESTS,
    };
    let mut r = (
        status,
        Json(serde_json::json!({ "error": denied.to_string() })),
    )
        .into_response();
    match denied {
        Denied::Unauthenticated(_) => {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sightline\""),
            );
        }
        Denied::TooManyFailures { retry_after } => {
            if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        Denied::Forbidden(_) => {}
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_needs_read_and_changing_needs_admin() {
        assert_eq!(role_for(&Method::GET, "/api/v1/slos"), Some(Role::Read));
        assert_eq!(role_for(&Method::POST, "/api/v1/sql"), Some(Role::Read));
        assert_eq!(
            role_for(&Method::POST, "/api/v1/silences"),
            Some(Role::Admin)
        );
        assert_eq!(
            role_for(&Method::DELETE, "/api/v1/silences/x"),
            Some(Role::Admin)
        );
        assert_eq!(role_for(&Method::POST, "/api/v1/flush"), Some(Role::Admin));
        assert_eq!(role_for(&Method::GET, "/metrics"), Some(Role::Admin));
        assert_eq!(role_for(&Method::GET, "/slos/checkout"), None);
        assert_eq!(role_for(&Method::GET, "/healthz"), None);
        assert_eq!(role_for(&Method::GET, "/apiary"), None);
    }
}
