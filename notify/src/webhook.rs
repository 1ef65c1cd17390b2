//! Webhook receiver: POSTs Alertmanager's JSON payload, signed with HMAC-SHA256 when a secret
//! is configured, over HTTP or HTTPS (rustls).

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::attempt::{Attempt, ID_HEADER, Integration, Outcome, clip};
use crate::config::WebhookConfig;
use crate::error::NotifyError;
use crate::message::Notification;

pub const SIGNATURE_HEADER: &str = "X-Sightline-Signature";

#[derive(Debug)]
pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    key: Option<ring::hmac::Key>,
    headers: HeaderMap,
    max_alerts: usize,
    timeout: Duration,
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `key`.
fn sign(key: &ring::hmac::Key, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(ring::hmac::sign(key, body).as_ref())
    )
}

/// The `sha256=` signature of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), body)
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

impl Webhook {
    /// Builds the receiver (reads its secret and CA files).
    ///
    /// # Errors
    /// [`NotifyError::Config`] naming what cannot be used.
    pub fn new(c: &WebhookConfig) -> Result<Self, NotifyError> {
        Self::build(c).map_err(NotifyError::Config)
    }

    fn build(c: &WebhookConfig) -> Result<Self, String> {
        let url = reqwest::Url::parse(&c.url).map_err(|e| format!("bad url: {e}"))?;
        let secret = match (&c.secret, &c.secret_file) {
            (Some(s), _) => Some(s.as_bytes().to_vec()),
            (None, Some(p)) => {
                let s = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read secret_file {}: {e}", p.display()))?;
                let s = s.trim_end_matches(['\n', '\r']);
                if s.is_empty() {
                    return Err(format!("secret_file {} is empty", p.display()));
                }
                Some(s.as_bytes().to_vec())
            }
            (None, None) => None,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &c.headers {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k:?}: {e}"))?,
                HeaderValue::from_str(v).map_err(|e| format!("header {k:?}: {e}"))?,
            );
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            // A redirect would turn the POST into a GET without the body: report it instead.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(c.timeout)
            .connect_timeout(c.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("Sightline/", env!("CARGO_PKG_VERSION")));
        if let Some(p) = &c.ca_file {
            let pem = std::fs::read(p)
                .map_err(|e| format!("cannot read ca_file {}: {e}", p.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {}: {e}", p.display()))?;
            if certs.is_empty() {
                return Err(format!("ca_file {} holds no certificate", p.display()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            url,
            key: secret.map(|s| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &s)),
            headers,
            max_alerts: c.max_alerts,
            timeout: c.timeout,
        })
    }
}

#[async_trait::async_trait]
impl Integration for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, n: &Notification) -> Attempt {
        let body = match serde_json::to_vec(&n.webhook_payload(self.max_alerts)) {
            Ok(b) => b,
            Err(e) => return Attempt::new(Outcome::Permanent, None, Some(e.to_string()), None),
        };
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ID_HEADER, &n.id);
        if let Some(key) = &self.key {
            req = req.header(SIGNATURE_HEADER, sign(key, &body));
        }
        match req.body(body).send().await {
            Ok(resp) => {
                let status = resp.status();
                let code = Some(i64::from(status.as_u16()));
                if status.is_success() {
                    return Attempt::new(Outcome::Delivered, code, None, None);
                }
                let wait = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, std::time::SystemTime::now()));
                let text = read_some(resp, 4096).await;
                let error = Some(clip(&format!("HTTP {status}: {}", text.trim())));
                let retryable = status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                let outcome = if retryable {
                    Outcome::Retryable
                } else {
                    Outcome::Permanent
                };
                Attempt::new(outcome, code, error, wait)
            }
            Err(e) => {
                // The URL may carry credentials or tokens: never in a stored error.
                let msg = if e.is_timeout() {
                    format!("timed out after {:?}", self.timeout)
                } else {
                    sightline_common::error::chain(&e.without_url())
                };
                Attempt::new(Outcome::Retryable, None, Some(clip(&msg)), None)
            }
        }
    }
}

/// At most `limit` bytes of a response body, as text.
async fn read_some(mut resp: reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    while body.len() < limit {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    body.truncate(limit);
    String::from_utf8_lossy(&body).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now =
            httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("valid in this test");
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
