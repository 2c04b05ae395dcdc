//! The session state machine (pure: the caller passes the time, no I/O). It owns every tracked
//! session's state and returns a `SessionUpdate` for each change:
//!
//! - `running`: work arrived (a new session starts here; later work wakes `idle` and `finished`).
//! - `errored`: the newest model or tool call failed, or an error event arrived; a later
//!   successful call makes it `running` again.
//! - `idle`: a running session with nothing in flight had no activity for `idle_after`.
//! - `finished`: an explicit end (`SessionEnd`/`Stop` hook, OpenClaw end status, a root agent span
//!   ending), or no activity for `finish_after`. Only work newer than the end reopens it, so
//!   telemetry exported late for the finished part never does.
//! - `paused`: set by control (`set_paused`); activity does not change it; an end still finishes it.
//! - `stuck` (a flag, not a state): a running session with nothing in flight but an open turn
//!   (`UserPromptSubmit` without `Stop`) and no activity for `stuck_after`; a quiet session
//!   with a turn open stays running, so it becomes stuck rather than idle.
//! - `long_tool` (a flag): a tool call started (`PreToolUse` without its `PostToolUse`) and
//!   silent for `stuck_after`: busy, not stuck.
//! - `waiting` (a flag): waiting for a human (a Claude Code `Notification` hook: permission or
//!   idle prompt) until the next work; never stuck or a long tool call while it waits.
//!
//! "Activity" is measured on the collector's clock (arrival), so agents with skewed clocks are not
//! idle on arrival; "newer than the end" compares the records' own times.

use std::sync::Arc;

use agent_console_conventions::status;

use super::signals::Signals;
use crate::model::fastmap::FastMap;
use crate::model::records::{Seen, SessionUpdate};

/// Timeouts, in microseconds, and the memory bound.
#[derive(Debug, Clone, Copy)]
pub struct TrackerConfig {
    pub idle_after_us: i64,
    pub stuck_after_us: i64,
    pub finish_after_us: i64,
    /// Sessions kept in memory; beyond it the longest-finished are forgotten.
    pub max_sessions: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            idle_after_us: 60_000_000,
            stuck_after_us: 300_000_000,
            finish_after_us: 1_800_000_000,
            max_sessions: 100_000,
        }
    }
}

/// One session's state and running totals.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub status: &'static str,
    pub stuck: bool,
    pub since_us: i64,
    pub reason: String,
    pub first_seen_us: i64,
    pub last_seen_us: i64,
    pub last_activity_us: i64,
    /// Record time of the end that finished it (work newer than this reopens the session).
    pub ended_event_us: Option<i64>,
    pub ended_at_us: Option<i64>,
    pub agent_id: Option<String>,
    pub task_id: Option<String>,
    pub parent_session_id: Option<String>,
    pub display_name: Option<String>,
    pub service_name: Option<Arc<str>>,
    pub model: Option<String>,
    pub model_time_us: i64,
    pub open_turn: bool,
    pub open_tools: u32,
    pub waiting: bool,
    pub long_tool: bool,
    pub model_calls: u64,
    pub tool_calls: u64,
    pub errors: u64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cost_usd: f64,
}

impl State {
    fn in_flight(&self) -> bool {
        self.open_turn || self.open_tools > 0
    }

    /// Names, service and parent from a session row, where not known yet.
    fn fill_from(&mut self, r: &Seen) {
        if self.display_name.is_none() {
            self.display_name.clone_from(&r.display_name);
        }
        if self.service_name.is_none() {
            self.service_name.clone_from(&r.service_name);
        }
        if self.parent_session_id.is_none() {
            self.parent_session_id.clone_from(&r.parent_id);
        }
    }
}

/// All tracked sessions.
#[derive(Debug, Default)]
pub struct Tracker {
    cfg: TrackerConfig,
    sessions: FastMap<String, State>,
}

fn secs(us: i64) -> String {
    let s = us as f64 / 1e6;
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Tracker { cfg, sessions: FastMap::default() }
    }

    pub fn get(&self, id: &str) -> Option<&State> {
        self.sessions.get(id)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Restore a session read back from the store at start-up (its activity counts from `now`).
    pub fn restore(&mut self, id: String, mut st: State, now_us: i64) {
        st.last_activity_us = now_us;
        self.sessions.insert(id, st);
    }

    /// Apply one committed batch's signals at collector time `now_us`.
    pub fn observe(&mut self, signals: FastMap<String, Signals>, seen: &[Seen], now_us: i64) -> Vec<SessionUpdate> {
        let mut out = Vec::new();
        let seen_by_id: FastMap<&str, &Seen> = seen.iter().map(|s| (s.id.as_str(), s)).collect();
        for (id, sig) in signals {
            let is_new = !self.sessions.contains_key(&id);
            let st = self.sessions.entry(id.clone()).or_insert_with(|| State {
                first_seen_us: sig.first_us,
                last_seen_us: sig.last_us,
                since_us: now_us,
                ..State::default()
            });
            if let Some(r) = seen_by_id.get(id.as_str()) {
                st.fill_from(r);
            }
            let before = (st.status, st.stuck, st.waiting, st.long_tool);
            let from = if is_new { None } else { Some(st.status) };
            Self::apply(st, &sig, now_us);
            let after = (st.status, st.stuck, st.waiting, st.long_tool);
            if is_new || before != after {
                out.push(update(&id, st, from, now_us));
            }
        }
        self.evict();
        out
    }

    fn apply(st: &mut State, sig: &Signals, now_us: i64) {
        st.first_seen_us = st.first_seen_us.min(sig.first_us);
        st.last_seen_us = st.last_seen_us.max(sig.last_us);
        if st.agent_id.is_none() {
            st.agent_id.clone_from(&sig.agent_id);
        }
        if sig.task_id.is_some() {
            st.task_id.clone_from(&sig.task_id);
        }
        if let Some((t, m)) = &sig.model {
            if st.model.is_none() || *t >= st.model_time_us {
                st.model = Some(m.clone());
                st.model_time_us = *t;
            }
        }
        st.model_calls += sig.model_calls;
        st.tool_calls += sig.tool_calls;
        st.errors += sig.errors;
        st.input_tokens += sig.input_tokens;
        st.output_tokens += sig.output_tokens;
        st.cache_read_tokens += sig.cache_read_tokens;
        st.cache_write_tokens += sig.cache_write_tokens;
        st.cost_usd += sig.cost_usd;
        st.open_tools = (st.open_tools + sig.tools_opened).saturating_sub(sig.tools_closed);
        if let Some((_, open)) = sig.turn {
            st.open_turn = open;
        }

        // Work newer than the end that finished this session (or any work, if not finished).
        let fresh_work = sig.last_work_us.filter(|w| st.ended_event_us.is_none_or(|e| *w > e));
        if fresh_work.is_some() || sig.end.is_some() {
            st.last_activity_us = now_us;
            st.stuck = false;
            st.long_tool = false;
        }
        // Waiting for a human from a prompt until work newer than the prompt.
        match (sig.waiting_us, fresh_work) {
            (Some(w), work) if work.is_none_or(|x| w >= x) => {
                st.waiting = true;
                st.stuck = false;
                st.long_tool = false;
                st.last_activity_us = now_us;
            }
            (_, Some(_)) => st.waiting = false,
            _ => {}
        }
        let set = |st: &mut State, to: &'static str, reason: String| {
            if st.status != to {
                st.status = to;
                st.since_us = now_us;
                st.reason = reason;
            }
        };
        // An end newer than every piece of work in the batch finishes the session.
        if let Some((end_us, reason)) = &sig.end {
            if sig.last_work_us.is_none_or(|w| *end_us >= w) {
                st.ended_event_us = Some(st.ended_event_us.map_or(*end_us, |e| e.max(*end_us)));
                st.ended_at_us = Some(now_us);
                st.open_turn = false;
                st.open_tools = 0;
                st.waiting = false;
                set(st, status::FINISHED, reason.clone());
                return;
            }
        }
        if fresh_work.is_none() {
            if st.status.is_empty() {
                // Only late or bookkeeping records so far: a session, but nothing running.
                set(st, status::IDLE, "no work seen yet".into());
            }
            return;
        }
        if st.status == status::PAUSED {
            return;
        }
        if st.status == status::FINISHED {
            st.ended_event_us = None;
            st.ended_at_us = None;
        }
        let failed_last = sig.error.as_ref().is_some_and(|(e, _)| sig.ok_us.is_none_or(|ok| *e >= ok));
        if failed_last {
            let reason = sig.error.as_ref().map(|(_, r)| r.clone()).unwrap_or_default();
            set(st, status::ERRORED, reason);
        } else if st.status == status::ERRORED && sig.ok_us.is_none() {
            // Plain activity does not clear an error; a successful call does.
        } else {
            let reason = match st.status {
                "" => "first activity".to_owned(),
                s if s == status::ERRORED => "a call succeeded".to_owned(),
                _ => "activity resumed".to_owned(),
            };
            set(st, status::RUNNING, reason);
        }
    }

    /// Time-driven changes at collector time `now_us`: idle, stuck, finished by inactivity.
    pub fn tick(&mut self, now_us: i64) -> Vec<SessionUpdate> {
        let cfg = self.cfg;
        let mut out = Vec::new();
        for (id, st) in self.sessions.iter_mut() {
            if st.status == status::FINISHED || st.status == status::PAUSED {
                continue;
            }
            let quiet = now_us - st.last_activity_us;
            let from = st.status;
            if quiet >= cfg.finish_after_us {
                st.status = status::FINISHED;
                st.stuck = false;
                st.waiting = false;
                st.long_tool = false;
                st.since_us = now_us;
                st.reason = format!("no activity for {}", secs(cfg.finish_after_us));
                st.ended_event_us = Some(st.last_seen_us);
                st.ended_at_us = Some(now_us);
                st.open_turn = false;
                st.open_tools = 0;
            } else if st.status == status::RUNNING && !st.in_flight() && quiet >= cfg.idle_after_us {
                st.status = status::IDLE;
                st.stuck = false;
                st.since_us = now_us;
                st.reason = format!("no activity for {}", secs(cfg.idle_after_us));
            } else if st.status == status::RUNNING
                && !st.waiting
                && st.open_tools > 0
                && !st.long_tool
                && quiet >= cfg.stuck_after_us
            {
                st.long_tool = true;
                st.stuck = false;
                st.reason = format!("long tool call: a tool started {} ago has not finished", secs(quiet));
            } else if st.status == status::RUNNING
                && !st.waiting
                && st.open_tools == 0
                && !st.stuck
                && quiet >= cfg.stuck_after_us
            {
                st.stuck = true;
                st.reason = format!("stuck: no activity for {} while running", secs(cfg.stuck_after_us));
            } else {
                continue;
            }
            out.push(update(id, st, Some(from), now_us));
        }
        out
    }

    /// Control: pause or resume a session. `None` when unknown or already in that state.
    pub fn set_paused(&mut self, id: &str, paused: bool, reason: &str, now_us: i64) -> Option<SessionUpdate> {
        let st = self.sessions.get_mut(id)?;
        let from = st.status;
        let to = match (paused, from) {
            (true, s) if s == status::PAUSED || s == status::FINISHED => return None,
            (true, _) => status::PAUSED,
            (false, s) if s == status::PAUSED => status::RUNNING,
            (false, _) => return None,
        };
        st.status = to;
        st.stuck = false;
        st.since_us = now_us;
        st.last_activity_us = now_us;
        st.reason = reason.to_owned();
        Some(update(id, st, Some(from), now_us))
    }

    /// Forget the longest-finished sessions beyond the memory bound.
    fn evict(&mut self) {
        if self.sessions.len() <= self.cfg.max_sessions {
            return;
        }
        let mut finished: Vec<(i64, String)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.status == status::FINISHED)
            .map(|(k, s)| (s.since_us, k.clone()))
            .collect();
        finished.sort_unstable();
        let excess = self.sessions.len() - self.cfg.max_sessions * 9 / 10;
        for (_, k) in finished.into_iter().take(excess) {
            self.sessions.remove(&k);
        }
    }
}

fn update(id: &str, st: &State, from: Option<&'static str>, now_us: i64) -> SessionUpdate {
    SessionUpdate {
        time_us: now_us,
        session_id: id.to_owned(),
        agent_id: st.agent_id.clone(),
        task_id: st.task_id.clone(),
        parent_session_id: st.parent_session_id.clone(),
        display_name: st.display_name.clone(),
        service_name: st.service_name.clone(),
        from_status: from,
        status: st.status,
        stuck: st.stuck,
        waiting: st.waiting,
        long_tool: st.long_tool,
        reason: st.reason.clone(),
        status_since_us: st.since_us,
        first_seen_us: st.first_seen_us,
        last_seen_us: st.last_seen_us,
        last_activity_us: st.last_activity_us,
        ended_at_us: st.ended_at_us,
        model: st.model.clone(),
        model_calls: st.model_calls,
        tool_calls: st.tool_calls,
        errors: st.errors,
        input_tokens: st.input_tokens,
        output_tokens: st.output_tokens,
        cache_read_tokens: st.cache_read_tokens,
        cache_write_tokens: st.cache_write_tokens,
        cost_usd: st.cost_usd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_console_conventions::status::*;

    const S: i64 = 1_000_000;

    fn tracker() -> Tracker {
        Tracker::new(TrackerConfig {
            idle_after_us: 60 * S,
            stuck_after_us: 300 * S,
            finish_after_us: 1800 * S,
            max_sessions: 4,
        })
    }

    fn work(t: i64) -> Signals {
        Signals { first_us: t, last_us: t, last_work_us: Some(t), ..Default::default() }
    }

    fn one(id: &str, s: Signals) -> FastMap<String, Signals> {
        FastMap::from_iter([(id.to_owned(), s)])
    }

    /// (from, to, stuck) of each update.
    fn moves(u: &[SessionUpdate]) -> Vec<(Option<&'static str>, &'static str, bool)> {
        u.iter().map(|u| (u.from_status, u.status, u.stuck)).collect()
    }

    #[test]
    fn the_state_table() {
        let mut t = tracker();
        let now = 1_000 * S;
        // New session: running.
        assert_eq!(moves(&t.observe(one("a", work(now)), &[], now)), vec![(None, RUNNING, false)]);
        // Quiet for less than the idle time: nothing; then idle.
        assert!(t.tick(now + 59 * S).is_empty());
        assert_eq!(moves(&t.tick(now + 60 * S)), vec![(Some(RUNNING), IDLE, false)]);
        // Work wakes it.
        let u = t.observe(one("a", work(now + 70 * S)), &[], now + 70 * S);
        assert_eq!((moves(&u), u[0].reason.as_str()), (vec![(Some(IDLE), RUNNING, false)], "activity resumed"));
        // A failed call: errored; plain work keeps it errored; a success clears it.
        let mut failed = work(now + 80 * S);
        failed.error = Some((now + 80 * S, "tool call failed: Bash".into()));
        failed.errors = 1;
        assert_eq!(moves(&t.observe(one("a", failed), &[], now + 80 * S)), vec![(Some(RUNNING), ERRORED, false)]);
        assert!(t.observe(one("a", work(now + 81 * S)), &[], now + 81 * S).is_empty());
        let mut ok = work(now + 82 * S);
        ok.ok_us = Some(now + 82 * S);
        assert_eq!(moves(&t.observe(one("a", ok), &[], now + 82 * S)), vec![(Some(ERRORED), RUNNING, false)]);
        // A turn in flight: no idle, but stuck after the stuck time.
        let mut prompt = work(now + 90 * S);
        prompt.turn = Some((now + 90 * S, true));
        assert!(t.observe(one("a", prompt), &[], now + 90 * S).is_empty());
        assert!(t.tick(now + 200 * S).is_empty());
        let u = t.tick(now + 390 * S);
        assert_eq!(moves(&u), vec![(Some(RUNNING), RUNNING, true)]);
        assert!(u[0].reason.starts_with("stuck"), "{}", u[0].reason);
        // Stop: finished (and not stuck any more).
        let mut stop = Signals { first_us: now + 400 * S, last_us: now + 400 * S, ..Default::default() };
        stop.end = Some((now + 400 * S, "Stop".into()));
        stop.turn = Some((now + 400 * S, false));
        let u = t.observe(one("a", stop), &[], now + 400 * S);
        assert_eq!((moves(&u), u[0].reason.as_str()), (vec![(Some(RUNNING), FINISHED, false)], "Stop"));
        assert_eq!(u[0].ended_at_us, Some(now + 400 * S));
        // Late telemetry of the finished part does not reopen it; newer work does.
        assert!(t.observe(one("a", work(now + 399 * S)), &[], now + 410 * S).is_empty());
        assert!(t.tick(now + 5000 * S).is_empty());
        let u = t.observe(one("a", work(now + 5001 * S)), &[], now + 5001 * S);
        assert_eq!(moves(&u), vec![(Some(FINISHED), RUNNING, false)]);
        assert_eq!(u[0].ended_at_us, None);
        // Idle long enough: finished by inactivity.
        assert_eq!(moves(&t.tick(now + 5061 * S)), vec![(Some(RUNNING), IDLE, false)]);
        let u = t.tick(now + 6801 * S);
        assert_eq!(moves(&u), vec![(Some(IDLE), FINISHED, false)]);
        assert_eq!(u[0].reason, "no activity for 1800 s");
    }

    #[test]
    fn ends_in_the_same_batch_and_pause() {
        let mut t = tracker();
        let now = 10 * S;
        // Work, then the end, in one batch: a new session that is already finished.
        let mut s = work(now);
        s.end = Some((now + S, "SessionEnd".into()));
        assert_eq!(moves(&t.observe(one("b", s), &[], now)), vec![(None, FINISHED, false)]);
        // Stop, then a new prompt, in one batch: running again.
        let mut s = work(now + 3 * S);
        s.end = Some((now + 2 * S, "Stop".into()));
        assert_eq!(moves(&t.observe(one("b", s), &[], now + 3 * S)), vec![(Some(FINISHED), RUNNING, false)]);
        // Paused by control: work does not change it, ticks leave it alone, an end finishes it.
        assert_eq!(t.set_paused("b", true, "operator", now + 4 * S).map(|u| u.status), Some(PAUSED));
        assert!(t.set_paused("b", true, "operator", now + 4 * S).is_none());
        assert!(t.observe(one("b", work(now + 5 * S)), &[], now + 5 * S).is_empty());
        assert!(t.tick(now + 100_000 * S).is_empty());
        assert_eq!(t.set_paused("b", false, "operator", now + 6 * S).map(|u| u.status), Some(RUNNING));
    }

    #[test]
    fn totals_accumulate_and_memory_is_bounded() {
        let mut t = tracker();
        let mut s = work(S);
        s.model_calls = 2;
        s.input_tokens = 100;
        s.cost_usd = 0.25;
        s.model = Some((S, "m1".into()));
        let seen = [Seen {
            id: "c".into(),
            first_us: S,
            last_us: S,
            agent_id: Some("ag".into()),
            display_name: Some("ag · c".into()),
            service_name: None,
            task_id: None,
            parent_id: Some("p".into()),
        }];
        let u = t.observe(one("c", s.clone()), &seen, S);
        assert_eq!(u[0].parent_session_id.as_deref(), Some("p"));
        s.model = Some((2 * S, "m2".into()));
        t.observe(one("c", s), &[], 2 * S);
        let st = t.get("c").expect("tracked");
        assert_eq!((st.model_calls, st.input_tokens, st.cost_usd, st.model.as_deref()), (4, 200, 0.5, Some("m2")));
        // Finished sessions are forgotten first once more than `max_sessions` are tracked.
        for (i, id) in ["d", "e", "f", "g"].iter().enumerate() {
            let mut s = work(10 * S + i as i64);
            s.end = Some((10 * S + i as i64, "SessionEnd".into()));
            t.observe(one(id, s), &[], 10 * S + i as i64);
        }
        assert!(t.len() <= 4, "{}", t.len());
        assert!(t.get("c").is_some(), "a running session is never evicted");
    }
}
