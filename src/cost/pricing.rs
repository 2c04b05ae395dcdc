//! Cost at run time. `price_calls` gives every model call its `cost_usd` and `cost_source`
//! (`reported` when the source sent a cost, which always wins; `computed` from the price table;
//! `unpriced` when the model is unknown). It is pure and runs in the writer thread just before a
//! batch is committed, so re-pricing (also in the writer) and ingest never race. `Pricing` owns
//! the table in force: the embedded file, the operator's `--prices` file, and entries added over
//! the API (kept in `<data-dir>/prices-added.toml` so they survive restarts).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::prices::{call_cost, PriceError, PriceTable};
use crate::model::records::ModelCallRow;

pub const REPORTED: &str = "reported";
pub const COMPUTED: &str = "computed";
pub const UNPRICED: &str = "unpriced";

/// Price every call of a batch in place.
pub fn price_calls(table: &PriceTable, calls: &mut [ModelCallRow]) {
    let mut prices = table.batch_lookup();
    for c in calls {
        if c.cost_usd.is_some() {
            c.cost_source = Some(REPORTED);
            continue;
        }
        let entry = c.model.as_deref().and_then(|m| prices.lookup(m, c.provider.as_deref(), c.time_us));
        match entry {
            Some(e) => {
                c.cost_usd = Some(
                    call_cost(&e.price, c.input_tokens, c.output_tokens, c.cache_read_tokens, c.cache_write_tokens)
                        .unwrap_or(0.0),
                );
                c.cost_source = Some(COMPUTED);
            }
            None => {
                c.cost_source = Some(UNPRICED);
            }
        }
    }
}

/// One contiguous period of a price for re-pricing stored rows: `[from_us, to_us)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PricePeriod {
    pub model: Option<String>,
    pub provider: Option<String>,
    pub from_us: i64,
    pub to_us: i64,
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

/// The price periods that apply to rows stored with this `model` / `provider` (exactly what
/// `lookup` would pick at each instant: before the oldest entry, the oldest applies).
pub fn periods(table: &PriceTable, model: Option<&str>, provider: Option<&str>) -> Vec<PricePeriod> {
    let Some(m) = model else { return Vec::new() };
    let history = table.history(m, provider);
    let mut out = Vec::with_capacity(history.len());
    for (i, e) in history.iter().enumerate() {
        let from_us = if i == 0 { i64::MIN } else { e.effective_us };
        let to_us = history.get(i + 1).map(|n| n.effective_us).unwrap_or(i64::MAX);
        if from_us >= to_us {
            continue;
        }
        out.push(PricePeriod {
            model: Some(m.to_string()),
            provider: provider.map(str::to_string),
            from_us,
            to_us,
            input: e.price.input,
            output: e.price.output,
            cache_read: e.price.cache_read,
            cache_write: e.price.cache_write,
        });
    }
    out
}

/// What a re-price changed.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RepriceReport {
    /// Rows whose cost was (re)computed from the table.
    pub computed: u64,
    /// Rows left without a price.
    pub unpriced: u64,
    /// Distinct model / provider pairs still without a price.
    pub unpriced_models: u64,
    pub price_table_version: String,
    pub price_entries: usize,
}

/// Errors of loading or changing prices.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error(transparent)]
    Price(#[from] PriceError),
    #[error("cannot save added prices to {path}: {source}")]
    Save { path: PathBuf, source: std::io::Error },
    #[error("pricing state lock poisoned")]
    Poisoned,
}

#[derive(Serialize)]
struct AddedFile<'a> {
    version: &'a str,
    model: Vec<AddedEntry<'a>>,
}

#[derive(Serialize)]
struct AddedEntry<'a> {
    id: &'a str,
    provider: &'a str,
    effective: &'a str,
    input: f64,
    output: f64,
    cache_read: f64,
    cache_write: f64,
}

/// The price table in force and where its parts come from.
pub struct Pricing {
    user_file: Option<PathBuf>,
    added_file: PathBuf,
    current: Mutex<Arc<PriceTable>>,
}

impl Pricing {
    /// Embedded table + `--prices` file + entries added over the API earlier.
    pub fn load(user_file: Option<PathBuf>, data_dir: &Path) -> Result<Pricing, PricingError> {
        let added_file = data_dir.join("prices-added.toml");
        let table = Self::build(user_file.as_deref(), &added_file)?;
        tracing::info!(version = table.version(), entries = table.len(), user_file = ?user_file, "price table loaded");
        Ok(Pricing { user_file, added_file, current: Mutex::new(Arc::new(table)) })
    }

    fn build(user_file: Option<&Path>, added_file: &Path) -> Result<PriceTable, PricingError> {
        let mut table = PriceTable::load(user_file)?;
        if added_file.exists() {
            table.merge(PriceTable::load_file(added_file)?);
        }
        Ok(table)
    }

    /// The table in force now.
    pub fn current(&self) -> Result<Arc<PriceTable>, PricingError> {
        Ok(self.current.lock().map_err(|_| PricingError::Poisoned)?.clone())
    }

    /// Re-read the files, merge `added` (a price file's text, may be empty) and persist it;
    /// returns the new table (which the caller hands to the writer to re-price stored rows).
    pub fn reload(&self, added: Option<&str>) -> Result<Arc<PriceTable>, PricingError> {
        if let Some(text) = added {
            let new = PriceTable::from_toml_str(text)?;
            let mut all = if self.added_file.exists() {
                PriceTable::load_file(&self.added_file)?
            } else {
                PriceTable::from_toml_str("version = \"api\"\n")?
            };
            all.merge(new);
            self.save_added(&all)?;
        }
        let table = Arc::new(Self::build(self.user_file.as_deref(), &self.added_file)?);
        *self.current.lock().map_err(|_| PricingError::Poisoned)? = table.clone();
        Ok(table)
    }

    fn save_added(&self, t: &PriceTable) -> Result<(), PricingError> {
        let file = AddedFile {
            version: "api",
            model: t
                .entries()
                .iter()
                .map(|e| AddedEntry {
                    id: &e.id,
                    provider: &e.provider,
                    effective: &e.effective,
                    input: e.price.input,
                    output: e.price.output,
                    cache_read: e.price.cache_read,
                    cache_write: e.price.cache_write,
                })
                .collect(),
        };
        let text = toml::to_string(&file).map_err(|e| PricingError::Save {
            path: self.added_file.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let tmp = self.added_file.with_extension("toml.tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &self.added_file))
            .map_err(|source| PricingError::Save { path: self.added_file.clone(), source })
    }
}
