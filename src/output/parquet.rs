//! Parquet files written a batch at a time: zstd-compressed row groups of a bounded
//! number of rows, so that memory stays bounded whatever the capture's size.
#![forbid(unsafe_code)]

use std::io::Write;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

/// Rows per row group: the most the writer holds before writing.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

pub struct ParquetFile<W: Write + Send> {
    writer: ArrowWriter<W>,
    rows: u64,
}

impl<W: Write + Send> ParquetFile<W> {
    pub fn new(out: W, schema: Arc<Schema>) -> Result<Self, ParquetError> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_created_by(format!("etcd-trace {}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(ParquetFile {
            writer: ArrowWriter::try_new(out, schema, Some(props))?,
            rows: 0,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch)
    }

    /// Write the footer; the rows written.
    pub fn finish(self) -> Result<u64, ParquetError> {
        self.writer.close()?;
        Ok(self.rows)
    }
}
