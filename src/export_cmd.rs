//! The `agent-console export` command: one table (optionally a time range) to a Parquet, CSV or
//! Arrow file. Straight from the database file when no collector holds it (DuckDB allows one
//! process per file), or through a running collector's `GET /api/export` with `--url`.

use std::path::PathBuf;

use duckdb::{AccessMode, Config, Connection};

use crate::api::export::{export_sql, instant};
use crate::config::ExportArgs;
use crate::formats::{self, Format};

/// Errors of the export command.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot open {path}: {message} (is a collector running on it? then add --url http://127.0.0.1:4318)")]
    Open { path: PathBuf, message: String },
    #[error("query failed: {0}")]
    Query(String),
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("export request failed: {0}")]
    Http(String),
}

/// What was written.
#[derive(Debug)]
pub struct Exported {
    pub path: PathBuf,
    pub rows: Option<u64>,
    pub bytes: u64,
}

fn file_name(args: &ExportArgs, format: Format) -> String {
    let clean =
        |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect::<String>();
    let mut name = args.table.clone();
    if let Some(f) = &args.from {
        name.push_str(&format!("_from_{}", clean(f)));
    }
    if let Some(t) = &args.to {
        name.push_str(&format!("_to_{}", clean(t)));
    }
    format!("{name}.{}", format.extension())
}

pub async fn run(args: ExportArgs) -> Result<Exported, ExportError> {
    let format = Format::from_name(&args.format).map_err(|e| ExportError::Invalid(e.to_string()))?;
    if format == Format::Json {
        return Err(ExportError::Invalid("export writes parquet, csv or arrow".into()));
    }
    let from = instant("from", args.from.as_deref()).map_err(ExportError::Invalid)?;
    let to = instant("to", args.to.as_deref()).map_err(ExportError::Invalid)?;
    let (sql, params) = export_sql(&args.table, from, to).map_err(ExportError::Invalid)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| ExportError::Write { path: args.out.clone(), message: e.to_string() })?;
    let path = args.out.join(file_name(&args, format));
    match &args.url {
        Some(url) => via_api(&args, url, format, path).await,
        None => {
            let db = args.data_dir.join("agent-console.duckdb");
            tokio::task::spawn_blocking(move || direct(db, sql, params, format, path))
                .await
                .map_err(|e| ExportError::Query(e.to_string()))?
        }
    }
}

fn direct(
    db: PathBuf,
    sql: String,
    params: Vec<Option<String>>,
    format: Format,
    path: PathBuf,
) -> Result<Exported, ExportError> {
    if !db.exists() {
        return Err(ExportError::Open { path: db, message: "no database there".into() });
    }
    let open_err = |e: duckdb::Error| ExportError::Open { path: db.clone(), message: e.to_string() };
    let config = Config::default()
        .access_mode(AccessMode::ReadOnly)
        .and_then(|c| c.enable_autoload_extension(false))
        .map_err(open_err)?;
    let conn = Connection::open_with_flags(&db, config).map_err(open_err)?;
    let mut stmt = conn.prepare(&sql).map_err(|e| ExportError::Query(e.to_string()))?;
    let stream =
        stmt.stream_arrow(duckdb::params_from_iter(params.iter())).map_err(|e| ExportError::Query(e.to_string()))?;
    let schema = stream.get_schema();
    let write_err = |m: String| ExportError::Write { path: path.clone(), message: m };
    let file = std::fs::File::create(&path).map_err(|e| write_err(e.to_string()))?;
    let mut w =
        formats::writer(format, &schema, std::io::BufWriter::new(file)).map_err(|e| write_err(e.to_string()))?;
    let mut rows = 0u64;
    for batch in stream {
        let batch = batch.map_err(|e| ExportError::Query(e.to_string()))?;
        rows += batch.num_rows() as u64;
        w.write(&batch).map_err(|e| write_err(e.to_string()))?;
    }
    w.finish().map_err(|e| write_err(e.to_string()))?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    Ok(Exported { path, rows: Some(rows), bytes })
}

async fn via_api(args: &ExportArgs, url: &str, format: Format, path: PathBuf) -> Result<Exported, ExportError> {
    use std::io::Write;
    let mut query = vec![("table", args.table.clone()), ("format", format.extension().replace("arrows", "arrow"))];
    if let Some(f) = &args.from {
        query.push(("from", f.clone()));
    }
    if let Some(t) = &args.to {
        query.push(("to", t.clone()));
    }
    let client = reqwest::Client::new();
    let endpoint = url::Url::parse_with_params(&format!("{}/api/export", url.trim_end_matches('/')), &query)
        .map_err(|e| ExportError::Invalid(format!("bad --url {url}: {e}")))?;
    let mut req = client.get(endpoint);
    if let Some(t) = &args.read_token {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send().await.map_err(|e| ExportError::Http(e.to_string()))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(ExportError::Http(format!("{status}: {body}")));
    }
    let write_err = |m: String| ExportError::Write { path: path.clone(), message: m };
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| write_err(e.to_string()))?);
    let mut bytes = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| ExportError::Http(e.to_string()))? {
        bytes += chunk.len() as u64;
        file.write_all(&chunk).map_err(|e| write_err(e.to_string()))?;
    }
    file.flush().map_err(|e| write_err(e.to_string()))?;
    Ok(Exported { path, rows: None, bytes })
}
