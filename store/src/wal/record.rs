//! The byte format of a WAL record, and its versions.
//!
//! ```text
//! header (16 bytes): magic "SLWL" | format u8 | flags u8 | 2 reserved bytes
//!                    | payload length u32 LE | CRC-32 of the payload u32 LE
//! payload:           seq u64 LE | entries (zstd-compressed when flags bit 0 is set)
//! entries, format 2: count u16 LE | per entry: table u8 | schema version u16 LE
//!                    | length u32 LE | Arrow IPC stream
//! entries, format 1: count u16 LE | per entry: table u8 | length u32 LE | Arrow IPC stream
//!                    (every table at schema version 1)
//! ```
//!
//! Records of every earlier format are read; batches of an earlier schema version get nulls in
//! the columns added since ([`crate::schema::conform`]). A record of a later format or schema
//! version was written by a newer release and is refused as such ([`RecordError::is_newer`]),
//! never mistaken for damage.

use std::io::Cursor;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

use crate::error::{Result, StoreError};
use crate::schema::{self, SchemaError, Table};

pub(super) const MAGIC: &[u8; 4] = b"SLWL";
/// The record format this release writes.
pub(super) const FORMAT: u8 = 2;
pub(super) const HEADER_LEN: usize = 16;
/// No single record may be larger than this (a bound for replay of a damaged length field).
pub(super) const MAX_RECORD_BYTES: usize = 1 << 30;
/// Flags bit: the entries are zstd-compressed.
pub(super) const FLAG_ZSTD: u8 = 1;
/// Fast zstd: Arrow IPC of telemetry shrinks several times even at level 1.
const ZSTD_LEVEL: i32 = 1;

/// One logged write.
#[derive(Debug, Clone)]
pub struct WalRecord {
    pub seq: u64,
    pub batches: Vec<(Table, RecordBatch)>,
}

/// Why a record's payload cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the payload ends early ({0})")]
    Truncated(&'static str),
    #[error("bad zstd entries: {0}")]
    Zstd(std::io::Error),
    #[error("unknown table code {0}")]
    UnknownTable(u8),
    #[error("bad Arrow IPC: {0}")]
    Ipc(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("{0} trailing bytes after the last entry")]
    TrailingBytes(usize),
    #[error("record format {0} is newer than this release reads (up to {FORMAT})")]
    NewerFormat(u8),
}

impl RecordError {
    /// Whether the record was written by a newer release (rather than damaged).
    pub fn is_newer(&self) -> bool {
        matches!(
            self,
            RecordError::NewerFormat(_) | RecordError::Schema(SchemaError::Newer { .. })
        )
    }
}

fn table_code(t: Table) -> u8 {
    match t {
        Table::Spans => 1,
        Table::Logs => 2,
        Table::Metrics => 3,
        Table::TraceFragments => 4,
        Table::SloCounts => 5,
        Table::SloAlerts => 6,
        Table::Notifications => 7,
        Table::Audit => 8,
    }
}

fn table_of(code: u8) -> Option<Table> {
    Table::ALL.into_iter().find(|t| table_code(*t) == code)
}

/// Encodes and compresses the entries of a record (everything but the sequence number).
pub fn encode_entries(batches: &[(Table, RecordBatch)]) -> Result<Vec<u8>> {
    let raw = encode_entries_raw(batches)?;
    zstd::bulk::compress(&raw, ZSTD_LEVEL).map_err(|e| StoreError::io("wal", e))
}

pub(super) fn encode_entries_raw(batches: &[(Table, RecordBatch)]) -> Result<Vec<u8>> {
    let count = u16::try_from(batches.len()).map_err(|_| StoreError::SchemaMismatch {
        table: "wal",
        reason: "too many batches in one write".into(),
    })?;
    let mut out = Vec::new();
    out.extend_from_slice(&count.to_le_bytes());
    for (table, batch) in batches {
        let mut ipc = Vec::new();
        {
            let mut w = StreamWriter::try_new(&mut ipc, &batch.schema())?;
            w.write(batch)?;
            w.finish()?;
        }
        out.push(table_code(*table));
        out.extend_from_slice(&table.schema_version().to_le_bytes());
        out.extend_from_slice(&(ipc.len() as u32).to_le_bytes());
        out.extend_from_slice(&ipc);
    }
    Ok(out)
}

/// Frames a record of the current format.
pub(super) fn frame(seq: u64, entries: &[u8], out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(8 + entries.len());
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.extend_from_slice(entries);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&[FLAG_ZSTD, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Decodes a payload (seq + entries) of record format `format` into a record of the current
/// schemas.
pub fn decode_payload(
    payload: &[u8],
    format: u8,
    flags: u8,
) -> std::result::Result<WalRecord, RecordError> {
    if format > FORMAT {
        return Err(RecordError::NewerFormat(format));
    }
    if payload.len() < 8 {
        return Err(RecordError::Truncated("sequence number"));
    }
    let (seq, entries) = payload.split_at(8);
    let seq = u64::from_le_bytes(seq.try_into().map_err(|_| RecordError::Truncated("seq"))?);
    if flags & FLAG_ZSTD == 0 {
        return decode_entries(seq, format, entries);
    }
    let raw = zstd::bulk::decompress(entries, MAX_RECORD_BYTES).map_err(RecordError::Zstd)?;
    decode_entries(seq, format, &raw)
}

/// Takes `n` bytes off the front of `buf`.
fn take<'a>(
    buf: &mut &'a [u8],
    n: usize,
    what: &'static str,
) -> std::result::Result<&'a [u8], RecordError> {
    if buf.len() < n {
        return Err(RecordError::Truncated(what));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn decode_entries(
    seq: u64,
    format: u8,
    entries: &[u8],
) -> std::result::Result<WalRecord, RecordError> {
    let mut buf = entries;
    let c = take(&mut buf, 2, "entry count")?;
    let count = u16::from_le_bytes([c[0], c[1]]);
    let mut batches = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let code = take(&mut buf, 1, "table code")?[0];
        let table = table_of(code).ok_or(RecordError::UnknownTable(code))?;
        let version = match format {
            1 => 1,
            _ => {
                let v = take(&mut buf, 2, "schema version")?;
                u16::from_le_bytes([v[0], v[1]])
            }
        };
        let len = take(&mut buf, 4, "entry length")?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let ipc = take(&mut buf, len, "entry")?;
        for batch in StreamReader::try_new(Cursor::new(ipc), None)? {
            batches.push((table, schema::conform(table, version, batch?)?));
        }
    }
    if !buf.is_empty() {
        return Err(RecordError::TrailingBytes(buf.len()));
    }
    Ok(WalRecord { seq, batches })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_garbage_is_refused() {
        let entries =
            encode_entries(&[(Table::TraceFragments, crate::testing::fragments(9, 1, 9))])
                .expect("encode");
        let mut payload = 5u64.to_le_bytes().to_vec();
        payload.extend_from_slice(&entries);
        let r = decode_payload(&payload, FORMAT, FLAG_ZSTD).expect("decode");
        assert_eq!(r.seq, 5);
        assert_eq!(
            crate::testing::ids_of(&r.batches[0].1),
            vec![format!("{:032x}", 9)]
        );
        assert!(decode_payload(&payload[..payload.len() - 3], FORMAT, FLAG_ZSTD).is_err());
        assert!(decode_payload(b"short", FORMAT, FLAG_ZSTD).is_err());
        // Uncompressed entries decode too, and a wrong table code is caught.
        let mut raw = 5u64.to_le_bytes().to_vec();
        raw.extend_from_slice(
            &encode_entries_raw(&[(Table::TraceFragments, crate::testing::fragments(9, 1, 9))])
                .expect("encode"),
        );
        assert_eq!(decode_payload(&raw, FORMAT, 0).expect("decode").seq, 5);
        raw[10] = 1; // spans: another schema
        assert!(decode_payload(&raw, FORMAT, 0).is_err());
    }
}
