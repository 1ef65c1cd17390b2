//! Fixtures of alert delivery's durable files — the outbox, the notification log and the
//! API silences — written by every release and read back by every later one.
//!
//! `notify/tests/fixtures/notify-<format>/` is the `notify/` directory of a data directory as a
//! release left it: one notification queued and not delivered, the log entry it made, and one
//! silence made through the API. When one of these formats changes, write the new fixture with
//! the new code (keep the old ones):
//!
//! ```text
//! SIGHTLINE_WRITE_FIXTURES=1 cargo test -p sightline-notify fixtures::write -- --ignored
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::message::{AlertOut, Notification};
use crate::silence::{ApiMatcher, ApiSilence};

/// The fixture the current code writes.
const CURRENT: &str = "notify-v2";
/// 2025-11-30T12:00:00Z.
const T0: i64 = 1_764_504_000_000_000_000;

fn fixture_dir(name: &str) -> PathBuf {
    sightline_common::durable::manifest_dir(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The queued notification of every fixture.
fn notification() -> Notification {
    let labels = BTreeMap::from([
        ("alertname".to_string(), "SloBurnRate".to_string()),
        ("slo".to_string(), "checkout-availability".to_string()),
        ("severity".to_string(), "page".to_string()),
    ]);
    Notification {
        id: "0000000000000001-fixture".into(),
        seq: 7,
        receiver: "oncall".into(),
        group_key: "{}:{slo=\"checkout-availability\"}".into(),
        group_labels: BTreeMap::from([("slo".into(), "checkout-availability".into())]),
        group_by: vec!["slo".into()],
        status: "firing".into(),
        alerts: vec![AlertOut {
            fingerprint: "a1b2c3d4e5f60718".into(),
            status: "firing".into(),
            labels,
            annotations: BTreeMap::from([("summary".into(), "budget burning".into())]),
            starts_at: T0,
            ends_at: None,
            generator_url: "http://localhost:8080/slos/checkout-availability".into(),
        }],
        external_url: "http://localhost:8080".into(),
        created_at: T0 + 5_000_000_000,
    }
}

/// The API silence of every fixture.
fn silence() -> ApiSilence {
    ApiSilence {
        id: None,
        matchers: vec![ApiMatcher {
            name: "slo".into(),
            value: "checkout-.*".into(),
            is_regex: true,
            is_equal: true,
        }],
        starts_at: Some("2025-11-30T12:00:00Z".into()),
        ends_at: "2035-01-01T00:00:00Z".into(),
        created_by: "fixture".into(),
        comment: "made by the fixture writer".into(),
        status: None,
        from_config: false,
    }
}

/// Copies a fixture's directory tree.
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    sightline_common::durable::copy_tree(from, to).expect("copy the fixture");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{LogEntry, Outbox};
    use crate::silence::Silences;

    #[test]
    #[ignore = "writes fixtures into the source tree; run when a durable format changes"]
    fn write() {
        if std::env::var_os("SIGHTLINE_WRITE_FIXTURES").is_none() {
            return;
        }
        let dir = fixture_dir(CURRENT);
        assert!(
            !dir.exists(),
            "{} exists: fixtures are forever",
            dir.display()
        );
        let opened = Outbox::open(&dir).expect("outbox");
        let n = notification();
        opened.outbox.put(&n).expect("put");
        let log = BTreeMap::from([(
            (n.receiver.clone(), n.group_key.clone()),
            LogEntry::after(&n, "routes[0]"),
        )]);
        opened.outbox.save_log(&log).expect("log");
        let silences = Silences::open(&dir, &[]).expect("silences");
        silences.put(&silence(), T0).expect("silence");
    }

    #[test]
    fn every_fixture_opens_with_its_notification_log_and_silence() {
        let mut fixtures: Vec<PathBuf> = std::fs::read_dir(fixture_dir(""))
            .expect("notify/tests/fixtures")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        fixtures.sort();
        assert!(
            fixtures.iter().any(|d| d.ends_with(CURRENT)),
            "no fixture of the current formats ({CURRENT}): write it (see fixtures.rs)"
        );
        for fixture in fixtures {
            let tmp = tempfile::tempdir().expect("tempdir");
            copy_tree(&fixture, tmp.path());
            let opened = Outbox::open(tmp.path()).expect("outbox");
            let n = notification();
            assert_eq!(opened.pending, vec![n.clone()], "{}", fixture.display());
            assert!(opened.damaged.is_empty());
            let entry = &opened.log[&(n.receiver.clone(), n.group_key.clone())];
            assert_eq!(entry, &LogEntry::after(&n, "routes[0]"));
            let silences = Silences::open(tmp.path(), &[]).expect("silences");
            let listed = silences.list(T0 + 1);
            assert_eq!(listed.len(), 1);
            let s = &listed[0];
            assert_eq!(
                (s.created_by.as_str(), s.comment.as_str()),
                ("fixture", "made by the fixture writer")
            );
            assert_eq!(s.ends_at, "2035-01-01T00:00:00Z");
            let labels = notification().alerts[0].labels.clone();
            assert_eq!(silences.silenced_by(&labels, T0 + 1), s.id);
        }
    }
}
