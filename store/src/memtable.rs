//! The in-memory buffer of a table: batches acknowledged but not yet in Parquet.

use std::time::Instant;

use arrow::record_batch::RecordBatch;

/// Batches waiting for a flush, with their size and age.
#[derive(Debug, Default)]
pub struct Memtable {
    batches: Vec<RecordBatch>,
    bytes: usize,
    rows: usize,
    oldest: Option<Instant>,
}

impl Memtable {
    pub fn push(&mut self, batch: RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        self.bytes += batch.get_array_memory_size();
        self.rows += batch.num_rows();
        self.oldest.get_or_insert_with(Instant::now);
        self.batches.push(batch);
    }

    /// Takes every batch out, leaving the memtable empty.
    pub fn take(&mut self) -> Vec<RecordBatch> {
        self.bytes = 0;
        self.rows = 0;
        self.oldest = None;
        std::mem::take(&mut self.batches)
    }

    /// Puts batches back at the front (a failed flush), keeping arrival order.
    pub fn restore_front(&mut self, mut batches: Vec<RecordBatch>) {
        for b in &batches {
            self.bytes += b.get_array_memory_size();
            self.rows += b.num_rows();
        }
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
    fn take_empties_and_restore_keeps_order() {
        let mut m = Memtable::default();
        m.push(batch(&[1, 2]));
        m.push(batch(&[]));
        assert_eq!(m.rows(), 2);
        assert_eq!(m.batches().len(), 1, "empty batches are not kept");
        let taken = m.take();
        assert!(m.is_empty() && m.bytes() == 0 && m.oldest().is_none());
        m.push(batch(&[3]));
        m.restore_front(taken);
        assert_eq!(m.rows(), 3);
        let first = m.batches()[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("i64")
            .value(0);
        assert_eq!(first, 1);
    }
}
