//! Versioned schema migrations. Each migration is a SQL file under `store/schema/`, applied once in
//! order inside a transaction and recorded in `schema_migrations` with the mapping version.

use duckdb::Connection;

use super::StoreError;
use crate::model::normalize::MAPPING_VERSION;

/// (version, name, SQL). Append only: never edit a released migration.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("schema/0001_init.sql")),
    (2, "utc_timestamps", include_str!("schema/0002_utc_timestamps.sql")),
    (3, "prices", include_str!("schema/0003_prices.sql")),
    (4, "cost_hourly", include_str!("schema/0004_cost_hourly.sql")),
    (5, "session_state", include_str!("schema/0005_session_state.sql")),
    (6, "ingest_log", include_str!("schema/0006_ingest_log.sql")),
    (7, "control", include_str!("schema/0007_control.sql")),
    (9, "tasks", include_str!("schema/0009_tasks.sql")),
    (10, "alerts", include_str!("schema/0010_alerts.sql")),
    (11, "billing", include_str!("schema/0011_billing.sql")),
    (12, "span_fallback", include_str!("schema/0012_span_fallback.sql")),
    (13, "json_zstd", include_str!("schema/0013_json_zstd.sql")),
    (14, "checkpoint_guard", include_str!("schema/0014_checkpoint_guard.sql")),
];

/// Bring the database up to the newest schema; returns the version now in force.
pub fn migrate(conn: &Connection) -> Result<i32, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, mapping_version INTEGER,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    let current: i32 = conn.query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |r| r.get(0))?;
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
        tracing::info!(version, name, "applying schema migration");
        conn.execute_batch("BEGIN TRANSACTION")?;
        let applied = conn.execute_batch(sql).and_then(|_| {
            conn.execute(
                "INSERT INTO schema_migrations (version, name, mapping_version) VALUES (?, ?, ?)",
                duckdb::params![version, name, MAPPING_VERSION],
            )
        });
        match applied {
            Ok(_) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(StoreError::Migration { version: *version, message: e.to_string() });
            }
        }
    }
    Ok(MIGRATIONS.last().map(|m| m.0).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_a_version_1_database_keeping_its_rows() {
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,
                mapping_version INTEGER, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());",
        )
        .expect("table");
        conn.execute_batch(MIGRATIONS[0].2).expect("v1");
        conn.execute_batch(
            "INSERT INTO schema_migrations (version, name) VALUES (1, 'init');
             INSERT INTO model_calls (time, model) VALUES ('2026-11-21 10:30:00+00'::TIMESTAMPTZ, 'm');
             INSERT INTO sessions (session_id, time, first_seen, last_seen) VALUES
                 ('s1', '2026-11-21 10:30:00+00', '2026-11-21 10:00:00+00', '2026-11-21 10:30:00+00');",
        )
        .expect("v1 rows");
        // Versions may have gaps (numbers reserved for other branches): the newest one is in force.
        let newest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        assert_eq!(migrate(&conn).expect("migrate"), newest);
        let (ty, t, hour): (String, i64, String) = conn
            .query_row(
                "SELECT typeof(time), epoch_us(time), date_trunc('hour', time)::VARCHAR FROM model_calls",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("row");
        assert_eq!((ty.as_str(), t, hour.as_str()), ("TIMESTAMP", 1_795_257_000_000_000, "2026-11-21 10:00:00"));
        let (status, since): (String, String) = conn
            .query_row("SELECT status, status_since::VARCHAR FROM sessions", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("session");
        assert_eq!((status.as_str(), since.as_str()), ("finished", "2026-11-21 10:30:00"));
        // Idempotent.
        assert_eq!(migrate(&conn).expect("again"), newest);
    }

    /// Migration 13 rebuilds the bulk tables: rows stay, and the JSON columns are written with
    /// zstd at the next checkpoint while the other string columns keep DuckDB's choice.
    #[test]
    fn json_columns_are_stored_with_zstd_and_rows_survive_the_rebuild() {
        let dir = tempfile::tempdir().expect("dir");
        let conn = Connection::open(dir.path().join("db.duckdb")).expect("db");
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,
                mapping_version INTEGER, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());",
        )
        .expect("table");
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 < 13) {
            conn.execute_batch(sql).expect("older migration");
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", duckdb::params![version, name])
                .expect("recorded");
        }
        conn.execute_batch(
            "INSERT INTO spans (time, trace_id, span_id, start_time, end_time, session_id, attributes, fallback)
                 SELECT TIMESTAMP '2026-12-05 10:00:00', 't' || i, 's' || i, TIMESTAMP '2026-12-05 10:00:00',
                        TIMESTAMP '2026-12-05 10:00:01', 'sess-' || (i % 7),
                        json_object('gen_ai.operation.name', 'chat', 'n', i), 1
                 FROM range(5000) r(i);
             INSERT INTO logs (time, body, attributes) VALUES (TIMESTAMP '2026-12-05 10:00:00', 'b', '{\"k\":1}');
             INSERT INTO metric_points (time, name, kind, value, series_id, attributes)
                 VALUES (TIMESTAMP '2026-12-05 10:00:00', 'm', 'sum', 2.5, 'x', '{\"k\":2}');",
        )
        .expect("rows before");
        assert_eq!(migrate(&conn).expect("migrate"), MIGRATIONS.last().map(|m| m.0).unwrap_or(0));
        let (spans, sum_n, fallback): (i64, i64, i64) = conn
            .query_row("SELECT count(*), sum((attributes->>'n')::BIGINT), sum(fallback) FROM spans", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("spans");
        assert_eq!((spans, sum_n, fallback), (5000, 4999 * 5000 / 2, 5000));
        let logs: String = conn.query_row("SELECT attributes->>'k' FROM logs", [], |r| r.get(0)).expect("logs");
        let increment: f64 =
            conn.query_row("SELECT increment FROM metric_increments", [], |r| r.get(0)).expect("the view still binds");
        assert_eq!((logs.as_str(), increment), ("1", 2.5));
        conn.execute_batch("CHECKPOINT").expect("checkpoint");
        let of = |column: &str| -> Vec<String> {
            let mut stmt = conn
                .prepare(
                    "SELECT DISTINCT compression FROM pragma_storage_info('spans')
                     WHERE column_name = ? AND segment_type <> 'VALIDITY' ORDER BY 1",
                )
                .expect("prepare");
            let rows = stmt.query_map([column], |r| r.get::<_, String>(0)).expect("query");
            rows.collect::<Result<_, _>>().expect("rows")
        };
        assert_eq!(of("attributes"), vec!["ZSTD".to_string()]);
        assert!(!of("session_id").contains(&"ZSTD".to_string()), "other columns keep DuckDB's choice");
    }
}
