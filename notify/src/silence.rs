//! Silences: label matchers with a start and an end; a matching alert is not notified while
//! one is active. Silences from the config file always exist; those made through the API are
//! kept in `notify/silences.json` in the data directory (written atomically), and expired
//! ones are forgotten a week after their end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sightline_common::clock::{DAY, Nanos, rfc3339};
use sightline_slo::matcher::{MatchOp, Matcher, matches_all};

use crate::config::SilenceConfig;
use crate::error::NotifyError;
use crate::message::new_id;
use sightline_common::durable::write_atomically;

/// A matcher in the API's JSON shape (Alertmanager's).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiMatcher {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl ApiMatcher {
    fn from_matcher(m: &Matcher) -> Self {
        Self {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: matches!(m.op, MatchOp::Regex | MatchOp::NotRegex),
            is_equal: matches!(m.op, MatchOp::Equal | MatchOp::Regex),
        }
    }

    fn to_matcher(&self) -> Result<Matcher, String> {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (true, false) => MatchOp::NotRegex,
        };
        Matcher::new(&self.name, op, &self.value)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at: Nanos,
    pub ends_at: Nanos,
    pub created_by: String,
    pub comment: String,
    /// Defined in the config file (cannot be changed through the API).
    pub from_config: bool,
}

/// A silence as the API shows and takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiSilence {
    #[serde(default)]
    pub id: Option<String>,
    pub matchers: Vec<ApiMatcher>,
    #[serde(default)]
    pub starts_at: Option<String>,
    pub ends_at: String,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
    /// Output only: `pending`, `active` or `expired`.
    #[serde(default, skip_deserializing)]
    pub status: Option<BTreeMap<String, String>>,
    #[serde(default, skip_deserializing)]
    pub from_config: bool,
}

/// Most matchers in one silence.
pub const MAX_MATCHERS: usize = 64;
/// Longest comment, and longest `createdBy`.
pub const MAX_COMMENT_BYTES: usize = 4096;
pub const MAX_CREATED_BY_BYTES: usize = 256;
/// Longest a silence may last, and furthest ahead it may start.
pub const MAX_DURATION: Nanos = 90 * DAY;
/// Most silences made through the API that have not ended.
pub const MAX_SILENCES: usize = 1000;

/// Labels every alert carries (see `sightline_slo::alert`).
const ALERT_LABELS: [&str; 5] = ["alertname", "slo", "service", "severity", "tier"];

/// Whether `matchers` would silence alerts whatever their labels are: they match label sets
/// made of the labels every alert carries (and those the matchers name), all set to values
/// no real alert is likely to have.
fn matches_everything(matchers: &[Matcher]) -> bool {
    // Every alert's labels have values; a label some alerts lack matches as "".
    const PROBES: [&str; 5] = [
        "x",
        "0",
        "sightline-probe-7f3a9c",
        "Ω probe ✓",
        "a-much-longer-probe-value-that-no-alert-label-has-0123456789-abcdefghijklmnopqrstuvwxyz",
    ];
    let alert = |value: &str, also: &[&str]| -> BTreeMap<String, String> {
        ALERT_LABELS
            .iter()
            .chain(also)
            .map(|n| (n.to_string(), value.to_string()))
            .collect()
    };
    let named: Vec<&str> = matchers.iter().map(|m| m.name.as_str()).collect();
    // Alerts with only the labels every alert has, or with every label the matchers name.
    PROBES.iter().all(|v| matches_all(matchers, &alert(v, &[])))
        || PROBES
            .iter()
            .all(|v| matches_all(matchers, &alert(v, &named)))
}

fn parse_time(s: &str, what: &str) -> Result<Nanos, String> {
    sightline_common::clock::parse_rfc3339(s)
        .ok_or_else(|| format!("{what} {s:?} is not an RFC 3339 time between 1677 and 2262"))
}

impl Silence {
    /// The `index`th silence of the config file.
    ///
    /// # Errors
    /// [`NotifyError::Config`] naming the silence and what is wrong with it.
    pub fn from_config(c: &SilenceConfig, index: usize) -> Result<Self, NotifyError> {
        let (starts_at, ends_at) = c.window(index).map_err(NotifyError::Config)?;
        Ok(Self {
            id: format!("config-{index}"),
            matchers: c.matchers.clone(),
            starts_at,
            ends_at,
            created_by: c.created_by.clone(),
            comment: c.comment.clone(),
            from_config: true,
        })
    }

    fn from_api(a: &ApiSilence, now: Nanos) -> Result<Self, String> {
        if a.matchers.is_empty() {
            return Err("a silence needs at least one matcher".into());
        }
        if a.matchers.len() > MAX_MATCHERS {
            return Err(format!(
                "a silence has at most {MAX_MATCHERS} matchers; this one has {}",
                a.matchers.len()
            ));
        }
        if a.comment.len() > MAX_COMMENT_BYTES || a.created_by.len() > MAX_CREATED_BY_BYTES {
            return Err(format!(
                "comment is at most {MAX_COMMENT_BYTES} bytes and createdBy at most \
                 {MAX_CREATED_BY_BYTES}"
            ));
        }
        let matchers = a
            .matchers
            .iter()
            .map(ApiMatcher::to_matcher)
            .collect::<Result<Vec<_>, _>>()?;
        if matches_everything(&matchers) {
            return Err(
                "these matchers match every alert, whatever its labels (every alert has \
                 alertname, slo, service, severity and tier); name what to silence, e.g. \
                 slo=\"checkout-availability\""
                    .into(),
            );
        }
        let starts_at = match &a.starts_at {
            Some(s) => parse_time(s, "startsAt")?,
            None => now,
        };
        let ends_at = parse_time(&a.ends_at, "endsAt")?;
        if ends_at <= now {
            return Err("endsAt is in the past".into());
        }
        if ends_at <= starts_at {
            return Err("endsAt must be after startsAt".into());
        }
        if ends_at.saturating_sub(starts_at.max(now)) > MAX_DURATION
            || starts_at.saturating_sub(now) > MAX_DURATION
        {
            return Err(format!(
                "a silence lasts at most {} days and starts at most as far ahead",
                MAX_DURATION / DAY
            ));
        }
        Ok(Self {
            id: a.id.clone().unwrap_or_else(new_id),
            matchers,
            starts_at,
            ends_at,
            created_by: a.created_by.clone(),
            comment: a.comment.clone(),
            from_config: false,
        })
    }

    pub fn state(&self, now: Nanos) -> &'static str {
        if now < self.starts_at {
            "pending"
        } else if now < self.ends_at {
            "active"
        } else {
            "expired"
        }
    }

    pub fn to_api(&self, now: Nanos) -> ApiSilence {
        let time = |t: Nanos| match t {
            i64::MIN | i64::MAX => None,
            t => Some(rfc3339(t)),
        };
        ApiSilence {
            id: Some(self.id.clone()),
            matchers: self.matchers.iter().map(ApiMatcher::from_matcher).collect(),
            starts_at: time(self.starts_at),
            ends_at: time(self.ends_at).unwrap_or_default(),
            created_by: self.created_by.clone(),
            comment: self.comment.clone(),
            status: Some(BTreeMap::from([(
                "state".to_string(),
                self.state(now).to_string(),
            )])),
            from_config: self.from_config,
        }
    }
}

/// What is stored on disk for an API silence.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    id: String,
    matchers: Vec<Matcher>,
    starts_at: Nanos,
    ends_at: Nanos,
    created_by: String,
    comment: String,
}

/// Every silence; cheap to clone.
#[derive(Debug, Clone)]
pub struct Silences {
    path: PathBuf,
    list: Arc<RwLock<Vec<Silence>>>,
    /// Serialises saves.
    save: Arc<std::sync::Mutex<()>>,
}

impl Silences {
    /// Loads the API silences kept in `dir` and adds the configured ones.
    ///
    /// # Errors
    /// [`NotifyError::Config`] for a configured silence that cannot work; [`NotifyError::Io`]
    /// and [`NotifyError::File`] when the file of API silences cannot be read.
    pub fn open(dir: &Path, configured: &[SilenceConfig]) -> Result<Self, NotifyError> {
        let path = dir.join("silences.json");
        let mut list = Vec::new();
        for (i, c) in configured.iter().enumerate() {
            list.push(Silence::from_config(c, i)?);
        }
        match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: Vec<Stored> =
                    crate::format::decode(&bytes).map_err(|source| NotifyError::File {
                        path: path.clone(),
                        source,
                    })?;
                list.extend(stored.into_iter().map(|s| Silence {
                    id: s.id,
                    matchers: s.matchers,
                    starts_at: s.starts_at,
                    ends_at: s.ends_at,
                    created_by: s.created_by,
                    comment: s.comment,
                    from_config: false,
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(NotifyError::io(&path, e)),
        }
        Ok(Self {
            path,
            list: Arc::new(RwLock::new(list)),
            save: Default::default(),
        })
    }

    /// The id of an active silence matching `labels`, if any.
    pub fn silenced_by(&self, labels: &BTreeMap<String, String>, now: Nanos) -> Option<String> {
        self.list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|s| s.state(now) == "active" && matches_all(&s.matchers, labels))
            .map(|s| s.id.clone())
    }

    pub fn list(&self, now: Nanos) -> Vec<ApiSilence> {
        self.list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| s.to_api(now))
            .collect()
    }

    /// Creates a silence, or replaces the one with the same id; returns its id.
    pub fn put(&self, a: &ApiSilence, now: Nanos) -> Result<String, NotifyError> {
        let s = Silence::from_api(a, now).map_err(NotifyError::InvalidSilence)?;
        let id = s.id.clone();
        self.change(now, |list| {
            match list.iter_mut().find(|x| x.id == id) {
                Some(x) if x.from_config => return Err(NotifyError::SilenceFromConfig(id.clone())),
                Some(x) => *x = s,
                None if a.id.is_some() => return Err(NotifyError::SilenceNotFound(id.clone())),
                None => {
                    let open = list
                        .iter()
                        .filter(|x| !x.from_config && x.ends_at > now)
                        .count();
                    if open >= MAX_SILENCES {
                        return Err(NotifyError::InvalidSilence(format!(
                            "there are {open} silences already, the most Sightline keeps; \
                             expire some, or widen one"
                        )));
                    }
                    list.push(s)
                }
            }
            Ok(())
        })?;
        Ok(id)
    }

    /// Ends a silence now.
    pub fn expire(&self, id: &str, now: Nanos) -> Result<(), NotifyError> {
        self.change(now, |list| match list.iter_mut().find(|x| x.id == id) {
            Some(x) if x.from_config => Err(NotifyError::SilenceFromConfig(id.into())),
            Some(x) => {
                x.ends_at = x.ends_at.min(now);
                x.starts_at = x.starts_at.min(x.ends_at);
                Ok(())
            }
            None => Err(NotifyError::SilenceNotFound(id.into())),
        })
    }

    /// Applies `f` and saves the API silences before anyone sees the change.
    fn change(
        &self,
        now: Nanos,
        f: impl FnOnce(&mut Vec<Silence>) -> Result<(), NotifyError>,
    ) -> Result<(), NotifyError> {
        let _saving = self.save.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = self.list.read().unwrap_or_else(|e| e.into_inner()).clone();
        f(&mut next)?;
        next.retain(|s| s.from_config || s.ends_at > now - 7 * DAY);
        let stored: Vec<Stored> = next
            .iter()
            .filter(|s| !s.from_config)
            .map(|s| Stored {
                id: s.id.clone(),
                matchers: s.matchers.clone(),
                starts_at: s.starts_at,
                ends_at: s.ends_at,
                created_by: s.created_by.clone(),
                comment: s.comment.clone(),
            })
            .collect();
        let bytes = crate::format::encode(&stored)
            .map_err(|e| NotifyError::io(&self.path, std::io::Error::other(e)))?;
        write_atomically(&self.path, &bytes).map_err(|e| NotifyError::io(&self.path, e))?;
        *self.list.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(matchers: &[(&str, &str)], ends_at: &str) -> ApiSilence {
        ApiSilence {
            id: None,
            matchers: matchers
                .iter()
                .map(|(n, v)| ApiMatcher {
                    name: n.to_string(),
                    value: v.to_string(),
                    is_regex: false,
                    is_equal: true,
                })
                .collect(),
            starts_at: None,
            ends_at: ends_at.into(),
            created_by: "me".into(),
            comment: "test".into(),
            status: None,
            from_config: false,
        }
    }

    #[test]
    fn silences_match_persist_and_expire() {
        let dir = tempfile::tempdir().expect("valid in this test");
        let now = sightline_common::clock::now();
        let s = Silences::open(dir.path(), &[]).expect("valid in this test");
        let id = s
            .put(&api(&[("slo", "checkout")], &rfc3339(now + DAY)), now)
            .expect("valid in this test");
        let labels = BTreeMap::from([("slo".to_string(), "checkout".to_string())]);
        assert_eq!(s.silenced_by(&labels, now + 1), Some(id.clone()));
        // Reopened: still there.
        let s = Silences::open(dir.path(), &[]).expect("valid in this test");
        assert_eq!(s.silenced_by(&labels, now + 1), Some(id.clone()));
        s.expire(&id, now + 2).expect("valid in this test");
        assert_eq!(s.silenced_by(&labels, now + 3), None);
        assert_eq!(
            s.list(now + 3)[0]
                .status
                .as_ref()
                .expect("valid in this test")["state"],
            "expired"
        );
        assert!(matches!(
            s.expire("nope", now),
            Err(NotifyError::SilenceNotFound(_))
        ));
    }

    #[test]
    fn bad_silences_are_refused() {
        let dir = tempfile::tempdir().expect("valid in this test");
        let s = Silences::open(dir.path(), &[]).expect("valid in this test");
        let now = sightline_common::clock::now();
        let later = rfc3339(now + DAY);
        let regex = |name: &str, value: &str, equal: bool| {
            let mut a = api(&[], &later);
            a.matchers.push(ApiMatcher {
                name: name.into(),
                value: value.into(),
                is_regex: true,
                is_equal: equal,
            });
            a
        };
        let not_equal = |name: &str, value: &str| {
            let mut a = api(&[(name, value)], &later);
            a.matchers[0].is_equal = false;
            a
        };
        let many = (0..=MAX_MATCHERS)
            .map(|i| (format!("l{i}"), "x".to_string()))
            .collect::<Vec<_>>();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let mut long_comment = api(&[("slo", "x")], &later);
        long_comment.comment = "c".repeat(MAX_COMMENT_BYTES + 1);
        for (a, want) in [
            (api(&[], &later), "at least one matcher"),
            (regex("alertname", ".+", true), "match every alert"),
            (regex("slo", ".*", true), "match every alert"),
            (not_equal("slo", ""), "match every alert"),
            (regex("severity", "x|.*", true), "match every alert"),
            (
                regex("service", "nothing-like-this", false),
                "match every alert",
            ),
            (api(&[("group", "")], &later), "match every alert"),
            (regex("slo", &"a".repeat(1 << 20), true), "bytes long"),
            (regex("slo", "(", true), "invalid regex"),
            (api(&many, &later), "at most 64 matchers"),
            (long_comment, "comment is at most"),
            (
                api(&[("slo", "x")], "2200-01-01T00:00:00Z"),
                "at most 90 days",
            ),
            (api(&[("slo", "x")], "2001-01-01T00:00:00Z"), "in the past"),
            (api(&[("slo", "x")], "tomorrow"), "RFC 3339"),
            (api(&[("s-lo", "x")], &later), "invalid label name"),
        ] {
            let e = s.put(&a, now).expect_err("must be refused").to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        // Narrow ones pass, regexes included.
        for a in [
            regex("slo", "checkout-.*", true),
            api(
                &[("alertname", "SLOBurnRate"), ("severity", "page")],
                &later,
            ),
        ] {
            s.put(&a, now).expect("narrow enough");
        }
    }

    #[test]
    fn the_number_of_open_silences_is_bounded() {
        let dir = tempfile::tempdir().expect("valid in this test");
        let s = Silences::open(dir.path(), &[]).expect("valid in this test");
        let now = sightline_common::clock::now();
        let later = rfc3339(now + DAY);
        for i in 0..MAX_SILENCES {
            s.put(&api(&[("slo", &format!("s{i}"))], &later), now)
                .expect("under the limit");
        }
        let e = s
            .put(&api(&[("slo", "one-more")], &later), now)
            .expect_err("over the limit");
        assert!(e.to_string().contains("the most Sightline keeps"), "{e}");
        // Ending one makes room.
        let first = s.list(now)[0].id.clone().expect("has an id");
        s.expire(&first, now).expect("expires");
        s.put(&api(&[("slo", "one-more")], &later), now + 1)
            .expect("room again");
    }
}
