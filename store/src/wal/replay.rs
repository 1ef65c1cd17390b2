//! Reading the log back at start: every record in order, and the repair of what a crash or
//! damage left behind.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::SEGMENT_EXT;
use super::record::{HEADER_LEN, MAGIC, MAX_RECORD_BYTES, WalRecord, decode_payload};
use crate::error::{Result, StoreError};

/// Why reading a segment stopped before its end.
#[derive(Debug)]
pub(super) enum Stop {
    /// The last record is incomplete: what a crash in the middle of an append leaves.
    Incomplete(String),
    /// A complete record is damaged (checksum, magic, content).
    Damaged(String),
    /// A complete, intact record of a newer release: nothing may be cut or set aside.
    Newer(String),
}

/// Reads records from a segment until its end or the first bad record.
/// Returns the records, the offset after the last good one, and what stopped the reading.
pub(super) fn read_segment(path: &Path) -> Result<(Vec<WalRecord>, u64, Option<Stop>)> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| StoreError::io(path, e))?;
    let mut records = Vec::new();
    let mut pos = 0usize;
    let problem = loop {
        if pos == bytes.len() {
            break None;
        }
        if bytes.len() - pos < HEADER_LEN {
            break Some(Stop::Incomplete(format!(
                "incomplete record header at offset {pos}"
            )));
        }
        let h = &bytes[pos..pos + HEADER_LEN];
        if bytes[pos..].iter().all(|b| *b == 0) {
            // A power loss can leave a zero-filled tail after the last complete write.
            break Some(Stop::Incomplete(format!(
                "zero-filled tail at offset {pos}"
            )));
        }
        if &h[0..4] != MAGIC || h[4] == 0 {
            break Some(Stop::Damaged(format!(
                "bad magic or format at offset {pos}"
            )));
        }
        let len = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let crc = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if len > MAX_RECORD_BYTES {
            break Some(Stop::Damaged(format!(
                "record at offset {pos} claims {len} bytes"
            )));
        }
        if bytes.len() - pos - HEADER_LEN < len {
            break Some(Stop::Incomplete(format!(
                "record at offset {pos} is cut short"
            )));
        }
        let payload = &bytes[pos + HEADER_LEN..pos + HEADER_LEN + len];
        if crc32fast::hash(payload) != crc {
            // A checksum mismatch on the very last record is a torn write too.
            let reason = format!("checksum mismatch at offset {pos}");
            break Some(if pos + HEADER_LEN + len == bytes.len() {
                Stop::Incomplete(reason)
            } else {
                Stop::Damaged(reason)
            });
        }
        match decode_payload(payload, h[4], h[5]) {
            Ok(r) => records.push(r),
            Err(e) if e.is_newer() => {
                break Some(Stop::Newer(format!("record at offset {pos}: {e}")));
            }
            Err(e) => {
                break Some(Stop::Damaged(format!(
                    "undecodable record at offset {pos}: {e}"
                )));
            }
        }
        pos += HEADER_LEN + len;
    };
    Ok((records, pos as u64, problem))
}

pub(super) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.{SEGMENT_EXT}")
}

pub(super) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let path = entry.map_err(|e| StoreError::io(dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(first) = name
            .strip_suffix(&format!(".{SEGMENT_EXT}"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            segments.push((first, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// What replay found.
#[derive(Debug, Default, Clone)]
pub struct ReplayReport {
    pub segments: usize,
    pub records: usize,
    pub last_seq: u64,
    /// Segments whose tail was cut (a crash in the middle of an append).
    pub torn_tails: usize,
    /// Copies (in `corrupt/`) of segments with a damaged record inside.
    pub quarantined: Vec<PathBuf>,
}

/// Reads every record of the WAL in `dir`, in order, handing each to `apply`. Repairs what a
/// crash can leave behind: a torn tail is cut; a damaged segment is copied to `corrupt/` and
/// cut before the damage (its good records were replayed), with a warning. A record written by
/// a newer release stops the replay with [`StoreError::NewerFormat`], changing nothing.
pub fn replay(dir: &Path, mut apply: impl FnMut(WalRecord)) -> Result<ReplayReport> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    let segments = list_segments(dir)?;
    let mut report = ReplayReport {
        segments: segments.len(),
        ..Default::default()
    };
    let n = segments.len();
    for (i, (_, path)) in segments.into_iter().enumerate() {
        let (records, good_len, problem) = read_segment(&path)?;
        for r in records {
            report.records += 1;
            report.last_seq = report.last_seq.max(r.seq);
            apply(r);
        }
        let Some(stop) = problem else { continue };
        if let Stop::Newer(problem) = &stop {
            return Err(StoreError::NewerFormat {
                path: path.clone(),
                problem: problem.clone(),
            });
        }
        let file_len = std::fs::metadata(&path)
            .map_err(|e| StoreError::io(&path, e))?
            .len();
        // A crash mid-append leaves an incomplete last record in the last segment. Anything
        // else is damage: keep a copy for inspection. Either way the segment is cut after its
        // last good record, which stays in place: its records are only in memory until the
        // next flush, and must survive another crash.
        match (&stop, i + 1 == n) {
            (Stop::Incomplete(problem), true) => {
                tracing::warn!(segment = %path.display(), %problem, cut_bytes = file_len - good_len,
                    "cutting the torn tail of the write-ahead log");
                report.torn_tails += 1;
            }
            (Stop::Incomplete(problem) | Stop::Damaged(problem) | Stop::Newer(problem), _) => {
                let corrupt_dir = dir.join("corrupt");
                std::fs::create_dir_all(&corrupt_dir)
                    .map_err(|e| StoreError::io(&corrupt_dir, e))?;
                let target = corrupt_dir.join(path.file_name().unwrap_or_default());
                tracing::warn!(segment = %path.display(), %problem, copied_to = %target.display(),
                    "write-ahead log segment is damaged; its readable records were replayed, a \
                     copy was kept for inspection and the segment was cut before the damage");
                std::fs::copy(&path, &target).map_err(|e| StoreError::io(&target, e))?;
                sightline_common::durable::sync_dir(&corrupt_dir)
                    .map_err(|e| StoreError::io(&corrupt_dir, e))?;
                report.quarantined.push(target);
            }
        }
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        f.set_len(good_len).map_err(|e| StoreError::io(&path, e))?;
        f.sync_all().map_err(|e| StoreError::io(&path, e))?;
    }
    Ok(report)
}
