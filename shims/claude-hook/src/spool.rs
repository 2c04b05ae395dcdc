//! The local spool: OTLP requests the collector did not take, kept for the next call.
//!
//! `spool.bin` holds length-prefixed records (`u32` LE length, `u8` kind, body), bounded in size:
//! when full, the oldest records are dropped and `dropped` counts them. Every change happens under
//! `spool.lock` (created with `create_new`; a lock older than `STALE_LOCK` is taken over) and is
//! written atomically (temporary file + rename) or appended in one write. A flush *claims* the
//! spool by renaming it to `claim-<pid>-<nanos>.bin`, sends without holding the lock, then puts
//! back what failed (in front) and deletes the claim, so concurrent hook processes neither lose
//! nor duplicate records. A claim left by a killed process is adopted after `STALE_CLAIM`.
//! The directory also holds the PreToolUse start times (`tool-<span id>.start`).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const SPOOL: &str = "spool.bin";
const LOCK: &str = "spool.lock";
const DROPPED: &str = "dropped";
const CLAIM_PREFIX: &str = "claim-";
const STALE_LOCK: Duration = Duration::from_secs(10);
const STALE_CLAIM: Duration = Duration::from_secs(60);
const STALE_TOOL_START: Duration = Duration::from_secs(24 * 3600);
const HEADER: usize = 5;

/// Which OTLP endpoint a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Logs = 1,
    Traces = 2,
}

impl Kind {
    pub fn path(self) -> &'static str {
        match self {
            Kind::Logs => "/v1/logs",
            Kind::Traces => "/v1/traces",
        }
    }
}

/// One encoded OTLP request.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub kind: Kind,
    pub body: Vec<u8>,
}

impl Record {
    fn size(&self) -> u64 {
        (HEADER + self.body.len()) as u64
    }
}

#[derive(Debug)]
pub enum SpoolError {
    Io(std::io::Error),
    /// The lock was not free before the deadline.
    Busy,
}

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolError::Io(e) => write!(f, "spool: {e}"),
            SpoolError::Busy => f.write_str("spool: lock busy until the deadline"),
        }
    }
}

impl std::error::Error for SpoolError {}

impl From<std::io::Error> for SpoolError {
    fn from(e: std::io::Error) -> Self {
        SpoolError::Io(e)
    }
}

/// Records taken out of the spool for sending; give them back with `Spool::finish`.
#[derive(Debug)]
pub struct Claim {
    files: Vec<PathBuf>,
    pub records: Vec<Record>,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
}

struct Lock(PathBuf);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

pub fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.size() as usize).sum());
    for r in records {
        out.extend_from_slice(&(r.body.len() as u32).to_le_bytes());
        out.push(r.kind as u8);
        out.extend_from_slice(&r.body);
    }
    out
}

/// Decode records; a torn tail (a write cut short) and unknown kinds are skipped.
pub fn decode(mut bytes: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    while bytes.len() >= HEADER {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let kind = bytes[4];
        let Some(body) = bytes.get(HEADER..HEADER + len) else { break };
        match kind {
            1 => out.push(Record { kind: Kind::Logs, body: body.to_vec() }),
            2 => out.push(Record { kind: Kind::Traces, body: body.to_vec() }),
            _ => {}
        }
        bytes = &bytes[HEADER + len..];
    }
    out
}

fn age(path: &Path) -> Option<Duration> {
    let m = fs::metadata(path).ok()?.modified().ok()?;
    SystemTime::now().duration_since(m).ok()
}

/// The lock's holder died (Linux: no `/proc/<pid>`), e.g. ended by its own watchdog mid-write.
fn holder_is_gone(lock: &Path) -> bool {
    let Some(pid) = fs::read_to_string(lock).ok().and_then(|s| s.trim().parse::<u32>().ok()) else { return false };
    pid != std::process::id() && Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

impl Spool {
    pub fn new(dir: PathBuf, max_bytes: u64) -> Spool {
        Spool { dir, max_bytes }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn lock(&self, deadline: Instant) -> Result<Lock, SpoolError> {
        fs::create_dir_all(&self.dir)?;
        let path = self.path(LOCK);
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(Lock(path));
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    if age(&path).is_some_and(|a| a > STALE_LOCK) || holder_is_gone(&path) {
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(SpoolError::Busy);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Cheap check without the lock: is there anything to flush?
    pub fn has_pending(&self) -> bool {
        fs::metadata(self.path(SPOOL)).is_ok_and(|m| m.len() > 0) || self.stale_claims().next().is_some()
    }

    fn stale_claims(&self) -> impl Iterator<Item = PathBuf> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(CLAIM_PREFIX)))
            .filter(|p| age(p).is_some_and(|a| a > STALE_CLAIM))
    }

    fn read_spool(&self) -> Result<Vec<Record>, SpoolError> {
        match fs::read(self.path(SPOOL)) {
            Ok(b) => Ok(decode(&b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Replace `spool.bin` atomically with `records`, dropping the oldest beyond the size bound.
    fn rewrite(&self, mut records: Vec<Record>) -> Result<(), SpoolError> {
        let mut total: u64 = records.iter().map(Record::size).sum();
        let mut dropped = 0u64;
        let mut first = 0;
        while total > self.max_bytes && first < records.len() {
            total -= records[first].size();
            first += 1;
            dropped += 1;
        }
        records.drain(..first);
        if dropped > 0 {
            self.add_dropped(dropped)?;
        }
        let target = self.path(SPOOL);
        if records.is_empty() {
            return match fs::remove_file(&target) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            };
        }
        let tmp = self.path(&format!("spool.{}.tmp", std::process::id()));
        let mut f = File::create(&tmp)?;
        f.write_all(&encode(&records))?;
        drop(f);
        fs::rename(&tmp, &target)?;
        Ok(())
    }

    fn add_dropped(&self, n: u64) -> Result<(), SpoolError> {
        let path = self.path(DROPPED);
        let old = fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
        fs::write(path, (old + n).to_string())?;
        Ok(())
    }

    /// Append records (oldest dropped when the bound is exceeded).
    pub fn append(&self, records: &[Record], deadline: Instant) -> Result<(), SpoolError> {
        if records.is_empty() {
            return Ok(());
        }
        let _lock = self.lock(deadline)?;
        let current = fs::metadata(self.path(SPOOL)).map(|m| m.len()).unwrap_or(0);
        let adding: u64 = records.iter().map(Record::size).sum();
        if current + adding <= self.max_bytes {
            let mut f = OpenOptions::new().create(true).append(true).open(self.path(SPOOL))?;
            f.write_all(&encode(records))?;
            return Ok(());
        }
        let mut all = self.read_spool()?;
        all.extend_from_slice(records);
        self.rewrite(all)
    }

    /// Take everything spooled (stale claims of killed processes first, then `spool.bin`).
    pub fn claim(&self, deadline: Instant) -> Result<Claim, SpoolError> {
        let _lock = self.lock(deadline)?;
        let mut files = Vec::new();
        let mut stale: Vec<(SystemTime, PathBuf)> = self
            .stale_claims()
            .map(|p| (fs::metadata(&p).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH), p))
            .collect();
        stale.sort();
        for (_, p) in stale {
            let mine = self.path(&format!("{CLAIM_PREFIX}{}-{}.bin", std::process::id(), now_nanos()));
            if fs::rename(&p, &mine).is_ok() {
                files.push(mine);
            }
        }
        let mine = self.path(&format!("{CLAIM_PREFIX}{}-{}.bin", std::process::id(), now_nanos()));
        match fs::rename(self.path(SPOOL), &mine) {
            Ok(()) => files.push(mine),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let mut records = Vec::new();
        for f in &files {
            records.extend(decode(&fs::read(f)?));
        }
        Ok(Claim { files, records })
    }

    /// Put back the claimed records that were not delivered (in front of anything spooled since),
    /// then delete the claim files.
    pub fn finish(&self, claim: Claim, unsent: Vec<Record>, deadline: Instant) -> Result<(), SpoolError> {
        let _lock = self.lock(deadline)?;
        // Nothing delivered and nothing spooled meanwhile (the collector is still away): move the
        // one claim file back instead of rewriting it, so a down collector costs O(1) per call.
        let untouched = unsent.len() == claim.records.len() && claim.files.len() == 1;
        if untouched && !self.path(SPOOL).exists() && fs::rename(&claim.files[0], self.path(SPOOL)).is_ok() {
            return Ok(());
        }
        if !unsent.is_empty() {
            let mut all = unsent;
            all.extend(self.read_spool()?);
            self.rewrite(all)?;
        }
        for f in claim.files {
            let _ = fs::remove_file(f);
        }
        Ok(())
    }

    /// Read and reset the dropped-records counter.
    pub fn take_dropped(&self, deadline: Instant) -> Result<u64, SpoolError> {
        let path = self.path(DROPPED);
        if !path.exists() {
            return Ok(0);
        }
        let _lock = self.lock(deadline)?;
        let n = fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
        let _ = fs::remove_file(&path);
        Ok(n)
    }

    fn tool_path(&self, span_id: &[u8; 8]) -> PathBuf {
        let hex: String = span_id.iter().map(|b| format!("{b:02x}")).collect();
        self.path(&format!("tool-{hex}.start"))
    }

    /// Remember when a tool call started (PreToolUse).
    pub fn save_tool_start(&self, span_id: &[u8; 8], start_ns: u64) -> Result<(), SpoolError> {
        fs::create_dir_all(&self.dir)?;
        let target = self.tool_path(span_id);
        let tmp = target.with_extension(format!("{}.tmp", std::process::id()));
        fs::write(&tmp, start_ns.to_string())?;
        fs::rename(tmp, target)?;
        Ok(())
    }

    /// The saved start of a tool call, removed once read.
    pub fn take_tool_start(&self, span_id: &[u8; 8]) -> Option<u64> {
        let path = self.tool_path(span_id);
        let v = fs::read_to_string(&path).ok()?.trim().parse().ok();
        let _ = fs::remove_file(path);
        v
    }

    /// Remove start times of tool calls that never ended (denied, interrupted sessions).
    pub fn sweep_tool_starts(&self) {
        for p in fs::read_dir(&self.dir).into_iter().flatten().flatten().map(|e| e.path()) {
            let is_start = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("tool-"));
            if is_start && age(&p).is_some_and(|a| a > STALE_TOOL_START) {
                let _ = fs::remove_file(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ac-spool-{name}-{}-{}", std::process::id(), now_nanos()));
        fs::create_dir_all(&d).expect("dir");
        d
    }

    fn rec(i: u8, len: usize) -> Record {
        Record { kind: if i & 1 == 0 { Kind::Logs } else { Kind::Traces }, body: vec![i; len] }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    #[test]
    fn records_round_trip_and_torn_tails_are_skipped() {
        let rs = vec![rec(0, 3), rec(1, 0), rec(2, 10)];
        let mut bytes = encode(&rs);
        assert_eq!(decode(&bytes), rs);
        bytes.extend_from_slice(&[9, 0, 0, 0, 1, 1]);
        assert_eq!(decode(&bytes), rs);
    }

    #[test]
    fn bounded_oldest_dropped_and_counted() {
        let dir = tmp("bound");
        let s = Spool::new(dir.clone(), 3 * (HEADER as u64 + 10));
        for i in 0..5 {
            s.append(&[rec(i, 10)], soon()).expect("append");
        }
        let c = s.claim(soon()).expect("claim");
        assert_eq!(c.records.iter().map(|r| r.body[0]).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(s.take_dropped(soon()).expect("dropped"), 2);
        assert_eq!(s.take_dropped(soon()).expect("dropped"), 0);
        s.finish(c, vec![], soon()).expect("finish");
        assert!(!s.has_pending());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn unsent_go_back_in_front_of_newer_records() {
        let dir = tmp("front");
        let s = Spool::new(dir.clone(), 1 << 20);
        s.append(&[rec(1, 4), rec(2, 4)], soon()).expect("append");
        let c = s.claim(soon()).expect("claim");
        assert_eq!(c.records.len(), 2);
        // Another process spools while this one is flushing.
        s.append(&[rec(3, 4)], soon()).expect("append");
        let unsent = vec![c.records[1].clone()];
        s.finish(c, unsent, soon()).expect("finish");
        let c = s.claim(soon()).expect("claim");
        assert_eq!(c.records.iter().map(|r| r.body[0]).collect::<Vec<_>>(), vec![2, 3]);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn nothing_sent_puts_the_claim_back_whole() {
        let dir = tmp("back");
        let s = Spool::new(dir.clone(), 1 << 20);
        s.append(&[rec(1, 4), rec(2, 4)], soon()).expect("append");
        let c = s.claim(soon()).expect("claim");
        let unsent = c.records.clone();
        s.finish(c, unsent, soon()).expect("finish");
        let c = s.claim(soon()).expect("claim");
        assert_eq!(c.records.iter().map(|r| r.body[0]).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(fs::read_dir(&dir).expect("dir").count(), 1, "only the claim file");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn concurrent_appends_lose_nothing() {
        let dir = tmp("conc");
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let s = Spool::new(dir, 1 << 20);
                    for i in 0..20u8 {
                        s.append(&[Record { kind: Kind::Logs, body: vec![t, i] }], soon()).expect("append");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        let c = Spool::new(dir.clone(), 1 << 20).claim(soon()).expect("claim");
        let mut got: Vec<Vec<u8>> = c.records.into_iter().map(|r| r.body).collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 160);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_dead_holders_lock_is_taken_over() {
        let dir = tmp("deadlock");
        let s = Spool::new(dir.clone(), 1 << 20);
        // No live process has this pid (above the kernel's pid_max).
        fs::write(dir.join(LOCK), "4294967").expect("lock");
        s.append(&[rec(1, 1)], Instant::now() + Duration::from_millis(200)).expect("lock taken over");
        fs::write(dir.join(LOCK), std::process::id().to_string()).expect("own lock");
        assert!(matches!(s.append(&[rec(2, 1)], Instant::now() + Duration::from_millis(20)), Err(SpoolError::Busy)));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn tool_start_is_read_once() {
        let dir = tmp("tool");
        let s = Spool::new(dir.clone(), 1 << 20);
        s.save_tool_start(&[1; 8], 42).expect("save");
        assert_eq!(s.take_tool_start(&[1; 8]), Some(42));
        assert_eq!(s.take_tool_start(&[1; 8]), None);
        let _ = fs::remove_dir_all(dir);
    }
}
