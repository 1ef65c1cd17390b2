//! The `[notify]` section of the config file: receivers, the route tree, silences and how
//! hard delivery tries. Every key is checked at start; errors name the receiver or route.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sightline_common::clock::{Nanos, parse_rfc3339};
use sightline_slo::matcher::Matcher;

use crate::error::NotifyError;

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Base URL of Sightline as people reach it, for links in notifications
    /// (default: `http://` + the API listen address).
    pub external_url: Option<String>,
    pub receivers: Vec<ReceiverConfig>,
    /// The root of the route tree; required when there are receivers.
    pub route: Option<RouteConfig>,
    /// Silences that always exist (more can be added through the API).
    pub silences: Vec<SilenceConfig>,
    pub delivery: DeliveryConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiverConfig {
    pub name: String,
    /// Also notify when alerts resolve.
    pub send_resolved: bool,
    pub webhook: Option<WebhookConfig>,
    pub email: Option<EmailConfig>,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            send_resolved: true,
            webhook: None,
            email: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub url: String,
    /// Signs every body: `X-Sightline-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// Extra request headers (e.g. `Authorization`).
    pub headers: BTreeMap<String, String>,
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub timeout: Duration,
    /// At most this many alerts per request (0: all); the rest are counted in
    /// `truncatedAlerts`.
    pub max_alerts: usize,
    /// PEM file of CA certificates to trust besides the built-in roots (HTTPS).
    pub ca_file: Option<PathBuf>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            secret: None,
            secret_file: None,
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            max_alerts: 0,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required; port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on the same host or network.
    None,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    pub to: Vec<String>,
    pub from: String,
    /// `host:port` of the SMTP server.
    pub smarthost: String,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Name sent in EHLO (default: this host's name).
    pub hello: Option<String>,
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub timeout: Duration,
    /// PEM file of CA certificates to trust besides the built-in roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            to: Vec::new(),
            from: String::new(),
            smarthost: String::new(),
            tls: SmtpTls::default(),
            username: None,
            password: None,
            password_file: None,
            hello: None,
            timeout: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    pub receiver: Option<String>,
    /// More receivers for the same alerts (together with `receiver`).
    pub receivers: Vec<String>,
    /// All must match (the root route matches every alert).
    pub matchers: Vec<Matcher>,
    /// Labels that split alerts into groups; `["..."]` groups by every label. Inherited.
    pub group_by: Option<Vec<String>>,
    #[serde(deserialize_with = "sightline_common::config::opt_duration")]
    pub group_wait: Option<Duration>,
    #[serde(deserialize_with = "sightline_common::config::opt_duration")]
    pub group_interval: Option<Duration>,
    #[serde(deserialize_with = "sightline_common::config::opt_duration")]
    pub repeat_interval: Option<Duration>,
    /// Go on to the next sibling route after this one matched.
    #[serde(rename = "continue")]
    pub continue_: bool,
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SilenceConfig {
    pub matchers: Vec<Matcher>,
    /// RFC 3339; default: always.
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub comment: String,
    pub created_by: String,
}

impl EmailConfig {
    /// The smarthost's `host:port` as its parts; the port must be given (25, 465 and 587 mean
    /// different things).
    pub fn host_port(&self) -> Result<(String, u16), String> {
        let s = &self.smarthost;
        let hint = match self.tls {
            SmtpTls::Starttls => "587",
            SmtpTls::Tls => "465",
            SmtpTls::None => "25",
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| {
            format!("smarthost {s:?} must be host:port (e.g. smtp.example.com:{hint})")
        })?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("smarthost {s:?}: {port:?} is not a port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("smarthost {s:?} has no host"));
        }
        Ok((host.to_string(), port))
    }
}

fn parse_time(s: &str, what: &str) -> Result<Nanos, String> {
    parse_rfc3339(s)
        .ok_or_else(|| format!("{what} {s:?} is not an RFC 3339 time between 1677 and 2262"))
}

impl SilenceConfig {
    /// When the `index`th configured silence starts and ends (always, when not given).
    pub fn window(&self, index: usize) -> Result<(Nanos, Nanos), String> {
        let at = format!("notify.silences[{index}]");
        if self.matchers.is_empty() {
            return Err(format!("{at}: needs at least one matcher"));
        }
        let starts_at = match &self.starts_at {
            Some(s) => parse_time(s, "starts_at").map_err(|e| format!("{at}: {e}"))?,
            None => i64::MIN,
        };
        let ends_at = match &self.ends_at {
            Some(s) => parse_time(s, "ends_at").map_err(|e| format!("{at}: {e}"))?,
            None => i64::MAX,
        };
        if ends_at <= starts_at {
            return Err(format!("{at}: ends_at must be after starts_at"));
        }
        Ok((starts_at, ends_at))
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// First retry delay; doubles with every failure (with jitter) up to `max_backoff`.
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub initial_backoff: Duration,
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub max_backoff: Duration,
    /// A notification not delivered this long after it was queued is given up (recorded).
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub max_age: Duration,
    /// Consecutive failures that open a receiver's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker waits before one trial request (doubles while it fails).
    #[serde(deserialize_with = "sightline_common::config::duration")]
    pub breaker_cooldown: Duration,
    /// Requests in flight per receiver (each alert group sends one at a time, in order).
    pub concurrency: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            max_age: Duration::from_secs(24 * 3600),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
            concurrency: 4,
        }
    }
}

pub const DEFAULT_GROUP_BY: [&str; 2] = ["slo", "severity"];
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);

impl NotifyConfig {
    pub fn enabled(&self) -> bool {
        !self.receivers.is_empty()
    }

    /// Checks what parses but cannot work.
    ///
    /// # Errors
    /// [`NotifyError::Config`] naming the key, receiver or route.
    pub fn validate(&self) -> Result<(), NotifyError> {
        self.check().map_err(NotifyError::Config)
    }

    fn check(&self) -> Result<(), String> {
        let mut names = BTreeSet::new();
        for r in &self.receivers {
            let who = format!("notify.receivers {:?}", r.name);
            if r.name.trim().is_empty() {
                return Err("notify.receivers: every receiver needs a name".into());
            }
            if !names.insert(r.name.as_str()) {
                return Err(format!("{who}: the name is used twice"));
            }
            match (&r.webhook, &r.email) {
                (Some(w), None) => {
                    validate_webhook(w).map_err(|e| format!("{who}: webhook: {e}"))?
                }
                (None, Some(e)) => validate_email(e).map_err(|m| format!("{who}: email: {m}"))?,
                _ => {
                    return Err(format!(
                        "{who}: give exactly one of [webhook] or [email] (use several receivers \
                         and list them in a route to notify both)"
                    ));
                }
            }
        }
        match &self.route {
            None if !self.receivers.is_empty() => {
                return Err(
                    "notify.route is missing: receivers get nothing without a route".into(),
                );
            }
            None => {}
            Some(root) => {
                if !root.matchers.is_empty() {
                    return Err("notify.route: the root route matches every alert; put matchers on its routes".into());
                }
                if root.receiver.is_none() && root.receivers.is_empty() {
                    return Err("notify.route: the root route needs a receiver (alerts no route matches go there)".into());
                }
                validate_route(root, "notify.route", &names)?;
            }
        }
        for (i, s) in self.silences.iter().enumerate() {
            s.window(i)?;
        }
        let d = &self.delivery;
        if d.initial_backoff.is_zero() || d.max_backoff < d.initial_backoff {
            return Err(
                "notify.delivery: initial_backoff must be positive and at most max_backoff".into(),
            );
        }
        if d.max_age < Duration::from_secs(1) {
            return Err("notify.delivery.max_age must be at least 1s".into());
        }
        if d.breaker_failures == 0 || d.breaker_cooldown.is_zero() {
            return Err(
                "notify.delivery: breaker_failures and breaker_cooldown must be positive".into(),
            );
        }
        if !(1..=64).contains(&d.concurrency) {
            return Err("notify.delivery.concurrency must be between 1 and 64".into());
        }
        if let Some(u) = &self.external_url {
            check_url(u).map_err(|e| format!("notify.external_url: {e}"))?;
        }
        Ok(())
    }
}

fn check_url(u: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(u).map_err(|e| format!("{u:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "{u:?} must be an http:// or https:// URL with a host"
        ));
    }
    Ok(url)
}

fn validate_webhook(w: &WebhookConfig) -> Result<(), String> {
    check_url(&w.url)?;
    if w.secret.is_some() && w.secret_file.is_some() {
        return Err("give secret or secret_file, not both".into());
    }
    if w.secret.as_ref().is_some_and(|s| s.is_empty()) {
        return Err("secret is empty".into());
    }
    for (k, v) in &w.headers {
        reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("header name {k:?} is not valid"))?;
        reqwest::header::HeaderValue::from_str(v)
            .map_err(|_| format!("header {k:?} has a value that cannot be sent"))?;
    }
    if w.timeout.is_zero() {
        return Err("timeout must be positive".into());
    }
    Ok(())
}

fn validate_email(e: &EmailConfig) -> Result<(), String> {
    if e.to.is_empty() {
        return Err("to needs at least one address".into());
    }
    for a in e.to.iter().chain([&e.from]) {
        a.parse::<lettre::message::Mailbox>()
            .map_err(|x| format!("{a:?} is not an email address: {x}"))?;
    }
    e.host_port()?;
    if e.password.is_some() && e.password_file.is_some() {
        return Err("give password or password_file, not both".into());
    }
    if (e.password.is_some() || e.password_file.is_some()) != e.username.is_some() {
        return Err("username and password go together".into());
    }
    if e.username.is_some() && e.tls == SmtpTls::None {
        return Err(
            "a username and password are never sent without TLS: use tls = \"starttls\" or \
             \"tls\", or a relay that needs no login"
                .into(),
        );
    }
    if e.timeout.is_zero() {
        return Err("timeout must be positive".into());
    }
    Ok(())
}

fn validate_route(r: &RouteConfig, at: &str, receivers: &BTreeSet<&str>) -> Result<(), String> {
    for name in r.receiver.iter().chain(&r.receivers) {
        if !receivers.contains(name.as_str()) {
            return Err(format!("{at}: no receiver is named {name:?}"));
        }
    }
    if let Some(g) = &r.group_by
        && g.iter().any(|l| l == "...")
        && g.len() > 1
    {
        return Err(format!(
            "{at}: group_by [\"...\"] (every label) cannot list other labels"
        ));
    }
    if r.group_interval.is_some_and(|d| d.is_zero()) {
        return Err(format!("{at}: group_interval must be positive"));
    }
    if r.repeat_interval.is_some_and(|d| d.is_zero()) {
        return Err(format!("{at}: repeat_interval must be positive"));
    }
    for (i, c) in r.routes.iter().enumerate() {
        validate_route(c, &format!("{at}.routes[{i}]"), receivers)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<(), String> {
        let c: NotifyConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_config_validates() {
        parse(
            r#"
            external_url = "https://sightline.example.com"
            [[receivers]]
            name = "oncall"
            webhook = { url = "https://hooks.example.com/am", secret = "s3cret", headers = { Authorization = "Bearer x" }, timeout = "5s" }
            [[receivers]]
            name = "team-mail"
            send_resolved = false
            email = { to = ["sre@example.com"], from = "Sightline <alerts@example.com>", smarthost = "smtp.example.com:587", username = "u", password = "p" }
            [route]
            receiver = "team-mail"
            group_by = ["slo", "severity"]
            group_wait = "10s"
            [[route.routes]]
            matchers = ['severity="page"', 'service=~"checkout|cart"']
            receivers = ["oncall", "team-mail"]
            continue = true
            [[silences]]
            matchers = ['slo="batch-jobs"']
            comment = "noisy until the rewrite"
            [delivery]
            max_age = "12h"
            "#,
        )
        .expect("valid in this test");
    }

    #[test]
    fn mistakes_are_named() {
        for (text, want) in [
            (
                "[[receivers]]\nname = \"a\"\nwebhook = { url = \"ftp://x\" }\n[route]\nreceiver = \"a\"",
                "notify.receivers \"a\": webhook: \"ftp://x\" must be an http",
            ),
            (
                "[[receivers]]\nname = \"a\"\nwebhook = { url = \"http://x\" }",
                "notify.route is missing",
            ),
            (
                "[[receivers]]\nname = \"a\"\nwebhook = { url = \"http://x\" }\n[route]\nreceiver = \"b\"",
                "no receiver is named \"b\"",
            ),
            (
                "[[receivers]]\nname = \"a\"\nwebhook = { url = \"http://x\" }\n[route]\nreceiver = \"a\"\n[[route.routes]]\nreceiver = \"zz\"",
                "notify.route.routes[0]: no receiver is named \"zz\"",
            ),
            (
                "[[receivers]]\nname = \"a\"\n[route]\nreceiver = \"a\"",
                "exactly one of [webhook] or [email]",
            ),
            (
                "[[receivers]]\nname = \"m\"\nemail = { to = [\"not-an-address\"], from = \"a@b.c\", smarthost = \"h:25\" }\n[route]\nreceiver = \"m\"",
                "\"not-an-address\" is not an email address",
            ),
            (
                "[[receivers]]\nname = \"m\"\nemail = { to = [\"x@y.z\"], from = \"a@b.c\", smarthost = \"h\" }\n[route]\nreceiver = \"m\"",
                "host:port",
            ),
            (
                "[[receivers]]\nname = \"a\"\nwebhook = { url = \"http://x\" }\n[route]\nreceiver = \"a\"\nmatchers = ['x=\"y\"']",
                "root route matches every alert",
            ),
            (
                "[route]\nreceiver = \"a\"\n[[route.routes]]\nmatchers = ['x=~\"(\"']",
                "invalid regex",
            ),
            (
                "[[silences]]\nmatchers = []",
                "silences[0]: needs at least one matcher",
            ),
        ] {
            let e = parse(text).expect_err("must be refused");
            assert!(e.contains(want), "{text}\n→ {e}");
        }
    }
}
