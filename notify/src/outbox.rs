//! The durable outbox and the notification log, in `notify/` under the data directory.
//!
//! - `outbox/{seq}-{id}.json`: one file per notification not yet delivered (or given up),
//!   written to a temporary name, synced, renamed and the directory synced before the
//!   notification is handed to a sender; removed only when it is delivered, rejected or
//!   expired. After a crash every file left is sent again, in `seq` order per group.
//! - `nflog.json`: per receiver and alert group, what was last queued (the firing alerts with
//!   their content, the resolved fingerprints, when, and the notification's `seq`). It decides
//!   whether a group needs a new notification, so a restart does not notify again what was
//!   already queued. It is written after the outbox file; a notification newer than the log
//!   (a crash between the two writes) is applied to the log when the outbox is opened.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sightline_common::clock::Nanos;

use crate::error::NotifyError;
use crate::format::{self, FormatError};
use crate::message::{AlertOut, Notification};

/// A file this release must not touch: refuse to start rather than lose or repeat
/// notifications.
fn newer(path: &Path, source: FormatError) -> NotifyError {
    NotifyError::File {
        path: path.to_path_buf(),
        source,
    }
}

use sightline_common::durable::{sync_dir, write_atomically};

/// What was last queued for one receiver and group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub seq: u64,
    pub at: Nanos,
    /// The firing alerts it announced, by fingerprint (kept whole so that a restart can
    /// still announce their resolution).
    pub firing: BTreeMap<String, AlertOut>,
    pub resolved: BTreeSet<String>,
    /// The group's labels and route, to rebuild the group after a restart.
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub group_by: Vec<String>,
    pub route: String,
}

/// Key of a receiver's alert group.
pub type GroupId = (String, String);

#[derive(Debug, Default, Serialize, Deserialize)]
struct LogFile {
    entries: Vec<((String, String), LogEntry)>,
}

#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
    nflog_path: PathBuf,
}

impl LogEntry {
    /// The log entry a queued notification leaves.
    pub fn after(n: &Notification, route: &str) -> Self {
        Self {
            seq: n.seq,
            at: n.created_at,
            firing: n
                .alerts
                .iter()
                .filter(|a| a.status == "firing")
                .map(|a| (a.fingerprint.clone(), a.clone()))
                .collect(),
            resolved: n
                .alerts
                .iter()
                .filter(|a| a.status == "resolved")
                .map(|a| a.fingerprint.clone())
                .collect(),
            group_labels: n.group_labels.clone(),
            group_by: n.group_by.clone(),
            route: route.into(),
        }
    }
}

/// What the outbox holds when opened.
#[derive(Debug)]
pub struct Opened {
    pub outbox: Outbox,
    /// Undelivered notifications, oldest first.
    pub pending: Vec<Notification>,
    pub log: BTreeMap<GroupId, LogEntry>,
    /// Files that could not be read (moved aside as `*.damaged`).
    pub damaged: Vec<String>,
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir`, repairing what a crash left.
    ///
    /// # Errors
    /// [`NotifyError::Io`]; [`NotifyError::File`] for a file written by a newer release.
    pub fn open(dir: &Path) -> Result<Opened, NotifyError> {
        let outbox_dir = dir.join("outbox");
        std::fs::create_dir_all(&outbox_dir).map_err(|e| NotifyError::io(&outbox_dir, e))?;
        let nflog_path = dir.join("nflog.json");
        let mut log: BTreeMap<GroupId, LogEntry> = match std::fs::read(&nflog_path) {
            Ok(b) => match format::decode::<LogFile>(&b) {
                Ok(f) => f.entries.into_iter().collect(),
                Err(e @ FormatError::Newer { .. }) => return Err(newer(&nflog_path, e)),
                Err(e) => {
                    tracing::error!(error = %e, path = %nflog_path.display(), "notification log is damaged; starting a new one (some notifications may repeat)");
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(NotifyError::io(&nflog_path, e)),
        };
        let mut pending = Vec::new();
        let mut damaged = Vec::new();
        let entries =
            std::fs::read_dir(&outbox_dir).map_err(|e| NotifyError::io(&outbox_dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| NotifyError::io(&outbox_dir, e))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                if path.extension().is_some_and(|e| e == "tmp") {
                    let _ = std::fs::remove_file(&path); // never renamed: never queued
                }
                continue;
            }
            let problem = match std::fs::read(&path).map(|b| format::decode::<Notification>(&b)) {
                Ok(Ok(n)) => {
                    pending.push(n);
                    continue;
                }
                Ok(Err(e @ FormatError::Newer { .. })) => return Err(newer(&path, e)),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            tracing::error!(error = %problem, path = %path.display(), "cannot read a queued notification; moved aside");
            let _ = std::fs::rename(&path, path.with_extension("damaged"));
            damaged.push(path.display().to_string());
        }
        pending.sort_by_key(|n| n.seq);
        let outbox = Outbox {
            dir: outbox_dir,
            nflog_path,
        };
        // Notifications queued after the log was last written (a crash in between).
        let mut stale = false;
        for n in &pending {
            let id = (n.receiver.clone(), n.group_key.clone());
            let route = log.get(&id).map(|e| e.route.clone()).unwrap_or_default();
            if log.get(&id).is_none_or(|e| e.seq < n.seq) {
                log.insert(id, LogEntry::after(n, &route));
                stale = true;
            }
        }
        if stale {
            outbox.save_log(&log)?;
        }
        Ok(Opened {
            outbox,
            pending,
            log,
            damaged,
        })
    }

    fn path(&self, n: &Notification) -> PathBuf {
        self.dir.join(format!("{:020}-{}.json", n.seq, n.id))
    }

    /// Persists a notification (durable when this returns).
    ///
    /// # Errors
    /// [`NotifyError::Io`]: the notification is not queued.
    pub fn put(&self, n: &Notification) -> Result<(), NotifyError> {
        let path = self.path(n);
        let bytes =
            format::encode(n).map_err(|e| NotifyError::io(&path, std::io::Error::other(e)))?;
        write_atomically(&path, &bytes).map_err(|e| NotifyError::io(&path, e))
    }

    /// Forgets a notification that was delivered, rejected or given up.
    ///
    /// # Errors
    /// [`NotifyError::Io`]: it may be sent again after a restart.
    pub fn remove(&self, n: &Notification) -> Result<(), NotifyError> {
        let path = self.path(n);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir).map_err(|e| NotifyError::io(&self.dir, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NotifyError::io(&path, e)),
        }
    }

    /// Writes the notification log (durable when this returns).
    ///
    /// # Errors
    /// [`NotifyError::Io`].
    pub fn save_log(&self, log: &BTreeMap<GroupId, LogEntry>) -> Result<(), NotifyError> {
        let file = LogFile {
            entries: log.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let path = &self.nflog_path;
        let bytes =
            format::encode(&file).map_err(|e| NotifyError::io(path, std::io::Error::other(e)))?;
        write_atomically(path, &bytes).map_err(|e| NotifyError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(seq: u64, status: &str) -> Notification {
        Notification {
            id: format!("id{seq}"),
            seq,
            receiver: "r".into(),
            group_key: "g".into(),
            group_labels: BTreeMap::new(),
            group_by: Vec::new(),
            status: status.into(),
            alerts: vec![AlertOut {
                fingerprint: "f".into(),
                status: status.into(),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                starts_at: 1,
                ends_at: None,
                generator_url: String::new(),
            }],
            external_url: String::new(),
            created_at: seq as i64,
        }
    }

    #[test]
    fn pending_notifications_and_the_log_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("valid in this test");
        let o = Outbox::open(dir.path()).expect("valid in this test");
        assert!(o.pending.is_empty());
        let (a, b) = (n(1, "firing"), n(2, "resolved"));
        o.outbox.put(&b).expect("valid in this test");
        o.outbox.put(&a).expect("valid in this test");
        // A crash before the log was written: the log is rebuilt from the outbox.
        std::fs::write(dir.path().join("outbox/junk.tmp"), b"half").expect("valid in this test");
        std::fs::write(
            dir.path().join("outbox/00000000000000000009-bad.json"),
            b"{",
        )
        .expect("valid in this test");
        let o = Outbox::open(dir.path()).expect("valid in this test");
        assert_eq!(o.pending, vec![a.clone(), b.clone()]);
        assert_eq!(o.damaged.len(), 1);
        let e = &o.log[&("r".to_string(), "g".to_string())];
        assert_eq!((e.seq, e.firing.len(), e.resolved.len()), (2, 0, 1));
        o.outbox.remove(&a).expect("valid in this test");
        o.outbox.remove(&a).expect("valid in this test");
        let o = Outbox::open(dir.path()).expect("valid in this test");
        assert_eq!(o.pending, vec![b]);
        assert!(!dir.path().join("outbox/junk.tmp").exists());
    }

    #[test]
    fn files_of_a_newer_release_stop_the_start_and_stay_as_they_are() {
        let dir = tempfile::tempdir().expect("valid in this test");
        Outbox::open(dir.path()).expect("valid in this test");
        let queued = dir.path().join("outbox/00000000000000000001-x.json");
        std::fs::write(&queued, br#"{"format":99,"data":{}}"#).expect("valid in this test");
        let e = Outbox::open(dir.path()).expect_err("newer");
        assert!(e.to_string().contains("newer release"), "{e}");
        assert!(queued.exists(), "not moved aside");
        std::fs::remove_file(&queued).expect("valid in this test");
        std::fs::write(dir.path().join("nflog.json"), br#"{"format":3,"data":{}}"#)
            .expect("valid in this test");
        let e = Outbox::open(dir.path()).expect_err("newer");
        assert!(e.to_string().contains("nflog.json"), "{e}");
    }
}
