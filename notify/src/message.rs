//! What a notification says, and how it is rendered: Alertmanager's webhook payload
//! (version 4) and an email (subject, text and HTML bodies).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sightline_common::clock::{Nanos, rfc3339};

/// One alert in a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertOut {
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Nanos,
    /// When it resolved (`None` while firing).
    pub ends_at: Option<Nanos>,
    pub generator_url: String,
}

/// A notification to one receiver about one alert group: what the outbox keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Unique; sent as `X-Sightline-Notification-Id` so receivers can drop repeats.
    pub id: String,
    /// Order of creation (a group's notifications are delivered in this order).
    pub seq: u64,
    pub receiver: String,
    pub group_key: String,
    pub group_labels: BTreeMap<String, String>,
    /// The names of the group labels in the route's `group_by` order (for subjects).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// `firing` when any alert fires, else `resolved`.
    pub status: String,
    pub alerts: Vec<AlertOut>,
    pub external_url: String,
    pub created_at: Nanos,
}

/// A random 128-bit id in hex (notifications, silences).
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Alertmanager's "zero time", used as `endsAt` of firing alerts.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl Notification {
    pub fn firing_count(&self) -> usize {
        self.alerts.iter().filter(|a| a.status == "firing").count()
    }

    pub fn fingerprints(&self) -> String {
        self.alerts
            .iter()
            .map(|a| a.fingerprint.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Labels (or annotations) every alert has with the same value.
    fn common(
        &self,
        pick: impl Fn(&AlertOut) -> &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut it = self.alerts.iter();
        let Some(first) = it.next() else {
            return BTreeMap::new();
        };
        let mut common = pick(first).clone();
        for a in it {
            let m = pick(a);
            common.retain(|k, v| m.get(k) == Some(v));
        }
        common
    }

    /// Alertmanager's webhook body (version 4); at most `max_alerts` alerts when non-zero.
    pub fn webhook_payload(&self, max_alerts: usize) -> serde_json::Value {
        let keep = if max_alerts == 0 {
            self.alerts.len()
        } else {
            max_alerts.min(self.alerts.len())
        };
        let alerts: Vec<serde_json::Value> = self.alerts[..keep]
            .iter()
            .map(|a| {
                serde_json::json!({
                    "status": a.status,
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": rfc3339(a.starts_at),
                    "endsAt": a.ends_at.map_or_else(|| ZERO_TIME.to_string(), rfc3339),
                    "generatorURL": a.generator_url,
                    "fingerprint": a.fingerprint,
                })
            })
            .collect();
        serde_json::json!({
            "version": "4",
            "groupKey": self.group_key,
            "truncatedAlerts": self.alerts.len() - keep,
            "status": self.status,
            "receiver": self.receiver,
            "groupLabels": self.group_labels,
            "commonLabels": self.common(|a| &a.labels),
            "commonAnnotations": self.common(|a| &a.annotations),
            "externalURL": self.external_url,
            "alerts": alerts,
        })
    }

    /// `[FIRING:2] checkout-availability page`: status, firing count, group label values.
    pub fn subject(&self) -> String {
        let mut s = match self.status.as_str() {
            "firing" => format!("[FIRING:{}]", self.firing_count()),
            _ => "[RESOLVED]".to_string(),
        };
        let ordered = self
            .group_by
            .iter()
            .filter_map(|k| self.group_labels.get(k))
            .chain(
                self.group_labels
                    .iter()
                    .filter(|(k, _)| !self.group_by.contains(k))
                    .map(|(_, v)| v),
            );
        for v in ordered.filter(|v| !v.is_empty()) {
            s.push(' ');
            s.push_str(v);
        }
        if self.group_labels.values().all(|v| v.is_empty())
            && let Some(slo) = self.alerts.first().and_then(|a| a.labels.get("slo"))
        {
            s.push(' ');
            s.push_str(slo);
        }
        s
    }

    fn sorted_alerts(&self) -> impl Iterator<Item = (&'static str, Vec<&AlertOut>)> {
        ["firing", "resolved"].into_iter().filter_map(|st| {
            let v: Vec<&AlertOut> = self.alerts.iter().filter(|a| a.status == st).collect();
            (!v.is_empty()).then_some((st, v))
        })
    }

    /// The plain-text email body.
    pub fn text_body(&self) -> String {
        let mut t = String::new();
        for (status, alerts) in self.sorted_alerts() {
            let _ = writeln!(t, "{} {}:\n", alerts.len(), status.to_uppercase());
            for a in alerts {
                let ann = &a.annotations;
                let _ = writeln!(
                    t,
                    "* {}",
                    ann.get("summary").map_or("alert", String::as_str)
                );
                if let Some(d) = ann.get("description") {
                    let _ = writeln!(t, "  {d}");
                }
                let _ = writeln!(t, "  Started: {}", rfc3339(a.starts_at));
                if let Some(e) = a.ends_at {
                    let _ = writeln!(t, "  Resolved: {}", rfc3339(e));
                }
                for (k, v) in ann
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "summary" | "description"))
                {
                    let _ = writeln!(t, "  {k}: {v}");
                }
                let labels: Vec<String> =
                    a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = writeln!(t, "  Labels: {}", labels.join(", "));
                let _ = writeln!(t, "  SLO: {}\n", a.generator_url);
            }
        }
        let _ = writeln!(
            t,
            "Sent by Sightline ({}), group {}",
            self.external_url, self.group_key
        );
        t
    }

    /// The HTML email body (the same facts as the text one).
    pub fn html_body(&self) -> String {
        let mut h = String::from(
            "<!DOCTYPE html><html><body style=\"font-family:sans-serif;font-size:14px\">",
        );
        let _ = write!(h, "<h2>{}</h2>", esc(&self.subject()));
        for (status, alerts) in self.sorted_alerts() {
            let color = if status == "firing" {
                "#b3261e"
            } else {
                "#1e7b34"
            };
            let _ = write!(
                h,
                "<h3 style=\"color:{color}\">{} {}</h3>",
                alerts.len(),
                status.to_uppercase()
            );
            for a in alerts {
                let ann = &a.annotations;
                let _ = write!(
                    h,
                    "<div style=\"border-left:4px solid {color};padding:4px 12px;margin:8px 0\"><p><b>{}</b></p>",
                    esc(ann.get("summary").map_or("alert", String::as_str))
                );
                if let Some(d) = ann.get("description") {
                    let _ = write!(h, "<p>{}</p>", esc(d));
                }
                h.push_str("<table>");
                let mut row = |k: &str, v: &str| {
                    let _ = write!(
                        h,
                        "<tr><td style=\"color:#555;padding-right:12px\">{}</td><td>{}</td></tr>",
                        esc(k),
                        esc(v)
                    );
                };
                row("Started", &rfc3339(a.starts_at));
                if let Some(e) = a.ends_at {
                    row("Resolved", &rfc3339(e));
                }
                for (k, v) in ann
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "summary" | "description"))
                {
                    row(k, v);
                }
                for (k, v) in &a.labels {
                    row(&format!("label {k}"), v);
                }
                let _ = write!(
                    h,
                    "</table><p><a href=\"{}\">Open the SLO in Sightline</a></p></div>",
                    esc(&a.generator_url)
                );
            }
        }
        let _ = write!(
            h,
            "<p style=\"color:#777\">Sent by <a href=\"{0}\">Sightline</a>, group {1}</p></body></html>",
            esc(&self.external_url),
            esc(&self.group_key)
        );
        h
    }
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(fp: &str, status: &str, tier: &str) -> AlertOut {
        AlertOut {
            fingerprint: fp.into(),
            status: status.into(),
            labels: BTreeMap::from([
                ("slo".to_string(), "checkout-availability".to_string()),
                ("severity".to_string(), "page".to_string()),
                ("tier".to_string(), tier.to_string()),
            ]),
            annotations: BTreeMap::from([
                ("summary".to_string(), format!("burning <fast> {tier}")),
                ("objective".to_string(), "99.9%".to_string()),
            ]),
            starts_at: 1_764_000_000_000_000_000,
            ends_at: (status == "resolved").then_some(1_764_000_600_000_000_000),
            generator_url: "http://sightline:8080/slos/checkout-availability".into(),
        }
    }

    fn notification() -> Notification {
        Notification {
            id: "n1".into(),
            seq: 1,
            receiver: "oncall".into(),
            group_key: "{}:{severity=\"page\", slo=\"checkout-availability\"}".into(),
            group_labels: BTreeMap::from([
                ("severity".to_string(), "page".to_string()),
                ("slo".to_string(), "checkout-availability".to_string()),
            ]),
            group_by: vec!["slo".into(), "severity".into()],
            status: "firing".into(),
            alerts: vec![
                alert("a", "firing", "page-1h"),
                alert("b", "firing", "page-6h"),
                alert("c", "resolved", "ticket-1d"),
            ],
            external_url: "http://sightline:8080".into(),
            created_at: 0,
        }
    }

    #[test]
    fn the_payload_has_alertmanagers_shape() {
        let p = notification().webhook_payload(2);
        assert_eq!(p["version"], "4");
        assert_eq!(p["truncatedAlerts"], 1);
        assert_eq!(p["alerts"].as_array().expect("valid in this test").len(), 2);
        assert_eq!(p["commonLabels"]["slo"], "checkout-availability");
        assert!(p["commonLabels"].get("tier").is_none());
        assert_eq!(p["commonAnnotations"]["objective"], "99.9%");
        assert_eq!(p["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(p["alerts"][0]["startsAt"], "2025-11-24T16:00:00Z");
        assert_eq!(
            notification().webhook_payload(0)["alerts"][2]["endsAt"],
            "2025-11-24T16:10:00Z"
        );
    }

    #[test]
    fn subjects_and_bodies() {
        let n = notification();
        assert_eq!(n.subject(), "[FIRING:2] checkout-availability page");
        let text = n.text_body();
        assert!(
            text.contains("2 FIRING") && text.contains("1 RESOLVED"),
            "{text}"
        );
        assert!(text.contains("objective: 99.9%"));
        let html = n.html_body();
        assert!(html.contains("burning &lt;fast&gt; page-1h"), "{html}");
        assert!(html.contains("href=\"http://sightline:8080/slos/checkout-availability\""));
    }
}
