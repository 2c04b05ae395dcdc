//! Result encodings beyond JSON: CSV, Arrow IPC stream and Parquet, written batch by batch into
//! any `Write` so large results stream instead of buffering. Used by `/api/sql` (CSV, Arrow), the
//! export API and the `export` command (Parquet). CSV writes times with a time zone as RFC 3339
//! UTC text (`2026-11-21T14:58:51.967000Z`, as the JSON answers do), nested values as their text
//! form; Parquet row groups are cut at `PARQUET_ROW_GROUP_BYTES` or 128 Ki rows, whichever comes
//! first (checked between the batches DuckDB hands over, 2,048 rows each), so wide rows do not
//! buffer gigabytes per row group.

use std::io::Write;
use std::sync::Arc;

use duckdb::arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use duckdb::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use duckdb::arrow::util::display::{ArrayFormatter, FormatOptions};

/// Errors of encoding results.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("unknown format {0:?} (use json, csv, arrow or parquet)")]
    Unknown(String),
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// A result encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Arrow,
    Parquet,
}

impl Format {
    pub const ARROW_MIME: &'static str = "application/vnd.apache.arrow.stream";
    pub const PARQUET_MIME: &'static str = "application/vnd.apache.parquet";

    /// From `?format=` (json, csv, arrow, parquet).
    pub fn from_name(s: &str) -> Result<Format, FormatError> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "arrow" | "arrows" | "ipc" => Ok(Format::Arrow),
            "parquet" => Ok(Format::Parquet),
            other => Err(FormatError::Unknown(other.to_string())),
        }
    }

    /// From an `Accept` header: the first media type we can produce, JSON otherwise.
    pub fn from_accept(accept: &str) -> Format {
        for part in accept.split(',') {
            let mime = part.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            match mime.as_str() {
                "text/csv" => return Format::Csv,
                Self::ARROW_MIME | "application/vnd.apache.arrow.file" => return Format::Arrow,
                Self::PARQUET_MIME | "application/x-parquet" => return Format::Parquet,
                "application/json" => return Format::Json,
                _ => {}
            }
        }
        Format::Json
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => Self::ARROW_MIME,
            Format::Parquet => Self::PARQUET_MIME,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Arrow => "arrows",
            Format::Parquet => "parquet",
        }
    }
}

/// Writes record batches of one schema in some encoding.
pub trait BatchWriter: Send {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError>;
    /// True once the writer wants no more rows (a JSON answer at its caps).
    fn full(&self) -> bool {
        false
    }
    /// Write any trailer and flush.
    fn finish(self: Box<Self>) -> Result<(), FormatError>;
}

fn enc<E: std::fmt::Display>(e: E) -> FormatError {
    FormatError::Encode(e.to_string())
}

/// Most (estimated, uncompressed) bytes a Parquet row group buffers before it is written out.
pub const PARQUET_ROW_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// What a streamed body carries after its data when the query fails midway (the body is then
/// aborted): a last line `#ERROR: <message>` for CSV, nothing for the binary formats (their
/// readers fail on the missing end-of-stream marker / footer anyway).
pub fn error_trailer(format: Format, message: &str) -> Option<bytes::Bytes> {
    match format {
        Format::Csv => {
            let one_line: String = message.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
            Some(bytes::Bytes::from(format!("\n#ERROR: {one_line}\n")))
        }
        _ => None,
    }
}

/// A writer for `format` over `out`. JSON answers have their own (`store::stream::JsonAnswer`).
pub fn writer<W: Write + Send + 'static>(
    format: Format,
    schema: &SchemaRef,
    out: W,
) -> Result<Box<dyn BatchWriter>, FormatError> {
    match format {
        Format::Csv => Ok(Box::new(CsvWriter { out, header: true, schema: csv_schema(schema) })),
        Format::Arrow => {
            Ok(Box::new(ArrowWriter(arrow_ipc::writer::StreamWriter::try_new(out, schema.as_ref()).map_err(enc)?)))
        }
        Format::Parquet => parquet_writer(schema, out, PARQUET_ROW_GROUP_BYTES),
        Format::Json => Err(FormatError::Unknown("json is not a streamed format".into())),
    }
}

fn parquet_writer<W: Write + Send + 'static>(
    schema: &SchemaRef,
    out: W,
    row_group_bytes: usize,
) -> Result<Box<dyn BatchWriter>, FormatError> {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_max_row_group_row_count(Some(128 * 1024))
        .set_max_row_group_bytes(Some(row_group_bytes))
        .build();
    let w = parquet::arrow::ArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(enc)?;
    Ok(Box::new(ParquetWriter(w)))
}

/// CSV: nested values (lists, structs, maps) are written as their text form.
struct CsvWriter<W: Write + Send> {
    out: W,
    header: bool,
    schema: SchemaRef,
}

fn flat(t: &DataType) -> bool {
    !matches!(
        t,
        DataType::Timestamp(_, Some(_))
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(_, _)
            | DataType::Struct(_)
            | DataType::Map(_, _)
            | DataType::Union(_, _)
            | DataType::Dictionary(_, _)
            | DataType::Interval(_)
            | DataType::Duration(_)
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
            | DataType::Decimal256(_, _)
    )
}

fn csv_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| if flat(f.data_type()) { f.as_ref().clone() } else { Field::new(f.name(), DataType::Utf8, true) })
            .collect::<Vec<_>>(),
    ))
}

fn as_text(a: &ArrayRef) -> Result<ArrayRef, FormatError> {
    if let DataType::Timestamp(unit, Some(_)) = a.data_type() {
        // arrow's formatter needs chrono-tz for named zones ("UTC"): stored times are UTC instants.
        use duckdb::arrow::array::AsArray;
        use duckdb::arrow::datatypes::*;
        let (per_sec, values): (i64, Vec<Option<i64>>) = match unit {
            TimeUnit::Second => (1, a.as_primitive::<TimestampSecondType>().iter().collect()),
            TimeUnit::Millisecond => (1_000, a.as_primitive::<TimestampMillisecondType>().iter().collect()),
            TimeUnit::Microsecond => (1_000_000, a.as_primitive::<TimestampMicrosecondType>().iter().collect()),
            TimeUnit::Nanosecond => (1_000_000_000, a.as_primitive::<TimestampNanosecondType>().iter().collect()),
        };
        let mut b = StringBuilder::with_capacity(a.len(), a.len() * 28);
        for v in values {
            match v {
                Some(v) => b.append_value(crate::store::reader::rfc3339(v, per_sec)),
                None => b.append_null(),
            }
        }
        return Ok(Arc::new(b.finish()));
    }
    let f = ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default()).map_err(enc)?;
    let mut b = StringBuilder::with_capacity(a.len(), a.len() * 16);
    for i in 0..a.len() {
        if a.is_null(i) {
            b.append_null();
        } else {
            b.append_value(f.value(i).to_string());
        }
    }
    Ok(Arc::new(b.finish()))
}

impl<W: Write + Send> BatchWriter for CsvWriter<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        let cols = batch
            .columns()
            .iter()
            .map(|c| if flat(c.data_type()) { Ok(c.clone()) } else { as_text(c) })
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new(self.schema.clone(), cols).map_err(enc)?;
        let mut w = arrow_csv::WriterBuilder::new().with_header(self.header).build(&mut self.out);
        w.write(&batch).map_err(enc)?;
        self.header = false;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), FormatError> {
        if self.header {
            // An empty result still gets its header line.
            let mut w = arrow_csv::WriterBuilder::new().with_header(true).build(&mut self.out);
            w.write(&RecordBatch::new_empty(self.schema.clone())).map_err(enc)?;
            drop(w);
        }
        self.out.flush().map_err(enc)
    }
}

struct ArrowWriter<W: Write + Send>(arrow_ipc::writer::StreamWriter<W>);

impl<W: Write + Send> BatchWriter for ArrowWriter<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        self.0.write(batch).map_err(enc)
    }

    fn finish(mut self: Box<Self>) -> Result<(), FormatError> {
        self.0.finish().map_err(enc)?;
        self.0.get_mut().flush().map_err(enc)
    }
}

struct ParquetWriter<W: Write + Send>(parquet::arrow::ArrowWriter<W>);

impl<W: Write + Send> BatchWriter for ParquetWriter<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        self.0.write(batch).map_err(enc)
    }

    fn finish(self: Box<Self>) -> Result<(), FormatError> {
        self.0.close().map_err(enc)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duckdb::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};

    fn sample() -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("s", Arc::new(StringArray::from(vec![Some("a,b"), None])) as ArrayRef),
            ("t", Arc::new(TimestampMicrosecondArray::from(vec![0, 1_000_000])) as ArrayRef),
        ])
        .expect("batch")
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn csv_has_one_header_and_quotes() {
        let b = sample();
        let out = Shared::default();
        let mut w = writer(Format::Csv, &b.schema(), out.clone()).expect("writer");
        w.write(&b).expect("write");
        w.write(&b).expect("write");
        w.finish().expect("finish");
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "n,s,t");
        assert_eq!(lines.len(), 5);
        assert!(lines[1].starts_with("1,\"a,b\",1970-01-01T00:00:00"), "{}", lines[1]);
    }

    #[test]
    fn arrow_stream_round_trips() {
        let b = sample();
        let out = Shared::default();
        let mut w = writer(Format::Arrow, &b.schema(), out.clone()).expect("writer");
        w.write(&b).expect("write");
        w.finish().expect("finish");
        let bytes = out.0.lock().expect("lock").clone();
        let r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).expect("reader");
        let batches: Vec<RecordBatch> = r.collect::<Result<_, _>>().expect("batches");
        assert_eq!(batches, vec![b]);
    }

    #[test]
    fn csv_writes_utc_timestamps_as_rfc3339() {
        let t = TimestampMicrosecondArray::from(vec![Some(1_795_273_131_967_000), None]).with_timezone("UTC");
        let b = RecordBatch::try_from_iter(vec![("t", Arc::new(t) as ArrayRef)]).expect("batch");
        let out = Shared::default();
        let mut w = writer(Format::Csv, &b.schema(), out.clone()).expect("writer");
        w.write(&b).expect("a TIMESTAMPTZ column encodes");
        w.finish().expect("finish");
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8");
        assert_eq!(text, "t\n2026-11-21T14:58:51.967000Z\n\"\"\n");
    }

    #[test]
    fn parquet_row_groups_are_cut_by_bytes() {
        use parquet::file::reader::FileReader;
        // 64 batches of 8 rows of 16 KiB: one row group by the row count alone, about 8 by 1 MiB.
        // Distinct values (a dictionary of one repeated value would be tiny).
        let batch = |k: usize| {
            let s = StringArray::from(
                (0..8).map(|i| Some(format!("{k:04}{i}{}", "x".repeat(16 * 1024)))).collect::<Vec<_>>(),
            );
            RecordBatch::try_from_iter(vec![("s", Arc::new(s) as ArrayRef)]).expect("batch")
        };
        let out = Shared::default();
        let mut w = parquet_writer(&batch(0).schema(), out.clone(), 1024 * 1024).expect("writer");
        for k in 0..64 {
            w.write(&batch(k)).expect("write");
        }
        w.finish().expect("finish");
        let bytes = bytes::Bytes::from(out.0.lock().expect("lock").clone());
        let r = parquet::file::serialized_reader::SerializedFileReader::new(bytes).expect("parquet");
        let groups = r.metadata().num_row_groups();
        assert!((7..=10).contains(&groups), "{groups} row groups");
        let rows: i64 = r.metadata().row_groups().iter().map(|g| g.num_rows()).sum();
        assert_eq!(rows, 512);
    }

    #[test]
    fn error_trailer_is_one_csv_line() {
        assert_eq!(error_trailer(Format::Csv, "boom\nagain").as_deref(), Some(&b"\n#ERROR: boom again\n"[..]));
        assert!(error_trailer(Format::Parquet, "x").is_none());
    }

    #[test]
    fn accept_header_negotiation() {
        assert_eq!(Format::from_accept("text/csv"), Format::Csv);
        assert_eq!(Format::from_accept("application/vnd.apache.arrow.stream;q=1, */*"), Format::Arrow);
        assert_eq!(Format::from_accept("*/*"), Format::Json);
        assert_eq!(Format::from_name("CSV").expect("csv"), Format::Csv);
        assert!(Format::from_name("xml").is_err());
    }
}
