//! Re-pricing stored model calls, run by the writer thread (the only writer). The Rust price table
//! is turned into price periods per stored model / provider pair (`cost::pricing::periods`), staged
//! in a temp table and applied with one set-based UPDATE in a transaction; calls with a reported
//! cost are never touched. The same arithmetic as `cost::prices::call_cost`: input tokens include
//! cache tokens, so uncached input = input - cache_read - cache_write (never below zero).

use duckdb::{params, Connection};

use super::StoreError;
use crate::cost::pricing::{periods, RepriceReport};
use crate::cost::PriceTable;

const STAGE: &str = "
    CREATE TEMP TABLE IF NOT EXISTS reprice_stage (model VARCHAR, provider VARCHAR, from_us BIGINT, to_us BIGINT,
        p_in DOUBLE, p_out DOUBLE, p_cr DOUBLE, p_cw DOUBLE);
    DELETE FROM reprice_stage;";

const APPLY: &str = "
    UPDATE model_calls SET cost_usd = NULL, cost_source = 'unpriced'
    WHERE cost_source IS DISTINCT FROM 'reported';
    UPDATE model_calls AS m SET
        cost_source = 'computed',
        cost_usd = CASE WHEN m.input_tokens IS NULL AND m.output_tokens IS NULL AND m.cache_read_tokens IS NULL
                             AND m.cache_write_tokens IS NULL THEN 0.0 ELSE
                   (greatest(greatest(coalesce(m.input_tokens, 0), 0) - greatest(coalesce(m.cache_read_tokens, 0), 0)
                             - greatest(coalesce(m.cache_write_tokens, 0), 0), 0) * r.p_in
                    + greatest(coalesce(m.cache_read_tokens, 0), 0) * r.p_cr
                    + greatest(coalesce(m.cache_write_tokens, 0), 0) * r.p_cw
                    + greatest(coalesce(m.output_tokens, 0), 0) * r.p_out) / 1000000.0 END
    FROM reprice_stage r
    WHERE m.cost_source = 'unpriced'
      AND m.model = r.model AND m.provider IS NOT DISTINCT FROM r.provider
      AND epoch_us(m.time) >= r.from_us AND epoch_us(m.time) < r.to_us;";

const REPORT: &str = "
    SELECT count(*) FILTER (WHERE cost_source = 'computed'),
           count(*) FILTER (WHERE cost_source = 'unpriced'),
           count(DISTINCT (model, provider)) FILTER (WHERE cost_source = 'unpriced')
    FROM model_calls";

/// Re-price every stored call without a reported cost against `table`.
pub fn reprice(conn: &Connection, table: &PriceTable) -> Result<RepriceReport, StoreError> {
    let pairs: Vec<(Option<String>, Option<String>)> = {
        let mut stmt = conn.prepare(
            "SELECT DISTINCT model, provider FROM model_calls
             WHERE cost_source IS DISTINCT FROM 'reported' AND model IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    conn.execute_batch(STAGE)?;
    {
        let mut app = conn.appender("reprice_stage")?;
        for (model, provider) in &pairs {
            for p in periods(table, model.as_deref(), provider.as_deref()) {
                app.append_row(params![
                    p.model,
                    p.provider,
                    p.from_us,
                    p.to_us,
                    p.input,
                    p.output,
                    p.cache_read,
                    p.cache_write
                ])?;
            }
        }
        app.flush()?;
    }
    conn.execute_batch("BEGIN TRANSACTION")?;
    let applied = conn
        .execute_batch(APPLY)
        .and_then(|_| conn.execute_batch(super::rollup::REBUILD))
        .and_then(|_| publish(conn, table));
    match applied {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    let (computed, unpriced, unpriced_models): (i64, i64, i64) =
        conn.query_row(REPORT, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(RepriceReport {
        computed: computed.max(0) as u64,
        unpriced: unpriced.max(0) as u64,
        unpriced_models: unpriced_models.max(0) as u64,
        price_table_version: table.version().to_string(),
        price_entries: table.len(),
    })
}

fn publish(conn: &Connection, table: &PriceTable) -> Result<(), duckdb::Error> {
    conn.execute_batch("DELETE FROM prices")?;
    let mut stmt = conn.prepare(
        "INSERT INTO prices (model, provider, effective, input, output, cache_read, cache_write, table_version)
         VALUES (?, ?, make_timestamp(?::BIGINT), ?, ?, ?, ?, ?)",
    )?;
    for e in table.entries() {
        stmt.execute(params![
            e.id,
            e.provider,
            e.effective_us,
            e.price.input,
            e.price.output,
            e.price.cache_read,
            e.price.cache_write,
            table.version()
        ])?;
    }
    Ok(())
}

/// Rewrite the `prices` table (at writer start-up).
pub fn publish_prices(conn: &Connection, table: &PriceTable) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    match publish(conn, table) {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e.into())
        }
    }
}
