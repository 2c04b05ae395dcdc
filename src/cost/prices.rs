//! The model price table: parses the embedded `prices.toml` (plus an optional user file in the same
//! format), matches the model names real clients send to a canonical entry, and picks the price in
//! force at the time of a call.
//!
//! # Data
//! Prices are USD per 1M tokens for input, output, cache read and cache write. An entry without
//! `cache_read` or `cache_write` prices those tokens at its input price. Entries sharing an `id` and a
//! `provider` form a price history ordered by `effective` (a UTC date): a call is priced by the latest
//! entry whose `effective` is not after the call, and a call older than the oldest entry by the oldest.
//!
//! # Matching a model name
//! 1. Trim and lowercase. Empty names and placeholders (`unknown`, `none`, `null`, `n/a`, ...) never match.
//! 2. Router and provider paths are dropped: only the text after the last `/` is kept
//!    (`openai/gpt-4o`, `openrouter/anthropic/claude-3.5-sonnet`, `models/gemini-2.0-flash`,
//!    `accounts/fireworks/models/llama-v3p1-70b-instruct`, a Bedrock ARN's `.../us.anthropic...`). A
//!    serving provider named in the path (`groq/`, `together_ai/`, `fireworks`, `bedrock/`, ...) becomes the
//!    provider hint when the caller gave none.
//! 3. A Vertex version (`@20240620`, `@001`) and everything from the first `:` (`:free`, `:thinking`,
//!    Bedrock's `-v1:0`, fine-tune suffixes) are cut.
//! 4. Bedrock ids lose their region (`us.`, `eu.`, `apac.`, `global.`, ...) and vendor (`anthropic.`,
//!    `meta.`, `mistral.`, ...) prefixes; a vendor prefix implies the `bedrock` provider hint.
//! 5. A `.` between two digits is read as `-` (on both sides), so `claude-3.5-sonnet` equals
//!    `claude-3-5-sonnet` and `gpt-4.1` equals `gpt-4-1`.
//! 6. The name is looked up as an id or alias; failing that, the longest id or alias that is a prefix of
//!    the name ending on a boundary (`-`, `.`, `:`, `@`, `/`) wins. This is what strips dates and variants
//!    (`-2024-07-18`, `-20250929`, `-0125`, `-001`, `-preview-05-20`, `-latest`, `-exp`, `-v2`), and makes
//!    `gpt-4o-mini-search-preview` price as `gpt-4o-mini`, never `gpt-4o`. A dated id in the table
//!    (`gpt-4o-2024-05-13`) is matched exactly before any shorter prefix.
//!
//! When several providers serve a matched id (Llama on Groq, Together, Bedrock, Fireworks), the provider
//! hint picks one; without a usable hint an alias used by only one provider picks that provider, else the
//! first entry listed (user-file entries are listed before embedded ones).
//! Fine-tuned (`ft:...`) and self-hosted names do not match: an unknown price is better than a wrong one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The embedded default price table.
const EMBEDDED: &str = include_str!("prices.toml");

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Names clients send when they do not know the model.
const PLACEHOLDERS: &[&str] = &["", "unknown", "none", "null", "nil", "n/a", "na", "undefined", "default", "-", "?"];

/// Bedrock cross-region inference profile prefixes.
const BEDROCK_REGIONS: &[&str] = &["us.", "us-gov.", "eu.", "apac.", "ap.", "jp.", "au.", "ca.", "global."];

/// Bedrock model vendor prefixes.
const BEDROCK_VENDORS: &[&str] =
    &["anthropic.", "meta.", "mistral.", "amazon.", "cohere.", "ai21.", "deepseek.", "openai.", "qwen.", "writer."];

/// Prices of one model, USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

/// One row of the table: a model's price from `effective` on.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceEntry {
    /// Canonical lowercase id, e.g. `claude-sonnet-4-5`.
    pub id: String,
    /// Who bills the call, e.g. `anthropic`, or `groq` for Llama served by Groq.
    pub provider: String,
    /// `effective` as microseconds since the Unix epoch (midnight UTC).
    pub effective_us: i64,
    /// `YYYY-MM-DD`, as written in the file.
    pub effective: String,
    pub price: Price,
}

/// Errors loading a price table.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("cannot read price file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("price file {origin} is not valid: {message}")]
    Parse { origin: String, message: String },
    #[error("price file {origin}: [[model]] entry {index} (id `{id}`): {reason}")]
    Entry { origin: String, index: usize, id: String, reason: String },
}

/// All entries of one (id, provider): its price history and the spellings that name it.
#[derive(Debug, Clone)]
struct Series {
    id: String,
    provider: String,
    aliases: Vec<String>,
    /// Sorted by `effective_us`, one entry per date.
    entries: Vec<PriceEntry>,
}

/// The price table. Build with [`PriceTable::embedded`], [`PriceTable::load`] or
/// [`PriceTable::from_toml_str`]; query with [`PriceTable::lookup`] and [`PriceTable::history`].
#[derive(Debug, Clone)]
pub struct PriceTable {
    version: String,
    /// In priority order: earlier series win ties (defaults, shared aliases).
    series: Vec<Series>,
    /// Match key (canonical id or alias) -> series declaring it, in priority order.
    keys: HashMap<String, Vec<usize>>,
    /// Match key of an id -> all series with that id, in priority order.
    by_id: HashMap<String, Vec<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    model: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    id: String,
    provider: String,
    #[serde(default)]
    aliases: Vec<String>,
    effective: toml::Value,
    input: f64,
    output: f64,
    cache_read: Option<f64>,
    cache_write: Option<f64>,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
}

impl PriceTable {
    /// The built-in table (`src/cost/prices.toml`).
    pub fn embedded() -> Result<PriceTable, PriceError> {
        Self::parse(EMBEDDED, "(embedded)")
    }

    /// Parses a table in the `prices.toml` format.
    pub fn from_toml_str(s: &str) -> Result<PriceTable, PriceError> {
        Self::parse(s, "(inline)")
    }

    /// The embedded table, with the entries of `user_file` (same format) added or overriding.
    pub fn load(user_file: Option<&Path>) -> Result<PriceTable, PriceError> {
        let mut table = Self::embedded()?;
        if let Some(path) = user_file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| PriceError::Read { path: path.to_path_buf(), source })?;
            let user = Self::parse(&text, &path.display().to_string())?;
            tracing::info!(path = %path.display(), entries = user.len(), version = %user.version, "user prices loaded");
            table.merge(user);
        }
        Ok(table)
    }

    /// One price file (same format), without the embedded table.
    pub fn load_file(path: &Path) -> Result<PriceTable, PriceError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| PriceError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Every entry (each model's history oldest first), e.g. to publish or save the table.
    pub fn entries(&self) -> Vec<&PriceEntry> {
        self.series.iter().flat_map(|s| s.entries.iter()).collect()
    }

    /// Adds `other`'s entries: an entry with the same id, provider and effective date replaces ours,
    /// others are added; aliases are combined. `other`'s models take priority for defaults and shared
    /// aliases. The version becomes `ours+theirs` when `other` has one.
    pub fn merge(&mut self, other: PriceTable) {
        let PriceTable { version, series: other_series, .. } = other;
        let mut added: Vec<Series> = Vec::new();
        for theirs in other_series {
            match self.series.iter_mut().find(|s| s.id == theirs.id && s.provider == theirs.provider) {
                Some(ours) => {
                    for alias in theirs.aliases {
                        if !ours.aliases.contains(&alias) {
                            ours.aliases.push(alias);
                        }
                    }
                    for entry in theirs.entries {
                        match ours.entries.iter_mut().find(|e| e.effective_us == entry.effective_us) {
                            Some(existing) => *existing = entry,
                            None => ours.entries.push(entry),
                        }
                    }
                    ours.entries.sort_by_key(|e| e.effective_us);
                }
                None => added.push(theirs),
            }
        }
        added.append(&mut self.series);
        self.series = added;
        if !version.is_empty() {
            self.version = if self.version.is_empty() { version } else { format!("{}+{}", self.version, version) };
        }
        self.rebuild_index();
    }

    /// The table's `version` (date it was last checked), `a+b` after a merge.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Number of price entries (history rows included).
    pub fn len(&self) -> usize {
        self.series.iter().map(|s| s.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry in force at `at_us` (microseconds since epoch) for what a client sent, or None.
    pub fn lookup(&self, model: &str, provider: Option<&str>, at_us: i64) -> Option<&PriceEntry> {
        in_force(self.resolve(model, provider)?, at_us)
    }

    /// `lookup` for a batch of calls: each distinct model / provider pair is resolved once (a
    /// resolution normalises and allocates; a batch of 512 spans names a dozen models).
    pub fn batch_lookup(&self) -> BatchLookup<'_> {
        BatchLookup { table: self, memo: Vec::new() }
    }

    /// The whole history (oldest first) of the entry `model`/`provider` matches, for re-pricing stored rows.
    pub fn history(&self, model: &str, provider: Option<&str>) -> Vec<&PriceEntry> {
        self.resolve(model, provider).map(|s| s.entries.iter().collect()).unwrap_or_default()
    }

    fn resolve(&self, model: &str, provider: Option<&str>) -> Option<&Series> {
        self.resolve_index(model, provider).map(|i| &self.series[i])
    }

    fn resolve_index(&self, model: &str, provider: Option<&str>) -> Option<usize> {
        let (name, implied) = normalize_model(model)?;
        let hint = provider.map(normalize_provider).filter(|p| !p.is_empty()).or(implied.map(str::to_string));
        let declaring = self.match_key(&name)?;
        let first = *declaring.first()?;
        let same_id = self.by_id.get(&match_key(&self.series[first].id))?;
        if let Some(hint) = hint {
            if let Some(&i) = same_id.iter().find(|&&i| self.series[i].provider == hint) {
                return Some(i);
            }
        }
        // An alias only one provider declares for this id names that provider.
        let declaring_same_id = declaring.iter().filter(|&&i| self.series[i].id == self.series[first].id).count();
        if declaring_same_id == 1 {
            return Some(first);
        }
        same_id.first().copied()
    }

    /// Exact key, else the longest key that is a prefix of `name` ending on a boundary.
    fn match_key(&self, name: &str) -> Option<&Vec<usize>> {
        if let Some(found) = self.keys.get(name) {
            return Some(found);
        }
        name.char_indices()
            .rev()
            .filter(|&(i, c)| i > 0 && matches!(c, '-' | '.' | ':' | '@' | '/'))
            .find_map(|(i, _)| self.keys.get(&name[..i]))
    }

    fn parse(text: &str, origin: &str) -> Result<PriceTable, PriceError> {
        let raw: RawFile = toml::from_str(text)
            .map_err(|e| PriceError::Parse { origin: origin.to_string(), message: e.to_string() })?;
        let mut series: Vec<Series> = Vec::new();
        for (n, value) in raw.model.into_iter().enumerate() {
            let index = n + 1;
            let id_hint = value.get("id").and_then(|v| v.as_str()).unwrap_or("?").to_string();
            let entry_error =
                |reason: String| PriceError::Entry { origin: origin.to_string(), index, id: id_hint.clone(), reason };
            let entry: RawEntry =
                value.try_into().map_err(|e: toml::de::Error| entry_error(e.message().to_string()))?;
            let (parsed, aliases) = validate(entry).map_err(entry_error)?;
            match series.iter_mut().find(|s| s.id == parsed.id && s.provider == parsed.provider) {
                Some(existing) => {
                    if existing.entries.iter().any(|e| e.effective_us == parsed.effective_us) {
                        return Err(entry_error(format!(
                            "a second entry for provider `{}` effective {}",
                            parsed.provider, parsed.effective
                        )));
                    }
                    for alias in aliases {
                        if !existing.aliases.contains(&alias) {
                            existing.aliases.push(alias);
                        }
                    }
                    existing.entries.push(parsed);
                    existing.entries.sort_by_key(|e| e.effective_us);
                }
                None => series.push(Series {
                    id: parsed.id.clone(),
                    provider: parsed.provider.clone(),
                    aliases,
                    entries: vec![parsed],
                }),
            }
        }
        let mut table = PriceTable {
            version: raw.version.unwrap_or_default(),
            series,
            keys: HashMap::new(),
            by_id: HashMap::new(),
        };
        table.rebuild_index();
        // Within one file a spelling must not name two different models.
        for (key, declaring) in &table.keys {
            let first = &table.series[declaring[0]].id;
            if let Some(&other) = declaring.iter().find(|&&i| table.series[i].id != *first) {
                return Err(PriceError::Parse {
                    origin: origin.to_string(),
                    message: format!("`{key}` names both `{first}` and `{}`", table.series[other].id),
                });
            }
        }
        Ok(table)
    }

    fn rebuild_index(&mut self) {
        let mut keys: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in self.series.iter().enumerate() {
            by_id.entry(match_key(&s.id)).or_default().push(i);
            for name in std::iter::once(&s.id).chain(s.aliases.iter()) {
                let list = keys.entry(match_key(name)).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        self.keys = keys;
        self.by_id = by_id;
    }
}

/// Checks one raw entry; the error names what is wrong (the caller adds which entry).
fn validate(raw: RawEntry) -> Result<(PriceEntry, Vec<String>), String> {
    let id = raw.id.trim().to_lowercase();
    if id.is_empty() {
        return Err("`id` is empty".to_string());
    }
    let provider = normalize_provider(&raw.provider);
    if provider.is_empty() {
        return Err("`provider` is empty".to_string());
    }
    let effective = match &raw.effective {
        toml::Value::String(s) => s.trim().to_string(),
        toml::Value::Datetime(d) if d.time.is_none() && d.offset.is_none() => d.to_string(),
        other => return Err(format!("`effective` must be a YYYY-MM-DD date, got {other}")),
    };
    let days = parse_date(&effective).ok_or_else(|| format!("`effective` `{effective}` is not a YYYY-MM-DD date"))?;
    let check = |name: &str, v: f64| {
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(format!("`{name}` must be a non-negative number, got {v}"))
        }
    };
    let input = check("input", raw.input)?;
    let price = Price {
        input,
        output: check("output", raw.output)?,
        cache_read: check("cache_read", raw.cache_read.unwrap_or(input))?,
        cache_write: check("cache_write", raw.cache_write.unwrap_or(input))?,
    };
    let mut aliases = Vec::new();
    for alias in raw.aliases {
        let alias = alias.trim().to_lowercase();
        if alias.is_empty() {
            return Err("an alias is empty".to_string());
        }
        if alias != id && !aliases.contains(&alias) {
            aliases.push(alias);
        }
    }
    let entry = PriceEntry { id, provider, effective_us: days * MICROS_PER_DAY, effective, price };
    Ok((entry, aliases))
}

/// USD cost of one call. `input_tokens` follows OpenTelemetry: it INCLUDES cache_read and cache_write tokens,
/// so uncached input = input - cache_read - cache_write (never below 0). None when no token count is known.
pub fn call_cost(
    p: &Price,
    input: Option<i64>,
    output: Option<i64>,
    cache_read: Option<i64>,
    cache_write: Option<i64>,
) -> Option<f64> {
    if input.is_none() && output.is_none() && cache_read.is_none() && cache_write.is_none() {
        return None;
    }
    let count = |v: Option<i64>| v.unwrap_or(0).max(0);
    let (read, write) = (count(cache_read), count(cache_write));
    let uncached = count(input).saturating_sub(read).saturating_sub(write).max(0);
    let micro_usd = uncached as f64 * p.input
        + read as f64 * p.cache_read
        + write as f64 * p.cache_write
        + count(output) as f64 * p.output;
    Some(micro_usd / 1_000_000.0)
}

/// Steps 1-4 of the matching rules: the bare model name (as a match key) and a provider implied by
/// the spelling, or None for placeholders.
fn normalize_model(model: &str) -> Option<(String, Option<&'static str>)> {
    let lower = model.trim().to_lowercase();
    let mut implied = None;
    let mut name = lower.as_str();
    if let Some(pos) = name.rfind('/') {
        implied = name[..pos].split(['/', ':']).find_map(serving_provider);
        name = &name[pos + 1..];
    }
    if let Some(pos) = name.find('@') {
        name = &name[..pos];
    }
    if let Some(pos) = name.find(':') {
        name = &name[..pos];
    }
    if let Some(rest) = BEDROCK_REGIONS.iter().find_map(|r| name.strip_prefix(r)) {
        if BEDROCK_VENDORS.iter().any(|v| rest.starts_with(v)) {
            name = rest;
        }
    }
    if let Some(rest) = BEDROCK_VENDORS.iter().find_map(|v| name.strip_prefix(v)) {
        name = rest;
        implied = implied.or(Some("bedrock"));
    }
    let name = name.trim();
    if PLACEHOLDERS.contains(&name) {
        return None;
    }
    Some((match_key(name), implied))
}

/// A path segment naming a provider that bills the call itself (LiteLLM/router prefixes).
fn serving_provider(segment: &str) -> Option<&'static str> {
    match segment {
        "groq" => Some("groq"),
        "together" | "together_ai" | "togethercomputer" => Some("together"),
        "fireworks" | "fireworks_ai" => Some("fireworks"),
        "bedrock" | "bedrock_converse" => Some("bedrock"),
        _ => None,
    }
}

/// The entry of `series` in force at `at_us` (before the oldest entry, the oldest).
fn in_force(series: &Series, at_us: i64) -> Option<&PriceEntry> {
    series.entries.iter().rev().find(|e| e.effective_us <= at_us).or_else(|| series.entries.first())
}

/// Most model / provider pairs a `BatchLookup` remembers (then it starts over).
const BATCH_MEMO: usize = 64;

/// `PriceTable::lookup` with the resolution of each model / provider pair remembered.
pub struct BatchLookup<'a> {
    table: &'a PriceTable,
    memo: Vec<(String, Option<String>, Option<usize>)>,
}

impl<'a> BatchLookup<'a> {
    /// What `PriceTable::lookup` answers.
    pub fn lookup(&mut self, model: &str, provider: Option<&str>, at_us: i64) -> Option<&'a PriceEntry> {
        let found = self.memo.iter().find(|(m, p, _)| m == model && p.as_deref() == provider).map(|(_, _, i)| *i);
        let index = match found {
            Some(i) => i,
            None => {
                let i = self.table.resolve_index(model, provider);
                if self.memo.len() == BATCH_MEMO {
                    self.memo.clear();
                }
                self.memo.push((model.to_string(), provider.map(str::to_string), i));
                i
            }
        };
        in_force(&self.table.series[index?], at_us)
    }
}

/// Canonical provider name for a hint such as `gen_ai.system` / `gen_ai.provider.name`.
fn normalize_provider(provider: &str) -> String {
    let p = provider.trim().to_lowercase();
    let known = [
        ("bedrock", "bedrock"),
        ("together", "together"),
        ("fireworks", "fireworks"),
        ("groq", "groq"),
        ("anthropic", "anthropic"),
        ("openai", "openai"),
        ("azure", "openai"),
        ("vertex", "google"),
        ("gemini", "google"),
        ("google", "google"),
        ("mistral", "mistral"),
        ("deepseek", "deepseek"),
        ("xai", "xai"),
        ("x_ai", "xai"),
        ("x.ai", "xai"),
        ("grok", "xai"),
    ];
    known.iter().find(|(needle, _)| p.contains(needle)).map(|(_, canonical)| canonical.to_string()).unwrap_or(p)
}

/// Lowercase, trimmed, with a `.` between two digits read as `-` (`gpt-4.1` -> `gpt-4-1`).
fn match_key(name: &str) -> String {
    let chars: Vec<char> = name.trim().to_lowercase().chars().collect();
    let mut out = String::with_capacity(chars.len());
    for (i, &c) in chars.iter().enumerate() {
        let between_digits =
            c == '.' && i > 0 && chars[i - 1].is_ascii_digit() && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        out.push(if between_digits { '-' } else { c });
    }
    out
}

/// Days since 1970-01-01 of a strict `YYYY-MM-DD` date.
fn parse_date(s: &str) -> Option<i64> {
    crate::civil::parse_ymd(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: &str) -> i64 {
        parse_date(date).unwrap() * MICROS_PER_DAY
    }

    fn now() -> i64 {
        at("2026-11-01")
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn embedded_table_parses_and_is_versioned() {
        let t = PriceTable::embedded().unwrap();
        assert_eq!(t.version(), "2026-11-01");
        assert!(t.len() > 100, "only {} entries", t.len());
        assert!(!t.is_empty());
        for provider in
            ["openai", "anthropic", "google", "mistral", "deepseek", "xai", "groq", "together", "bedrock", "fireworks"]
        {
            assert!(t.series.iter().any(|s| s.provider == provider), "no {provider} entries");
        }
    }

    /// The batch lookup answers what `lookup` answers, call by call, including after its memory
    /// fills up and starts over, for unknown models, provider hints and price history.
    #[test]
    fn batch_lookup_answers_what_lookup_answers() {
        let t = PriceTable::embedded().unwrap();
        let mut calls: Vec<(String, Option<&str>, i64)> = Vec::new();
        let names = ["gpt-4o", "GPT-4o-Mini", "claude-sonnet-5-5", "claude-3-haiku", "no-such-model", "gpt-4.1"];
        let hints = [None, Some("openai"), Some("Anthropic"), Some("aws.bedrock"), Some("")];
        for round in 0..3 {
            for (i, name) in names.iter().enumerate() {
                for hint in hints {
                    calls.push((name.to_string(), hint, at("2026-01-01") + (i as i64 + round) * 40 * MICROS_PER_DAY));
                }
            }
            // More distinct pairs than the memory holds.
            for n in 0..BATCH_MEMO + 5 {
                calls.push((format!("gpt-4o-{n}"), None, now()));
            }
        }
        let mut batch = t.batch_lookup();
        let mut priced = 0;
        for (model, hint, at_us) in &calls {
            let one = t.lookup(model, *hint, *at_us).map(|e| (e.id.clone(), e.provider.clone(), e.effective_us));
            let many = batch.lookup(model, *hint, *at_us).map(|e| (e.id.clone(), e.provider.clone(), e.effective_us));
            assert_eq!(many, one, "{model} / {hint:?} at {at_us}");
            priced += usize::from(one.is_some());
        }
        assert!(priced > calls.len() / 2, "the cases price something: {priced} of {}", calls.len());
    }

    #[test]
    fn anthropic_cache_prices_follow_the_multipliers() {
        let t = PriceTable::embedded().unwrap();
        let mut checked = 0;
        for s in t.series.iter().filter(|s| s.provider == "anthropic") {
            for e in &s.entries {
                // Official exceptions: Haiku 3 writes at $0.30 and reads at $0.03; Fable 5.1 and Sonnet 5.5
                // (from 2026-10-07) read at 0.025x and 0.05x.
                if e.id == "claude-3-haiku" {
                    continue;
                }
                assert!(close(e.price.cache_write, e.price.input * 1.25), "{} cache_write", e.id);
                let cut_read =
                    e.id == "claude-fable-5-1" || (e.id == "claude-sonnet-5-5" && e.effective == "2026-10-07");
                if !cut_read {
                    assert!(close(e.price.cache_read, e.price.input * 0.1), "{} cache_read", e.id);
                }
                checked += 1;
            }
        }
        assert!(checked >= 20);
    }

    /// Real spellings -> (canonical id, provider, input, output, cache_read, cache_write).
    /// (name sent, provider hint, id, provider, input, output, cache_read, cache_write)
    type Case = (&'static str, Option<&'static str>, &'static str, &'static str, f64, f64, f64, f64);

    #[test]
    fn real_model_spellings_match() {
        let t = PriceTable::embedded().unwrap();
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // OpenAI API and SDK spellings
            ("gpt-4o", None, "gpt-4o", "openai", 2.5, 10.0, 1.25, 2.5),
            ("gpt-4o-2024-08-06", None, "gpt-4o", "openai", 2.5, 10.0, 1.25, 2.5),
            ("gpt-4o-2024-05-13", None, "gpt-4o-2024-05-13", "openai", 5.0, 15.0, 5.0, 5.0),
            ("gpt-4o-mini-2024-07-18", None, "gpt-4o-mini", "openai", 0.15, 0.6, 0.075, 0.15),
            ("gpt-4o-mini-search-preview", None, "gpt-4o-mini", "openai", 0.15, 0.6, 0.075, 0.15),
            ("GPT-4o-Mini", None, "gpt-4o-mini", "openai", 0.15, 0.6, 0.075, 0.15),
            ("  gpt-4.1-mini-2025-04-14 ", None, "gpt-4.1-mini", "openai", 0.4, 1.6, 0.1, 0.4),
            ("gpt-4.1-nano", None, "gpt-4.1-nano", "openai", 0.1, 0.4, 0.025, 0.1),
            ("gpt-4.1-2025-04-14", None, "gpt-4.1", "openai", 2.0, 8.0, 0.5, 2.0),
            ("gpt-5-2025-08-07", None, "gpt-5", "openai", 1.25, 10.0, 0.125, 1.25),
            ("gpt-5-mini-2025-08-07", None, "gpt-5-mini", "openai", 0.25, 2.0, 0.025, 0.25),
            ("gpt-5-nano", None, "gpt-5-nano", "openai", 0.05, 0.4, 0.005, 0.05),
            ("gpt-5-codex", None, "gpt-5", "openai", 1.25, 10.0, 0.125, 1.25),
            ("gpt-5-chat-latest", None, "gpt-5", "openai", 1.25, 10.0, 0.125, 1.25),
            ("gpt-5.1-codex", None, "gpt-5.1", "openai", 1.25, 10.0, 0.125, 1.25),
            ("gpt-5.1-codex-mini", None, "gpt-5.1-codex-mini", "openai", 0.25, 2.0, 0.025, 0.25),
            ("gpt-5.2-2025-12-11", None, "gpt-5.2", "openai", 1.75, 14.0, 0.175, 1.75),
            ("gpt-5.4-mini", None, "gpt-5.4-mini", "openai", 0.75, 4.5, 0.075, 0.75),
            ("gpt-5.5", None, "gpt-5.5", "openai", 5.0, 30.0, 0.5, 5.0),
            ("o3-2025-04-16", None, "o3", "openai", 2.0, 8.0, 0.5, 2.0),
            ("o3-mini-2025-01-31", None, "o3-mini", "openai", 1.1, 4.4, 0.55, 1.1),
            ("o4-mini-2025-04-16", None, "o4-mini", "openai", 1.1, 4.4, 0.275, 1.1),
            ("o1-2024-12-17", None, "o1", "openai", 15.0, 60.0, 7.5, 15.0),
            ("o1-preview", None, "o1", "openai", 15.0, 60.0, 7.5, 15.0),
            ("gpt-4-0125-preview", None, "gpt-4-turbo", "openai", 10.0, 30.0, 10.0, 10.0),
            ("gpt-4-turbo-2024-04-09", None, "gpt-4-turbo", "openai", 10.0, 30.0, 10.0, 10.0),
            ("gpt-4-0613", None, "gpt-4", "openai", 30.0, 60.0, 30.0, 30.0),
            ("gpt-3.5-turbo-0125", None, "gpt-3.5-turbo", "openai", 0.5, 1.5, 0.5, 0.5),
            ("text-embedding-3-small", None, "text-embedding-3-small", "openai", 0.02, 0.0, 0.02, 0.02),
            ("openai/gpt-4o", None, "gpt-4o", "openai", 2.5, 10.0, 1.25, 2.5),
            ("openai/gpt-5-mini", Some("openai"), "gpt-5-mini", "openai", 0.25, 2.0, 0.025, 0.25),
            // Azure deployments
            ("azure/gpt-4o-mini", Some("az.ai.openai"), "gpt-4o-mini", "openai", 0.15, 0.6, 0.075, 0.15),
            ("gpt-35-turbo", Some("azure.ai.openai"), "gpt-3.5-turbo", "openai", 0.5, 1.5, 0.5, 0.5),
            ("gpt-35-turbo-16k", None, "gpt-3.5-turbo", "openai", 0.5, 1.5, 0.5, 0.5),
            // Anthropic API and Claude Code
            ("claude-sonnet-4-5-20250929", None, "claude-sonnet-4-5", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("claude-opus-4-1-20250805", None, "claude-opus-4-1", "anthropic", 15.0, 75.0, 1.5, 18.75),
            ("claude-haiku-4-5-20251001", None, "claude-haiku-4-5", "anthropic", 1.0, 5.0, 0.1, 1.25),
            ("claude-3-5-haiku-20241022", None, "claude-3-5-haiku", "anthropic", 0.8, 4.0, 0.08, 1.0),
            ("claude-opus-4-5-20251101", None, "claude-opus-4-5", "anthropic", 5.0, 25.0, 0.5, 6.25),
            ("claude-opus-4-20250514", None, "claude-opus-4", "anthropic", 15.0, 75.0, 1.5, 18.75),
            ("claude-sonnet-4-20250514", None, "claude-sonnet-4", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("claude-opus-4-6", None, "claude-opus-4-6", "anthropic", 5.0, 25.0, 0.5, 6.25),
            ("claude-sonnet-4-6", None, "claude-sonnet-4-6", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("claude-sonnet-5", None, "claude-sonnet-5", "anthropic", 2.0, 10.0, 0.2, 2.5),
            ("claude-3-7-sonnet-20250219", None, "claude-3-7-sonnet", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("claude-3-7-sonnet-latest", None, "claude-3-7-sonnet", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("claude-3-5-sonnet-20240620", None, "claude-3-5-sonnet", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("claude-3-opus-20240229", None, "claude-3-opus", "anthropic", 15.0, 75.0, 1.5, 18.75),
            ("claude-3-haiku-20240307", None, "claude-3-haiku", "anthropic", 0.25, 1.25, 0.03, 0.3),
            ("anthropic/claude-sonnet-4-5", None, "claude-sonnet-4-5", "anthropic", 3.0, 15.0, 0.3, 3.75),
            // Bedrock
            ("anthropic.claude-3-5-sonnet-20240620-v1:0", Some("aws.bedrock"), "claude-3-5-sonnet", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("anthropic.claude-3-5-sonnet-20241022-v2:0", None, "claude-3-5-sonnet", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", None, "claude-sonnet-4-5", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("eu.anthropic.claude-3-7-sonnet-20250219-v1:0", None, "claude-3-7-sonnet", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("apac.anthropic.claude-3-haiku-20240307-v1:0", None, "claude-3-haiku", "anthropic", 0.25, 1.25, 0.03, 0.3),
            ("global.anthropic.claude-haiku-4-5-20251001-v1:0", None, "claude-haiku-4-5", "anthropic", 1.0, 5.0, 0.1, 1.25),
            ("bedrock/us.anthropic.claude-opus-4-1-20250805-v1:0", None, "claude-opus-4-1", "anthropic", 15.0, 75.0, 1.5, 18.75),
            ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0", None, "claude-3-7-sonnet", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("anthropic.claude-3-sonnet-20240229-v1:0:200k", None, "", "", 0.0, 0.0, 0.0, 0.0),
            ("meta.llama3-1-70b-instruct-v1:0", None, "llama-3.1-70b-instruct", "bedrock", 0.72, 0.72, 0.72, 0.72),
            ("us.meta.llama3-3-70b-instruct-v1:0", Some("aws.bedrock"), "llama-3.3-70b-instruct", "bedrock", 0.72, 0.72, 0.72, 0.72),
            ("us.meta.llama4-maverick-17b-instruct-v1:0", None, "llama-4-maverick-17b-128e-instruct", "bedrock", 0.24, 0.97, 0.24, 0.24),
            // Vertex AI and Gemini API
            ("claude-3-5-sonnet-v2@20241022", Some("gcp.vertex_ai"), "claude-3-5-sonnet", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("claude-sonnet-4-5@20250929", None, "claude-sonnet-4-5", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("claude-opus-4-1@20250805", None, "claude-opus-4-1", "anthropic", 15.0, 75.0, 1.5, 18.75),
            ("gemini-1.5-pro@002", None, "gemini-1.5-pro", "google", 1.25, 5.0, 0.3125, 1.25),
            ("models/gemini-2.5-pro", Some("gcp.gemini"), "gemini-2.5-pro", "google", 1.25, 10.0, 0.125, 1.25),
            ("models/gemini-2.0-flash-001", None, "gemini-2.0-flash", "google", 0.1, 0.4, 0.025, 0.1),
            ("gemini-2.5-flash-preview-05-20", None, "gemini-2.5-flash", "google", 0.3, 2.5, 0.03, 0.3),
            ("gemini-2.5-flash-lite-preview-06-17", None, "gemini-2.5-flash-lite", "google", 0.1, 0.4, 0.01, 0.1),
            ("gemini-2.0-flash-lite-001", None, "gemini-2.0-flash-lite", "google", 0.075, 0.3, 0.075, 0.075),
            ("gemini-2.0-flash-exp", None, "gemini-2.0-flash", "google", 0.1, 0.4, 0.025, 0.1),
            ("gemini-1.5-flash-latest", None, "gemini-1.5-flash", "google", 0.075, 0.3, 0.01875, 0.075),
            ("gemini-1.5-flash-8b-001", None, "gemini-1.5-flash-8b", "google", 0.0375, 0.15, 0.01, 0.0375),
            ("gemini-3-pro-preview", None, "gemini-3-pro", "google", 2.0, 12.0, 0.2, 2.0),
            ("gemini-3-flash-preview", None, "gemini-3-flash", "google", 0.5, 3.0, 0.05, 0.5),
            ("projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro", None, "gemini-2.5-pro", "google", 1.25, 10.0, 0.125, 1.25),
            ("vertex_ai/gemini-2.5-flash", None, "gemini-2.5-flash", "google", 0.3, 2.5, 0.03, 0.3),
            // OpenRouter and LiteLLM
            ("anthropic/claude-3.5-sonnet", None, "claude-3-5-sonnet", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("anthropic/claude-3.7-sonnet:thinking", None, "claude-3-7-sonnet", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("anthropic/claude-sonnet-4.5", None, "claude-sonnet-4-5", "anthropic", 3.0, 15.0, 0.3, 3.75),
            ("anthropic/claude-opus-4.1", None, "claude-opus-4-1", "anthropic", 15.0, 75.0, 1.5, 18.75),
            ("openrouter/openai/gpt-4.1", None, "gpt-4.1", "openai", 2.0, 8.0, 0.5, 2.0),
            ("google/gemini-2.5-flash", None, "gemini-2.5-flash", "google", 0.3, 2.5, 0.03, 0.3),
            ("deepseek/deepseek-chat-v3-0324:free", None, "deepseek-chat", "deepseek", 0.28, 0.42, 0.028, 0.28),
            ("deepseek/deepseek-r1", None, "deepseek-reasoner", "deepseek", 0.28, 0.42, 0.028, 0.28),
            ("x-ai/grok-4", None, "grok-4", "xai", 3.0, 15.0, 0.75, 3.0),
            ("x-ai/grok-code-fast-1", None, "grok-code-fast-1", "xai", 0.2, 1.5, 0.02, 0.2),
            ("mistralai/mistral-small-3.2-24b-instruct", None, "mistral-small", "mistral", 0.1, 0.3, 0.1, 0.1),
            ("meta-llama/llama-3.3-70b-instruct", Some("openrouter"), "llama-3.3-70b-instruct", "groq", 0.59, 0.79, 0.59, 0.59),
            ("mistral/mistral-large-latest", None, "mistral-large", "mistral", 2.0, 6.0, 2.0, 2.0),
            // Mistral, DeepSeek, xAI direct
            ("mistral-large-2411", Some("mistral_ai"), "mistral-large", "mistral", 2.0, 6.0, 2.0, 2.0),
            ("mistral-large-2512", None, "mistral-large-3", "mistral", 0.5, 1.5, 0.5, 0.5),
            ("mistral-medium-2505", None, "mistral-medium", "mistral", 0.4, 2.0, 0.4, 0.4),
            ("mistral-small-latest", None, "mistral-small", "mistral", 0.1, 0.3, 0.1, 0.1),
            ("codestral-2501", None, "codestral", "mistral", 0.3, 0.9, 0.3, 0.3),
            ("ministral-8b-latest", None, "ministral-8b", "mistral", 0.1, 0.1, 0.1, 0.1),
            ("ministral-3b-2410", None, "ministral-3b", "mistral", 0.04, 0.04, 0.04, 0.04),
            ("pixtral-large-2411", None, "pixtral-large", "mistral", 2.0, 6.0, 2.0, 2.0),
            ("pixtral-12b-2409", None, "pixtral-12b", "mistral", 0.15, 0.15, 0.15, 0.15),
            ("magistral-medium-2506", None, "magistral-medium", "mistral", 2.0, 5.0, 2.0, 2.0),
            ("magistral-small-latest", None, "magistral-small", "mistral", 0.5, 1.5, 0.5, 0.5),
            ("open-mistral-nemo", None, "mistral-nemo", "mistral", 0.15, 0.15, 0.15, 0.15),
            ("deepseek-chat", Some("deepseek"), "deepseek-chat", "deepseek", 0.28, 0.42, 0.028, 0.28),
            ("deepseek-reasoner", None, "deepseek-reasoner", "deepseek", 0.28, 0.42, 0.028, 0.28),
            ("grok-4-0709", Some("xai"), "grok-4", "xai", 3.0, 15.0, 0.75, 3.0),
            ("grok-4-fast-reasoning", None, "grok-4-fast", "xai", 0.2, 0.5, 0.05, 0.2),
            ("grok-4-fast-non-reasoning", None, "grok-4-fast", "xai", 0.2, 0.5, 0.05, 0.2),
            ("grok-4-1-fast-reasoning", None, "grok-4-1-fast", "xai", 0.2, 0.5, 0.05, 0.2),
            ("grok-4.20-0309-reasoning", None, "grok-4.20", "xai", 1.25, 2.5, 0.2, 1.25),
            ("grok-3-latest", None, "grok-3", "xai", 3.0, 15.0, 0.75, 3.0),
            ("grok-3-mini-fast-latest", None, "grok-3-mini-fast", "xai", 0.6, 4.0, 0.15, 0.6),
            ("grok-3-mini", None, "grok-3-mini", "xai", 0.3, 0.5, 0.075, 0.3),
            // Meta Llama via providers
            ("llama-3.3-70b-versatile", None, "llama-3.3-70b-instruct", "groq", 0.59, 0.79, 0.59, 0.59),
            ("llama-3.1-8b-instant", Some("groq"), "llama-3.1-8b-instruct", "groq", 0.05, 0.08, 0.05, 0.05),
            ("groq/llama-3.3-70b-versatile", None, "llama-3.3-70b-instruct", "groq", 0.59, 0.79, 0.59, 0.59),
            ("meta-llama/llama-4-scout-17b-16e-instruct", Some("groq"), "llama-4-scout-17b-16e-instruct", "groq", 0.11, 0.34, 0.11, 0.11),
            ("meta-llama/Llama-3.3-70B-Instruct-Turbo", None, "llama-3.3-70b-instruct", "together", 0.88, 0.88, 0.88, 0.88),
            ("meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", Some("together_ai"), "llama-3.1-8b-instruct", "together", 0.18, 0.18, 0.18, 0.18),
            ("meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo", None, "llama-3.1-405b-instruct", "together", 3.5, 3.5, 3.5, 3.5),
            ("together_ai/meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8", None, "llama-4-maverick-17b-128e-instruct", "together", 0.27, 0.85, 0.27, 0.27),
            ("meta-llama/Llama-4-Scout-17B-16E-Instruct", Some("together"), "llama-4-scout-17b-16e-instruct", "together", 0.18, 0.59, 0.18, 0.18),
            ("accounts/fireworks/models/llama-v3p1-70b-instruct", None, "llama-3.1-70b-instruct", "fireworks", 0.9, 0.9, 0.9, 0.9),
            ("accounts/fireworks/models/llama4-maverick-instruct-basic", None, "llama-4-maverick-17b-128e-instruct", "fireworks", 0.22, 0.88, 0.22, 0.22),
            ("fireworks_ai/accounts/fireworks/models/llama-v3p3-70b-instruct", None, "llama-3.3-70b-instruct", "fireworks", 0.9, 0.9, 0.9, 0.9),
            ("llama-3.3-70b-instruct", Some("fireworks"), "llama-3.3-70b-instruct", "fireworks", 0.9, 0.9, 0.9, 0.9),
            ("llama-3.3-70b-instruct", Some("aws.bedrock"), "llama-3.3-70b-instruct", "bedrock", 0.72, 0.72, 0.72, 0.72),
            ("llama-3.1-405b-instruct", None, "llama-3.1-405b-instruct", "together", 3.5, 3.5, 3.5, 3.5),
            ("llama-4-scout-17b-16e-instruct", Some("deepinfra"), "llama-4-scout-17b-16e-instruct", "groq", 0.11, 0.34, 0.11, 0.11),
        ];
        assert!(cases.len() >= 50);
        for &(name, provider, id, prov, input, output, cache_read, cache_write) in cases {
            let got = t.lookup(name, provider, now());
            if id.is_empty() {
                assert!(got.is_none(), "{name}: expected no match, got {got:?}");
                continue;
            }
            let e = got.unwrap_or_else(|| panic!("{name}: no match"));
            assert_eq!((e.id.as_str(), e.provider.as_str()), (id, prov), "{name}");
            let want = Price { input, output, cache_read, cache_write };
            assert!(
                close(e.price.input, want.input)
                    && close(e.price.output, want.output)
                    && close(e.price.cache_read, want.cache_read)
                    && close(e.price.cache_write, want.cache_write),
                "{name}: {:?} != {want:?}",
                e.price
            );
        }
    }

    #[test]
    fn unknown_names_and_placeholders_do_not_match() {
        let t = PriceTable::embedded().unwrap();
        for name in [
            "",
            "   ",
            "unknown",
            "UNKNOWN",
            "none",
            "null",
            "n/a",
            "my-company-gpt",
            "gpt",
            "claude",
            "gpt-4o1",
            "o5-mini",
            "llama3.1:70b",
            "ft:gpt-4o-mini-2024-07-18:acme::abc123",
            "qwen/qwen3-coder",
            "amazon.nova-pro-v1:0",
            "gemini-exp-1206",
            "openai/",
        ] {
            assert!(t.lookup(name, None, now()).is_none(), "{name:?} matched {:?}", t.lookup(name, None, now()));
            assert!(t.history(name, None).is_empty(), "{name:?}");
        }
    }

    #[test]
    fn prefix_match_needs_a_boundary_and_prefers_the_longest_id() {
        let t = PriceTable::embedded().unwrap();
        let id = |name: &str| t.lookup(name, None, now()).map(|e| e.id.clone());
        assert_eq!(id("gpt-4o-mini-transcribe").as_deref(), Some("gpt-4o-mini"));
        assert_eq!(id("gpt-4o-audio-preview").as_deref(), Some("gpt-4o"));
        assert_eq!(id("gpt-5-mini-high").as_deref(), Some("gpt-5-mini"));
        assert_eq!(id("o3-mini-high").as_deref(), Some("o3-mini"));
        assert_eq!(id("o3-pro-2025-06-10").as_deref(), Some("o3-pro"));
        assert_eq!(id("grok-3-mini-beta").as_deref(), Some("grok-3-mini"));
        // `gpt-4-1106-preview` is an alias of gpt-4-turbo, not gpt-4.1 nor gpt-4
        assert_eq!(id("gpt-4-1106-preview").as_deref(), Some("gpt-4-turbo"));
        // `o1x` is not `o1` plus a boundary
        assert_eq!(id("o1x"), None);
        assert_eq!(id("gpt-5x-mini"), None);
    }

    #[test]
    fn effective_date_selects_the_price_in_force() {
        let t = PriceTable::embedded().unwrap();
        let o3 = |date: &str| t.lookup("o3-2025-04-16", None, at(date)).unwrap().price;
        assert_eq!(o3("2025-05-01").input, 10.0);
        assert_eq!(o3("2025-05-01").cache_read, 2.5);
        assert_eq!(o3("2025-06-09").output, 40.0);
        assert_eq!(o3("2025-06-10").input, 2.0, "new price applies from its effective day");
        assert_eq!(o3("2026-01-01").output, 8.0);
        // before the oldest entry: the oldest entry
        assert_eq!(o3("2020-01-01").input, 10.0);
        let last_us_of_day = at("2025-06-10") - 1;
        assert_eq!(t.lookup("o3", None, last_us_of_day).unwrap().effective, "2025-04-16");

        let ds = |date: &str| t.lookup("deepseek-chat", Some("deepseek"), at(date)).unwrap();
        assert_eq!(ds("2025-03-01").price.output, 1.10);
        assert_eq!(ds("2025-09-10").price.input, 0.56);
        assert_eq!(ds("2025-10-01").price.cache_read, 0.028);

        let history: Vec<&str> = t.history("deepseek-reasoner", None).iter().map(|e| e.effective.as_str()).collect();
        assert_eq!(history, ["2025-01-20", "2025-09-05", "2025-09-29"]);
        let gpt4o = t.history("openai/gpt-4o-2024-11-20", Some("openai"));
        assert_eq!(gpt4o.len(), 2);
        assert!(gpt4o[0].effective_us < gpt4o[1].effective_us);
        assert_eq!((gpt4o[0].price.input, gpt4o[1].price.input), (5.0, 2.5));
    }

    #[test]
    fn history_follows_the_provider_hint() {
        let t = PriceTable::embedded().unwrap();
        let h = t.history("llama-3.3-70b", Some("bedrock"));
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].provider.as_str(), h[0].price.input), ("bedrock", 0.72));
        assert_eq!(t.history("llama-3.3-70b", None)[0].provider, "groq");
    }

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-03-01"), Some(11_017));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("2025-06-10"), Some(20_249));
        for bad in ["2025-02-29", "2025-13-01", "2025-00-10", "2025-6-10", "2025/06/10", "20250610", "2025-06-1x", ""] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    const USER: &str = r#"
version = "acme-7"

# override the current gpt-4o price (same id, provider, effective)
[[model]]
id = "gpt-4o"
provider = "openai"
effective = "2024-10-02"
input = 2.0
output = 8
cache_read = 1.0

# a negotiated future price: extends the history
[[model]]
id = "GPT-4o"
provider = "OpenAI"
effective = 2026-12-01
input = 1.5
output = 6.0

# a model the embedded table does not know, with an Azure deployment name as alias
[[model]]
id = "acme-coder"
provider = "acme"
aliases = ["prod-coder-deployment"]
effective = "2026-01-01"
input = 0.5
output = 1.0
cache_write = 0.75

# Llama on a provider the embedded table does not list
[[model]]
id = "llama-3.3-70b-instruct"
provider = "deepinfra"
effective = "2025-01-01"
input = 0.23
output = 0.40
"#;

    #[test]
    fn user_file_overrides_and_adds_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.toml");
        std::fs::write(&path, USER).unwrap();
        let embedded = PriceTable::embedded().unwrap();
        let t = PriceTable::load(Some(&path)).unwrap();
        assert_eq!(t.version(), "2026-11-01+acme-7");
        assert_eq!(t.len(), embedded.len() + 3, "one override, three additions");

        let gpt4o = t.lookup("gpt-4o-2024-08-06", None, at("2025-01-01")).unwrap();
        assert_eq!((gpt4o.price.input, gpt4o.price.output, gpt4o.price.cache_read), (2.0, 8.0, 1.0));
        assert_eq!(gpt4o.price.cache_write, 2.0, "absent cache_write is the input price");
        assert_eq!(t.lookup("gpt-4o", None, at("2026-12-02")).unwrap().price.input, 1.5);
        assert_eq!(t.history("gpt-4o", None).len(), 3);
        // the dated snapshot is untouched
        assert_eq!(t.lookup("gpt-4o-2024-05-13", None, now()).unwrap().price.input, 5.0);

        let acme = t.lookup("azure/prod-coder-deployment", None, now()).unwrap();
        assert_eq!((acme.id.as_str(), acme.provider.as_str()), ("acme-coder", "acme"));
        assert_eq!((acme.price.cache_read, acme.price.cache_write), (0.5, 0.75));
        assert!(t.lookup("acme-coder-v2", None, now()).is_some());

        // the user's provider is the default for its id now, other hints still work
        assert_eq!(t.lookup("llama-3.3-70b-instruct", None, now()).unwrap().provider, "deepinfra");
        assert_eq!(t.lookup("llama-3.3-70b-instruct", Some("deepinfra"), now()).unwrap().price.input, 0.23);
        assert_eq!(t.lookup("llama-3.3-70b-instruct", Some("groq"), now()).unwrap().price.input, 0.59);
        assert_eq!(t.lookup("llama-3.3-70b-versatile", None, now()).unwrap().provider, "groq");
        // the embedded table is unchanged by loading
        assert_eq!(embedded.lookup("gpt-4o", None, now()).unwrap().price.input, 2.5);
        assert!(PriceTable::load(None).unwrap().lookup("acme-coder", None, now()).is_none());
    }

    #[test]
    fn merge_with_same_key_replaces_and_new_keys_add() {
        let mut a = PriceTable::from_toml_str(
            "version = \"a\"\n[[model]]\nid = \"m\"\nprovider = \"p\"\neffective = \"2025-01-01\"\ninput = 1\noutput = 2\n",
        )
        .unwrap();
        let b = PriceTable::from_toml_str(
            "[[model]]\nid = \"m\"\nprovider = \"p\"\neffective = \"2025-01-01\"\ninput = 3\noutput = 4\n\
             [[model]]\nid = \"m\"\nprovider = \"p\"\neffective = \"2024-01-01\"\ninput = 5\noutput = 6\n",
        )
        .unwrap();
        a.merge(b);
        assert_eq!(a.version(), "a", "a file without a version leaves it alone");
        assert_eq!(a.len(), 2);
        let h = a.history("m", None);
        assert_eq!((h[0].effective.as_str(), h[0].price.input), ("2024-01-01", 5.0));
        assert_eq!((h[1].effective.as_str(), h[1].price.input), ("2025-01-01", 3.0));
    }

    #[test]
    fn malformed_user_files_name_the_entry() {
        let entry = |body: &str| {
            format!("[[model]]\nid = \"ok\"\nprovider = \"p\"\neffective = \"2025-01-01\"\ninput = 1\noutput = 1\n\n[[model]]\n{body}\n")
        };
        let cases = [
            (entry("id = \"bad-date\"\nprovider = \"p\"\neffective = \"2025-02-30\"\ninput = 1\noutput = 1"), "bad-date", "2025-02-30"),
            (entry("id = \"neg\"\nprovider = \"p\"\neffective = \"2025-01-01\"\ninput = -1\noutput = 1"), "neg", "input"),
            (entry("id = \"str\"\nprovider = \"p\"\neffective = \"2025-01-01\"\ninput = \"cheap\"\noutput = 1"), "str", "cheap"),
            (entry("id = \"noout\"\nprovider = \"p\"\neffective = \"2025-01-01\"\ninput = 1"), "noout", "output"),
            (entry("id = \"typo\"\nprovider = \"p\"\neffective = \"2025-01-01\"\ninput = 1\noutput = 1\ncache_reed = 0.1"), "typo", "cache_reed"),
            (entry("id = \"\"\nprovider = \"p\"\neffective = \"2025-01-01\"\ninput = 1\noutput = 1"), "", "id"),
            (entry("id = \"ok\"\nprovider = \"p\"\neffective = \"2025-01-01\"\ninput = 2\noutput = 2"), "ok", "second entry"),
            (entry("id = \"ts\"\nprovider = \"p\"\neffective = 2025-01-01T10:00:00Z\ninput = 1\noutput = 1"), "ts", "effective"),
        ];
        for (text, id, detail) in cases {
            let err = PriceTable::from_toml_str(&text).unwrap_err();
            match &err {
                PriceError::Entry { index, id: got, .. } => {
                    assert_eq!(*index, 2, "{err}");
                    assert_eq!(got, id, "{err}");
                }
                other => panic!("expected an entry error, got {other}"),
            }
            let message = err.to_string();
            assert!(message.contains("entry 2") && message.contains(detail), "{message}");
        }

        let syntax = PriceTable::from_toml_str("[[model]\nid = 1").unwrap_err();
        assert!(matches!(syntax, PriceError::Parse { .. }), "{syntax}");
        let unknown_top = PriceTable::from_toml_str("versoin = \"x\"").unwrap_err();
        assert!(unknown_top.to_string().contains("versoin"), "{unknown_top}");
        let ambiguous = PriceTable::from_toml_str(
            "[[model]]\nid = \"a\"\nprovider = \"p\"\naliases = [\"x\"]\neffective = \"2025-01-01\"\ninput = 1\noutput = 1\n\
             [[model]]\nid = \"b\"\nprovider = \"p\"\naliases = [\"X\"]\neffective = \"2025-01-01\"\ninput = 1\noutput = 1\n",
        )
        .unwrap_err();
        assert!(ambiguous.to_string().contains("`x` names both"), "{ambiguous}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.toml");
        std::fs::write(
            &path,
            entry("id = \"neg\"\nprovider = \"p\"\neffective = \"2025-01-01\"\ninput = 1\noutput = -2"),
        )
        .unwrap();
        let err = PriceTable::load(Some(&path)).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()) && message.contains("`neg`"), "{message}");
        let missing = PriceTable::load(Some(&dir.path().join("absent.toml"))).unwrap_err();
        assert!(matches!(missing, PriceError::Read { .. }), "{missing}");
    }

    #[test]
    fn call_cost_arithmetic() {
        // Claude Sonnet 4.5: 3 / 15 / read 0.30 / write 3.75
        let sonnet = Price { input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75 };
        // 1M input of which 600k read and 100k written: 300k*3 + 600k*0.3 + 100k*3.75 = 0.9 + 0.18 + 0.375;
        // 200k output * 15 = 3.0  => 4.455
        let c = call_cost(&sonnet, Some(1_000_000), Some(200_000), Some(600_000), Some(100_000)).unwrap();
        assert!(close(c, 4.455), "{c}");
        // plain call: 1,000 in, 500 out = 0.003 + 0.0075
        assert!(close(call_cost(&sonnet, Some(1_000), Some(500), None, None).unwrap(), 0.0105));
        // only output known
        assert!(close(call_cost(&sonnet, None, Some(2_000), None, None).unwrap(), 0.03));
        // only cache read known: 10k * 0.3 / 1M
        assert!(close(call_cost(&sonnet, None, None, Some(10_000), None).unwrap(), 0.003));
        // cache larger than input (input reported without cache): uncached clamps to 0, cache still billed
        assert!(close(call_cost(&sonnet, Some(100), Some(0), Some(1_000), Some(0)).unwrap(), 0.0003));
        // negative counts are ignored
        assert!(close(call_cost(&sonnet, Some(-5), Some(-5), Some(-5), Some(-5)).unwrap(), 0.0));
        // nothing known
        assert_eq!(call_cost(&sonnet, None, None, None, None), None);
        // zero tokens is a known zero
        assert_eq!(call_cost(&sonnet, Some(0), Some(0), None, None), Some(0.0));

        // with a table price: gpt-4o-mini, 10k input of which 4k cached, 1k output
        // 6k*0.15 + 4k*0.075 + 1k*0.6 = 900 + 300 + 600 = 1800 micro-USD
        let t = PriceTable::embedded().unwrap();
        let mini = t.lookup("gpt-4o-mini-2024-07-18", Some("openai"), now()).unwrap();
        let c = call_cost(&mini.price, Some(10_000), Some(1_000), Some(4_000), None).unwrap();
        assert!(close(c, 0.0018), "{c}");
    }

    #[test]
    fn provider_hints_normalize() {
        assert_eq!(normalize_provider("aws.bedrock"), "bedrock");
        assert_eq!(normalize_provider("az.ai.openai"), "openai");
        assert_eq!(normalize_provider("gcp.vertex_ai"), "google");
        assert_eq!(normalize_provider("gcp.gemini"), "google");
        assert_eq!(normalize_provider("together_ai"), "together");
        assert_eq!(normalize_provider("fireworks_ai"), "fireworks");
        assert_eq!(normalize_provider("mistral_ai"), "mistral");
        assert_eq!(normalize_provider("x_ai"), "xai");
        assert_eq!(normalize_provider(" DeepInfra "), "deepinfra");
    }
}
