//! The alerts runner: owns the evaluator (behind a short lock: the pipeline's commit hook calls
//! `observe`, the runner's 1 s tick calls `tick`), and one tokio task fed by a bounded channel
//! that announces each firing / resolution at once (an `alert` live message, the firing gauges
//! for `/metrics`, the rule's action through the control plane, audited as `rule:<name>`, and its
//! webhook queued), then hands it to a store task that writes whatever queued meanwhile to
//! `alerts` in one `Store::apply_now` commit, in order. So a storm of alerts costs one small
//! commit per drain and never waits behind DuckDB. The hook only `try_send`s: a full channel
//! drops events with an error log, it never blocks the pipeline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duckdb::params;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::engine::{Engine, Event, RuleSet};
use super::webhook::{Delivery, Webhooks};
use super::{Action, AlertConfig, AlertError, RuleSpec};
use crate::control::model::Kind as CmdKind;
use crate::control::{CommandRequest, Control};
use crate::live::{Draft, Hub};
use crate::store::writer::CommitHook;
use crate::store::Store;

/// Live message type.
pub const ALERT: &str = "alert";
const CHANNEL: usize = 4096;
/// Most alert changes stored in one commit.
const DRAIN: usize = 4096;
/// Drains queued for the store task before the runner waits for it.
const STORE_QUEUE: usize = 256;

/// The alerts plane. Clone freely.
#[derive(Clone)]
pub struct Alerts {
    engine: Arc<Mutex<Engine>>,
    rules: RuleSet,
    file_rules: Arc<Vec<RuleSpec>>,
    api_rules: Arc<Mutex<Vec<RuleSpec>>>,
    tx: mpsc::Sender<Vec<Event>>,
    rx: Arc<Mutex<Option<mpsc::Receiver<Vec<Event>>>>>,
    firing: Arc<Mutex<BTreeMap<(String, String), u32>>>,
    clock: crate::sessions::Clock,
    secret: Option<String>,
}

impl Alerts {
    /// Before the store opens (the hook goes to `Store::open`).
    pub fn new(cfg: &AlertConfig, clock: crate::sessions::Clock) -> Alerts {
        let rules = RuleSet::default();
        rules.set(cfg.file_rules.clone());
        let (tx, rx) = mpsc::channel(CHANNEL);
        Alerts {
            engine: Arc::new(Mutex::new(Engine::unseeded(rules.clone()))),
            rules,
            file_rules: Arc::new(cfg.file_rules.clone()),
            api_rules: Arc::default(),
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
            firing: Arc::default(),
            clock,
            secret: cfg.webhook_secret.clone(),
        }
    }

    /// The commit hook: evaluate each batch in order (short lock, no I/O), hand events over.
    pub fn hook(&self) -> CommitHook {
        let (engine, tx, clock) = (self.engine.clone(), self.tx.clone(), self.clock.clone());
        Box::new(move |b| {
            let events = engine.lock().unwrap_or_else(|p| p.into_inner()).observe(&b, clock());
            if !events.is_empty() && tx.try_send(events).is_err() {
                tracing::error!("alert events dropped: the alerts runner is behind");
            }
        })
    }

    /// Rules made through the API, read back at start.
    pub async fn load(&self, store: &Store) -> Result<(), AlertError> {
        let rows = store.reader.query_objects("SELECT spec FROM alert_rules ORDER BY created_at", vec![]).await?;
        let mut api = Vec::new();
        for r in rows {
            match r.get("spec").and_then(Value::as_str).map(serde_json::from_str::<RuleSpec>) {
                Some(Ok(spec)) if !self.file_rules.iter().any(|f| f.name == spec.name) => api.push(spec),
                Some(Ok(spec)) => tracing::warn!(rule = %spec.name, "stored rule shadowed by the alerts file"),
                _ => tracing::warn!("an unreadable stored alert rule was skipped"),
            }
        }
        *self.api_rules.lock().unwrap_or_else(|p| p.into_inner()) = api;
        self.publish_rules();
        Ok(())
    }

    /// The last ingest log position the evaluator took in.
    pub fn observed_through(&self) -> u64 {
        self.engine.lock().unwrap_or_else(|p| p.into_inner()).last_pos()
    }

    /// Seed the evaluator from the store (after `load`, before `start`): one read in
    /// `spawn_blocking` while the evaluator is locked (the pipeline waits at its next batch) and
    /// everything it observed so far is committed, so the read covers exactly what it took in.
    /// Until then nothing is evaluated. A failed read is logged and evaluation starts unseeded.
    pub async fn seed(&self, store: &Store) {
        let (engine, clock, writer) = (self.engine.clone(), self.clock.clone(), store.clone());
        let gauges = self.firing.clone();
        let conn = match store.reader.connection() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "alerts: cannot read the store to seed the evaluator");
                engine.lock().unwrap_or_else(|p| p.into_inner()).mark_seeded();
                return;
            }
        };
        let started = std::time::Instant::now();
        let done = tokio::task::spawn_blocking(move || {
            let mut e = engine.lock().unwrap_or_else(|p| p.into_inner());
            let last = e.last_pos();
            // Observed batches are committed a moment later (`commit_max_delay`, which may be
            // long): ask for that commit now, and again while waiting (a full writer queue
            // drops the ask). The writer does not wait for this thread, so this ends.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let mut asked = None::<std::time::Instant>;
            while *writer.shared.committed_pos.borrow() < last {
                if asked.is_none_or(|a| a.elapsed() >= Duration::from_millis(100)) {
                    writer.commit_through(last);
                    asked = Some(std::time::Instant::now());
                }
                if std::time::Instant::now() > deadline {
                    tracing::warn!(last, "alerts: replayed batches not committed in 60 s; seeding from what is");
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let now = clock();
            let mut events = Vec::new();
            let rules = e.active_rules(now, &mut events);
            match super::seed::read(&conn, &rules, now) {
                Ok(seed) => {
                    let n = (seed.sums.len(), seed.windows.len(), seed.open.len());
                    events.extend(e.seed(seed, now));
                    // Gauges of the restored alerts (events below only add what changes now).
                    let mut f = gauges.lock().unwrap_or_else(|p| p.into_inner());
                    f.clear();
                    for k in e.firing() {
                        *f.entry(k).or_insert(0) += 1;
                    }
                    // Those firing now for the first time are counted when their event is handled.
                    for ev in events.iter().filter(|ev| ev.firing) {
                        let k = (ev.rule.name.clone(), ev.scope.clone());
                        if let Some(n) = f.get_mut(&k) {
                            *n = n.saturating_sub(1);
                            if *n == 0 {
                                f.remove(&k);
                            }
                        }
                    }
                    Ok((events, n))
                }
                Err(err) => {
                    e.mark_seeded();
                    Err((events, err))
                }
            }
        })
        .await;
        let events = match done {
            Ok(Ok((events, (sums, windows, open)))) => {
                tracing::info!(
                    sums,
                    windows,
                    open,
                    ms = started.elapsed().as_millis() as u64,
                    "alerts: evaluator seeded from the store"
                );
                events
            }
            Ok(Err((events, err))) => {
                tracing::error!(error = %err, "alerts: cannot seed the evaluator; it starts from zero");
                events
            }
            Err(err) => {
                tracing::error!(error = %err, "alerts: the seed task failed");
                Vec::new()
            }
        };
        if !events.is_empty() && self.tx.try_send(events).is_err() {
            tracing::error!("alert events dropped: the alerts runner is behind");
        }
    }

    fn publish_rules(&self) {
        let api = self.api_rules.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut all: Vec<RuleSpec> = self.file_rules.as_ref().clone();
        all.extend(api);
        self.rules.set(all);
    }

    /// Every rule with where it comes from.
    pub fn list(&self) -> Vec<Value> {
        let api = self.api_rules.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let tag = |r: &RuleSpec, source: &str| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("source".into(), json!(source));
            }
            v
        };
        self.file_rules.iter().map(|r| tag(r, "file")).chain(api.iter().map(|r| tag(r, "api"))).collect()
    }

    pub fn get(&self, name: &str) -> Option<(RuleSpec, bool)> {
        if let Some(r) = self.file_rules.iter().find(|r| r.name == name) {
            return Some((r.clone(), true));
        }
        self.api_rules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|r| r.name == name)
            .map(|r| (r.clone(), false))
    }

    /// Create (`create`) or replace an API rule: stored first, then in force.
    pub async fn put(&self, store: &Store, spec: RuleSpec, by: &str, create: bool) -> Result<(), AlertError> {
        let spec = spec.validate()?;
        match self.get(&spec.name) {
            Some((_, true)) => return Err(AlertError::FromFile(spec.name)),
            Some(_) if create => return Err(AlertError::Invalid(format!("rule {:?} exists", spec.name))),
            None if !create => return Err(AlertError::NotFound(spec.name)),
            _ => {}
        }
        if create
            && self.file_rules.len() + self.api_rules.lock().unwrap_or_else(|p| p.into_inner()).len()
                >= super::MAX_RULES
        {
            return Err(AlertError::Invalid(format!("at most {} rules", super::MAX_RULES)));
        }
        let (name, text, by, now) =
            (spec.name.clone(), serde_json::to_string(&spec).unwrap_or_default(), by.to_string(), (self.clock)());
        store
            .apply(move |c| {
                c.execute("DELETE FROM alert_rules WHERE name = ?", params![name])?;
                c.execute(
                    "INSERT INTO alert_rules (name, spec, created_by, created_at, updated_at)
                     VALUES (?, ?, ?, make_timestamp(?::BIGINT), make_timestamp(?::BIGINT))",
                    params![name, text, by, now, now],
                )?;
                Ok(())
            })
            .await?;
        {
            let mut api = self.api_rules.lock().unwrap_or_else(|p| p.into_inner());
            api.retain(|r| r.name != spec.name);
            api.push(spec);
        }
        self.publish_rules();
        Ok(())
    }

    pub async fn delete(&self, store: &Store, name: &str) -> Result<(), AlertError> {
        match self.get(name) {
            Some((_, true)) => return Err(AlertError::FromFile(name.into())),
            None => return Err(AlertError::NotFound(name.into())),
            _ => {}
        }
        let n = name.to_string();
        store
            .apply(move |c| {
                c.execute("DELETE FROM alert_rules WHERE name = ?", params![n])?;
                Ok(())
            })
            .await?;
        self.api_rules.lock().unwrap_or_else(|p| p.into_inner()).retain(|r| r.name != name);
        self.publish_rules();
        Ok(())
    }

    /// `agent_console_alert_firing{rule,scope}` gauges (Prometheus text).
    pub fn render_metrics(&self) -> String {
        let f = self.firing.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = String::from(
            "# HELP agent_console_alert_firing Alerts firing now, by rule and scope.\n# TYPE agent_console_alert_firing gauge\n",
        );
        let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        for ((rule, scope), n) in f.iter() {
            s.push_str(&format!("agent_console_alert_firing{{rule=\"{}\",scope=\"{}\"}} {n}\n", esc(rule), esc(scope)));
        }
        s
    }

    /// Start the runner task (after the store and control plane are up).
    pub fn start(
        &self,
        store: Store,
        hub: Arc<Hub>,
        control: Control,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let webhooks = Webhooks::start(store.clone(), self.secret.clone());
        tokio::spawn(async move {
            let Some(mut rx) = rx else { return };
            // Storing runs on its own task, in order, so a commit never delays the next
            // announcement; it ends (after the last change) when this loop drops its sender.
            let (to_store, stored) = mpsc::channel::<Vec<Event>>(STORE_QUEUE);
            let storer = tokio::spawn(store_loop(store.clone(), stored));
            let period = Duration::from_secs(1);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let events = tokio::select! {
                    _ = cancel.cancelled() => break,
                    e = rx.recv() => match e { Some(e) => e, None => break },
                    _ = tick.tick() => {
                        let now = (me.clock)();
                        me.engine.lock().unwrap_or_else(|p| p.into_inner()).tick(now)
                    }
                };
                if events.is_empty() {
                    continue;
                }
                // Announced at once (the live message, like telemetry's, does not wait for
                // DuckDB), then queued for the store.
                for e in &events {
                    me.announce(&store, &hub, &control, &webhooks, e.clone());
                }
                if to_store.send(events).await.is_err() {
                    tracing::error!("the alerts store task is gone");
                    break;
                }
            }
            drop(to_store);
            if let Err(err) = storer.await {
                tracing::error!(error = %err, "the alerts store task failed");
            }
        })
    }

    /// 2-4. Gauges, the live message, the action and the webhook (none of them waits).
    fn announce(&self, store: &Store, hub: &Hub, control: &Control, webhooks: &Webhooks, e: Event) {
        let payload = event_json(&e);
        // 2. Gauges and the live message.
        {
            let mut f = self.firing.lock().unwrap_or_else(|p| p.into_inner());
            let k = (e.rule.name.clone(), e.scope.clone());
            let n = f.entry(k.clone()).or_insert(0);
            if e.firing {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    f.remove(&k);
                }
            }
        }
        let (session, agent, task) = match e.scope.split_once(':') {
            Some(("session", s)) => (Some(s.to_string()), None, None),
            Some(("agent", a)) => (None, Some(a.to_string()), None),
            Some(("task", t)) => (None, None, Some(t.to_string())),
            _ => (None, None, None),
        };
        hub.publish(Draft {
            kind: ALERT,
            session_id: session.map(Arc::from),
            agent_id: agent.map(Arc::from),
            task_id: task.map(Arc::from),
            data: payload.to_string().into(),
        });
        // 3. The action, as an ordinary audited command, off this task.
        if let (true, Some(action)) = (e.firing, e.rule.action) {
            let kind = match action {
                Action::Pause | Action::PauseAgent | Action::PauseTask => CmdKind::Pause,
                Action::Kill => CmdKind::Kill,
                Action::Deny => CmdKind::Deny,
            };
            let by = format!("rule:{}", e.rule.name);
            let reason = message(&e);
            for sid in e.sessions.clone() {
                let (control, by, reason) = (control.clone(), by.clone(), reason.clone());
                tokio::spawn(async move {
                    let mut req = CommandRequest::new(kind);
                    req.reason = Some(reason);
                    if let Err(err) = control.issue(&sid, req, &by).await {
                        tracing::warn!(session = %sid, rule = %by, error = %err, "alert action refused");
                    }
                });
            }
        }
        // 4. The webhook.
        if let Some(url) = &e.rule.webhook {
            webhooks.send(
                Delivery {
                    url: url.clone(),
                    format: e.rule.webhook_format,
                    alert_id: e.alert_id.clone(),
                    rule: e.rule.name.clone(),
                    event: if e.firing { "firing" } else { "resolved" },
                    payload,
                },
                store,
            );
        }
    }
}

/// The store task: each queued drain of alert changes (and whatever queued behind it, up to
/// `DRAIN`) in one commit, in order; ends when the runner drops its sender.
async fn store_loop(store: Store, mut rx: mpsc::Receiver<Vec<Event>>) {
    while let Some(mut events) = rx.recv().await {
        while events.len() < DRAIN {
            match rx.try_recv() {
                Ok(more) => events.extend(more),
                Err(_) => break,
            }
        }
        store_all(&store, events).await;
    }
}

/// Store a drain of alert changes in one small commit, ahead of the telemetry batch (the alerts
/// table reads no telemetry). The alert's state never depends on actions or delivery.
async fn store_all(store: &Store, rows: Vec<Event>) {
    const FIRE: &str =
        "INSERT INTO alerts (alert_id, rule, kind, scope, tier, value, threshold, state, pending_at, fired_at, message)
        VALUES (?, ?, ?, ?, ?, ?, ?, 'firing', make_timestamp(?::BIGINT), make_timestamp(?::BIGINT), ?)";
    const RESOLVE: &str =
        "UPDATE alerts SET state = 'resolved', resolved_at = make_timestamp(?::BIGINT), resolved_value = ?
        WHERE alert_id = ?";
    let n = rows.len();
    let stored = store
        .apply_now(move |c| {
            let (mut fire, mut resolve) = (c.prepare_cached(FIRE)?, c.prepare_cached(RESOLVE)?);
            for e in rows {
                if e.firing {
                    let (kind, msg) = (kind_name(&e), message(&e));
                    let (value, threshold) = (e.value, e.threshold);
                    fire.execute(params![
                        e.alert_id,
                        e.rule.name,
                        kind,
                        e.scope,
                        e.tier,
                        value,
                        threshold,
                        e.pending_us,
                        e.at_us,
                        msg
                    ])?;
                } else {
                    resolve.execute(params![e.at_us, e.value, e.alert_id])?;
                }
            }
            Ok(())
        })
        .await;
    if let Err(err) = stored {
        tracing::error!(error = %err, alerts = n, "cannot store alert changes");
    }
}

fn kind_name(e: &Event) -> String {
    serde_json::to_value(e.rule.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn message(e: &Event) -> String {
    let what = if e.firing { "firing" } else { "resolved" };
    match e.tier {
        Some(t) => format!(
            "{} {what}: {} at {:.6} of {:.6} ({:.0}% tier)",
            e.rule.name,
            e.scope,
            e.value,
            e.rule.threshold,
            t * 100.0
        ),
        None => format!("{} {what}: {} value {:.6}, threshold {:.6}", e.rule.name, e.scope, e.value, e.threshold),
    }
}

/// The alert as JSON (live message and generic webhook body).
pub fn event_json(e: &Event) -> Value {
    let t = crate::live::message::rfc3339;
    json!({
        "alert_id": e.alert_id,
        "event": if e.firing { "firing" } else { "resolved" },
        "state": if e.firing { "firing" } else { "resolved" },
        "rule": e.rule.name,
        "kind": kind_name(e),
        "scope": e.scope,
        "tier": e.tier,
        "value": e.value,
        "threshold": e.threshold,
        "pending_at": t(e.pending_us),
        "fired_at": t(e.fired_us),
        "resolved_at": (!e.firing).then(|| t(e.at_us)),
        "action": e.rule.action,
        "sessions": e.sessions,
        "message": message(e),
    })
}
