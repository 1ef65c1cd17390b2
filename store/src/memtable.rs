//! The in-memory buffer of a table: batches acknowledged but not yet in Parquet.

use std::time::Instant;

use arrow::record_batch::RecordBatch;

/// Below this many rows a batch is copied into exactly sized buffers before it is kept: Arrow
/// builders start with room for ~1024 values per column, so a one-span batch would otherwise
/// hold ~250 KB of slack until its flush.
const COMPACT_BELOW_ROWS: usize = 4096;

fn compact(batch: RecordBatch) -> RecordBatch {
    if batch.num_rows() >= COMPACT_BELOW_ROWS {
        return batch;
    }
    let indices = arrow::array::UInt32Array::from_iter_values(0..batch.num_rows() as u32);
    // `take` builds new buffers of the exact size; on the (unexpected) error keep the original.
    arrow::compute::take_record_batch(&batch, &indices).unwrap_or(batch)
}

/// Batches waiting for a flush, with their size and age.
#[derive(Debug, Default)]
pub struct Memtable {
    batches: Vec<RecordBatch>,
    bytes: usize,
    rows: usize,
    oldest: Option<Instant>,
    /// WAL sequence numbers of the first and the last batch held (writes arrive in order).
    seqs: Option<(u64, u64)>,
}

/// Batches taken out of a memtable, with the WAL sequence range they came from.
#[derive(Debug, Default, Clone)]
pub struct Taken {
    pub batches: Vec<RecordBatch>,
    pub seqs: Option<(u64, u64)>,
    /// Memory and rows of `batches`, as the memtable counted them.
    pub bytes: usize,
    pub rows: usize,
}

impl Memtable {
    /// Adds the batch of the write with WAL sequence number `seq` (increasing across calls).
    pub fn push(&mut self, seq: u64, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        let batch = compact(batch);
        self.seqs = Some(match self.seqs {
            Some((first, _)) => (first, seq),
            None => (seq, seq),
        });
        self.bytes += batch.get_array_memory_size();
        self.rows += batch.num_rows();
        self.oldest.get_or_insert_with(Instant::now);
        self.batches.push(batch);
    }

    /// Takes every batch out, leaving the memtable empty.
    pub fn take(&mut self) -> Taken {
        self.oldest = None;
        Taken {
            batches: std::mem::take(&mut self.batches),
            seqs: self.seqs.take(),
            bytes: std::mem::take(&mut self.bytes),
            rows: std::mem::take(&mut self.rows),
        }
    }

    /// Puts batches back at the front (a failed flush), keeping arrival order.
    pub fn restore_front(&mut self, taken: Taken) {
        let Taken {
            mut batches,
            seqs,
            bytes,
            rows,
        } = taken;
        self.seqs = match (seqs, self.seqs) {
            (Some((first, last)), Some((_, newer))) => Some((first, newer.max(last))),
            (a, b) => a.or(b),
        };
        self.bytes += bytes;
        self.rows += rows;
        if !batches.is_empty() {
            self.oldest.get_or_insert_with(Instant::now);
        }
        batches.append(&mut self.batches);
        self.batches = batches;
    }

    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// When the oldest batch still buffered arrived.
    pub fn oldest(&self) -> Option<Instant> {
        self.oldest
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// WAL sequence numbers of the oldest and newest batch held.
    pub fn seqs(&self) -> Option<(u64, u64)> {
        self.seqs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))])
            .expect("batch")
    }

    #[test]
    fn small_batches_are_kept_without_builder_slack() {
        let mut b = arrow::array::Int64Builder::new();
        b.append_value(1);
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let loose = RecordBatch::try_new(schema, vec![Arc::new(b.finish())]).expect("batch");
        let mut m = Memtable::default();
        m.push(1, loose.clone());
        assert!(
            m.bytes() < loose.get_array_memory_size() / 4,
            "{}",
            m.bytes()
        );
        assert_eq!(m.batches()[0], loose);
    }

    #[test]
    fn take_empties_and_restore_keeps_order() {
        let mut m = Memtable::default();
        m.push(1, batch(&[1, 2]));
        m.push(2, batch(&[]));
        m.push(3, batch(&[7]));
        assert_eq!(m.rows(), 3);
        assert_eq!(m.batches().len(), 2, "empty batches are not kept");
        assert_eq!(m.seqs(), Some((1, 3)));
        let taken = m.take();
        assert_eq!(taken.seqs, Some((1, 3)));
        assert!(m.is_empty() && m.bytes() == 0 && m.oldest().is_none() && m.seqs().is_none());
        m.push(4, batch(&[3]));
        m.restore_front(taken);
        assert_eq!(m.rows(), 4);
        assert_eq!(m.seqs(), Some((1, 4)));
        let first = m.batches()[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("i64")
            .value(0);
        assert_eq!(first, 1);
    }
}
