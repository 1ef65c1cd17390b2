//! What keeps a web page the user happens to open from using the API on the user's behalf.
//!
//! - **Host**: a request must name this server — `localhost`, an IP address, the host of
//!   `notify.external_url` or one of `listen.allowed_hosts` — so that a page on a rebound DNS
//!   name cannot reach it ("DNS rebinding"): `403` otherwise.
//! - **Origin**: a request that may change something or run a query (anything but `GET`,
//!   `HEAD` and `OPTIONS`) from a browser must come from this server's own pages: a foreign
//!   `Origin`, or `Sec-Fetch-Site: cross-site`, gets `403`.
//! - **Content type**: a request with a body to the API must say `application/json` (a plain
//!   HTML form cannot): `415` otherwise.
//! - Every answer says it may not be framed (`X-Frame-Options`, CSP `frame-ancestors`) or
//!   sniffed (`X-Content-Type-Options`), and the web app's pages come with a content security
//!   policy that allows only its own scripts, styles and API.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The policy of the web app's pages (and every other answer).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Host names (beyond `localhost` and IP addresses) the API answers to.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Arc<Vec<String>>);

impl AllowedHosts {
    /// `hosts` are names (`sightline.example.com`) or URLs (`https://sightline.example.com/`)
    /// whose host is taken.
    pub fn new<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Self {
        Self(Arc::new(
            hosts
                .into_iter()
                .filter_map(|h| {
                    let h = h.split_once("://").map_or(h, |(_, rest)| rest);
                    let authority = h.split(['/', '?', '#']).next()?;
                    let host = hostname(authority);
                    (!host.is_empty()).then(|| host.to_ascii_lowercase())
                })
                .collect(),
        ))
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        host == "localhost"
            || host.ends_with(".localhost")
            || host.parse::<std::net::IpAddr>().is_ok()
            || host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
            || self.0.contains(&host)
    }
}

/// The host of an authority (`host:port`, `[v6]:port`).
fn hostname(authority: &str) -> &str {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// The request's host, from `Host` (HTTP/1) or the URI's authority (HTTP/2).
fn request_host(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks a request against the rules above and marks its answer.
pub async fn check(State(allowed): State<AllowedHosts>, request: Request, next: Next) -> Response {
    let mut response = match refusal(&allowed, &request) {
        Some(refused) => refused,
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn refusal(allowed: &AllowedHosts, request: &Request) -> Option<Response> {
    let host = request_host(request);
    let name = host.as_deref().map(hostname);
    if !name.is_some_and(|n| allowed.allows(n)) {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            format!(
                "this server does not answer to the host {:?}; add it to listen.allowed_hosts \
                 (localhost, IP addresses and the host of notify.external_url are always allowed)",
                host.unwrap_or_default()
            ),
        ));
    }
    let method = request.method();
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let headers = request.headers();
    if !safe {
        if header_str(headers, "sec-fetch-site") == Some("cross-site") {
            return Some(refuse(
                StatusCode::FORBIDDEN,
                "cross-site requests may not change anything or run queries".into(),
            ));
        }
        if let Some(origin) = header_str(headers, "origin") {
            let origin_authority = origin.split_once("://").map_or(origin, |(_, a)| a);
            let same = host
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(origin_authority));
            if !same && !allowed.0.iter().any(|a| hostname(origin_authority) == a) {
                return Some(refuse(
                    StatusCode::FORBIDDEN,
                    format!("requests from {origin} may not change anything or run queries here"),
                ));
            }
        }
        let has_body = header_str(headers, "content-length").is_some_and(|l| l != "0")
            || headers.contains_key(header::TRANSFER_ENCODING);
        let json = header_str(headers, "content-type").is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"))
        });
        if has_body && request.uri().path().starts_with("/api/") && !json {
            return Some(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the API takes JSON: send Content-Type: application/json".into(),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(axum::body::Body::empty()).expect("request")
    }

    #[test]
    fn hosts_origins_and_content_types() {
        let allowed = AllowedHosts::new(["https://sightline.example.com/ui", "obs.internal"]);
        let status = |r: &Request| refusal(&allowed, r).map(|r| r.status());
        let ok = [
            request("GET", "/", &[("host", "localhost:8080")]),
            request("GET", "/", &[("host", "127.0.0.1:8080")]),
            request("GET", "/", &[("host", "[::1]:8080")]),
            request("GET", "/", &[("host", "sightline.example.com")]),
            request("GET", "/", &[("host", "OBS.internal:443")]),
            request(
                "POST",
                "/api/v1/sql",
                &[
                    ("host", "localhost:8080"),
                    ("origin", "http://localhost:8080"),
                    ("content-type", "application/json; charset=utf-8"),
                    ("content-length", "20"),
                ],
            ),
            request("POST", "/api/v1/flush", &[("host", "localhost:8080")]),
            // A page of another site may read nothing (no CORS), but may link here.
            request(
                "GET",
                "/api/v1/slos",
                &[("host", "localhost"), ("origin", "https://evil.example")],
            ),
        ];
        for r in &ok {
            assert_eq!(status(r), None, "{r:?}");
        }
        let refused = [
            (
                request("GET", "/", &[("host", "rebound.evil.example:8080")]),
                StatusCode::FORBIDDEN,
            ),
            (request("GET", "/", &[]), StatusCode::FORBIDDEN),
            (
                request(
                    "POST",
                    "/api/v1/flush",
                    &[
                        ("host", "localhost:8080"),
                        ("origin", "https://evil.example"),
                    ],
                ),
                StatusCode::FORBIDDEN,
            ),
            (
                request(
                    "POST",
                    "/api/v1/sql",
                    &[("host", "localhost:8080"), ("sec-fetch-site", "cross-site")],
                ),
                StatusCode::FORBIDDEN,
            ),
            (
                request(
                    "POST",
                    "/api/v1/sql",
                    &[
                        ("host", "localhost:8080"),
                        ("content-type", "text/plain"),
                        ("content-length", "30"),
                    ],
                ),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                request(
                    "POST",
                    "/api/v1/flush",
                    &[
                        ("host", "localhost:8080"),
                        ("content-type", "application/x-www-form-urlencoded"),
                        ("content-length", "3"),
                    ],
                ),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
        ];
        for (r, want) in &refused {
            assert_eq!(status(r), Some(*want), "{r:?}");
        }
    }
}
