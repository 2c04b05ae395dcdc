//! The local spool: hook calls the collector did not take, kept for the next call.
//!
//! `spool.v2` holds framed records: `b"ACS2"`, `u32` LE payload length, `u8` kind, `u32` LE CRC-32
//! of kind and payload, payload. A torn or corrupt record is skipped and counted (`damaged`), and
//! decoding resynchronises at the next frame marker, so one bad record never swallows the ones
//! after it. The spool is bounded in bytes: when full the oldest records are dropped and counted
//! (`dropped`); both counts are reported to the collector once it is reachable.
//!
//! Safety: the directory is 0700 and every file 0600, opened with `O_NOFOLLOW` (a symlink planted
//! in the spool is never followed). Every change happens under an `flock` on `spool.lock` (released
//! by the kernel when its holder dies, in any PID namespace: no stale-lock guessing). A flush
//! *claims* the spool by renaming it to `claim-<pid>-<nanos>.v2` and keeps an `flock` on the claim
//! while sending; a claim whose lock is free belongs to a dead process and is adopted at once.
//! Re-sends are idempotent: each hook call carries a record id the collector stores once.
//!
//! The directory also holds `paused-<hash>` markers: the collector said this session is paused,
//! so a hook call that cannot reach the collector holds (and finally denies) instead of allowing.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const SPOOL: &str = "spool.v2";
/// The pre-v2 spool (length-prefixed OTLP requests); read once and rewritten as v2.
const LEGACY_SPOOL: &str = "spool.bin";
const LOCK: &str = "spool.lock";
const DROPPED: &str = "dropped";
const DAMAGED: &str = "damaged";
const CLAIM_PREFIX: &str = "claim-";
const MAGIC: &[u8; 4] = b"ACS2";
const HEADER: usize = 4 + 4 + 1 + 4;
/// Largest record accepted back from disk.
const MAX_RECORD: usize = 64 * 1024 * 1024;
const STALE_MARKER: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a spooled record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An OTLP logs request (legacy spools only).
    Logs = 1,
    /// An OTLP traces request (legacy spools only).
    Traces = 2,
    /// A hook call: `HookCall::encode`.
    Hook = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Logs),
            2 => Some(Kind::Traces),
            3 => Some(Kind::Hook),
            _ => None,
        }
    }

    /// The collector route a record goes to.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Logs => "/v1/logs",
            Kind::Traces => "/v1/traces",
            Kind::Hook => crate::wire::HOOK_PATH,
        }
    }
}

/// One spooled record.
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

/// A hook call as spooled: its record id, its time and the hook JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct HookCall {
    pub id: [u8; 16],
    pub time_ns: u64,
    pub json: Vec<u8>,
}

impl HookCall {
    pub fn id_hex(&self) -> String {
        crate::wire::hex(&self.id)
    }

    pub fn record(&self) -> Record {
        let mut body = Vec::with_capacity(24 + self.json.len());
        body.extend_from_slice(&self.id);
        body.extend_from_slice(&self.time_ns.to_le_bytes());
        body.extend_from_slice(&self.json);
        Record { kind: Kind::Hook, body }
    }

    pub fn from_record(r: &Record) -> Option<HookCall> {
        if r.kind != Kind::Hook || r.body.len() < 24 {
            return None;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&r.body[..16]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&r.body[16..24]);
        Some(HookCall { id, time_ns: u64::from_le_bytes(t), json: r.body[24..].to_vec() })
    }
}

#[derive(Debug)]
pub enum SpoolError {
    Io(std::io::Error),
    /// The lock was not free before the deadline.
    Busy,
    /// The spool directory is unsafe (a symlink, or not ours to restrict).
    Unsafe(String),
}

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolError::Io(e) => write!(f, "spool: {e}"),
            SpoolError::Busy => f.write_str("spool: lock busy until the deadline"),
            SpoolError::Unsafe(m) => write!(f, "spool: {m}"),
        }
    }
}

impl std::error::Error for SpoolError {}

impl From<std::io::Error> for SpoolError {
    fn from(e: std::io::Error) -> Self {
        SpoolError::Io(e)
    }
}

/// CRC-32 (IEEE 802.3, reflected), bitwise.
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for part in parts {
        for &b in *part {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
    }
    !crc
}

pub fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.size() as usize).sum());
    for r in records {
        let kind = [r.kind as u8];
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(r.body.len() as u32).to_le_bytes());
        out.push(r.kind as u8);
        out.extend_from_slice(&crc32(&[&kind, &r.body]).to_le_bytes());
        out.extend_from_slice(&r.body);
    }
    out
}

/// What `decode` found.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    pub records: Vec<Record>,
    /// Damaged regions skipped (torn writes, corruption, unknown kinds).
    pub damaged: u64,
}

fn find_magic(bytes: &[u8], from: usize) -> Option<usize> {
    bytes.get(from..)?.windows(4).position(|w| w == MAGIC).map(|p| p + from)
}

/// Decode framed records. Never panics and never loops: each step moves forward; a frame whose
/// header or checksum is wrong is counted once and decoding goes on at the next marker.
pub fn decode(bytes: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let mut pos = 0;
    let mut in_damage = false;
    while pos < bytes.len() {
        let frame = bytes.get(pos..pos + HEADER).filter(|h| &h[..4] == MAGIC).and_then(|h| {
            let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
            let kind = h[8];
            let crc = u32::from_le_bytes([h[9], h[10], h[11], h[12]]);
            if len > MAX_RECORD {
                return None;
            }
            let body = bytes.get(pos + HEADER..pos + HEADER + len)?;
            (crc32(&[&[kind], body]) == crc).then_some((Kind::from_u8(kind), body, len))
        });
        match frame {
            Some((kind, body, len)) => {
                match kind {
                    Some(kind) => out.records.push(Record { kind, body: body.to_vec() }),
                    None => out.damaged += 1,
                }
                in_damage = false;
                pos += HEADER + len;
            }
            None => {
                if !in_damage {
                    out.damaged += 1;
                    in_damage = true;
                }
                match find_magic(bytes, pos + 1) {
                    Some(next) => pos = next,
                    None => break,
                }
            }
        }
    }
    out
}

/// The pre-v2 format: `u32` length, `u8` kind, body; a torn tail ends it.
fn decode_legacy(mut bytes: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let Some(body) = bytes.get(5..5 + len) else { break };
        if let Some(kind @ (Kind::Logs | Kind::Traces)) = Kind::from_u8(bytes[4]) {
            out.push(Record { kind, body: body.to_vec() });
        }
        bytes = &bytes[5 + len..];
    }
    out
}

/// Records taken out of the spool for sending; give them back with `Spool::finish`.
#[derive(Debug)]
pub struct Claim {
    files: Vec<PathBuf>,
    /// Locks held on the claim files while they are ours.
    _locks: Vec<File>,
    pub records: Vec<Record>,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
}

/// Open for reading or writing without following a symlink; new files are 0600.
fn open(path: &Path, write: bool, create: bool, append: bool, truncate: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(!write || append)
        .write(write && !append)
        .append(append)
        .create(create)
        .truncate(truncate)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = open(path, false, false, false, false)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// Write a whole file atomically: a fresh temporary (`O_EXCL`, no symlink), then rename.
fn write_atomic(dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), now_nanos()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, target).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

fn age(path: &Path) -> Option<Duration> {
    let m = fs::symlink_metadata(path).ok()?.modified().ok()?;
    SystemTime::now().duration_since(m).ok()
}

/// Hold `f`'s `flock` until the deadline; `None` when it stays taken.
fn lock_until(f: &File, deadline: Instant) -> bool {
    loop {
        match f.try_lock() {
            Ok(()) => return true,
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(_) => return false,
        }
    }
}

fn session_hash(session: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in session.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Spool {
    pub fn new(dir: PathBuf, max_bytes: u64) -> Spool {
        Spool { dir, max_bytes }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Create the directory 0700 (or restrict it); refuse a symlink.
    fn ensure_dir(&self) -> Result<(), SpoolError> {
        match fs::symlink_metadata(&self.dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(SpoolError::Unsafe(format!("{} is a symlink", self.dir.display())))
            }
            Ok(m) if !m.is_dir() => {
                return Err(SpoolError::Unsafe(format!("{} is not a directory", self.dir.display())))
            }
            Ok(m) => {
                if m.permissions().mode() & 0o077 != 0 {
                    fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                        .map_err(|e| SpoolError::Unsafe(format!("cannot restrict {}: {e}", self.dir.display())))?;
                }
            }
            Err(_) => {
                fs::create_dir_all(&self.dir)?;
                fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))?;
            }
        }
        Ok(())
    }

    fn lock(&self, deadline: Instant) -> Result<File, SpoolError> {
        self.ensure_dir()?;
        let f = open(&self.path(LOCK), true, true, false, false)?;
        if lock_until(&f, deadline) {
            Ok(f)
        } else {
            Err(SpoolError::Busy)
        }
    }

    /// Cheap check without the lock: is there anything to flush?
    pub fn has_pending(&self) -> bool {
        let nonempty = |n: &str| fs::symlink_metadata(self.path(n)).is_ok_and(|m| m.is_file() && m.len() > 0);
        nonempty(SPOOL) || nonempty(LEGACY_SPOOL) || self.claims().next().is_some()
    }

    fn claims(&self) -> impl Iterator<Item = PathBuf> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(CLAIM_PREFIX)))
    }

    fn read_spool(&self) -> Result<Vec<Record>, SpoolError> {
        match read_file(&self.path(SPOOL)) {
            Ok(b) => {
                let d = decode(&b);
                if d.damaged > 0 {
                    self.add_count(DAMAGED, d.damaged)?;
                }
                Ok(d.records)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Replace `spool.v2` atomically with `records`, dropping the oldest beyond the size bound.
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
            self.add_count(DROPPED, dropped)?;
        }
        let target = self.path(SPOOL);
        if records.is_empty() {
            return match fs::remove_file(&target) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            };
        }
        write_atomic(&self.dir, &target, &encode(&records))?;
        Ok(())
    }

    fn read_count(&self, name: &str) -> u64 {
        read_file(&self.path(name)).ok().and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok()).unwrap_or(0)
    }

    fn add_count(&self, name: &str, n: u64) -> Result<(), SpoolError> {
        let old = self.read_count(name);
        write_atomic(&self.dir, &self.path(name), (old + n).to_string().as_bytes())?;
        Ok(())
    }

    /// Append records (oldest dropped when the bound is exceeded).
    pub fn append(&self, records: &[Record], deadline: Instant) -> Result<(), SpoolError> {
        if records.is_empty() {
            return Ok(());
        }
        let _lock = self.lock(deadline)?;
        let current = fs::symlink_metadata(self.path(SPOOL)).map(|m| m.len()).unwrap_or(0);
        let adding: u64 = records.iter().map(Record::size).sum();
        if current + adding <= self.max_bytes {
            let mut f = open(&self.path(SPOOL), true, true, true, false)?;
            f.write_all(&encode(records))?;
            return Ok(());
        }
        let mut all = self.read_spool()?;
        all.extend_from_slice(records);
        self.rewrite(all)
    }

    /// Take everything spooled: claims of dead processes first, then the legacy spool, then
    /// `spool.v2`. The claim files stay locked by this process until `finish`.
    pub fn claim(&self, deadline: Instant) -> Result<Claim, SpoolError> {
        let _lock = self.lock(deadline)?;
        let mut files = Vec::new();
        let mut locks = Vec::new();
        let mut records = Vec::new();
        let mut damaged = 0;
        let mut adopt: Vec<(SystemTime, PathBuf)> = self
            .claims()
            .map(|p| (fs::symlink_metadata(&p).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH), p))
            .collect();
        adopt.sort();
        for (_, p) in adopt {
            let Ok(f) = open(&p, true, false, false, false) else { continue };
            // Locked: its owner is alive and flushing it.
            if f.try_lock().is_err() {
                continue;
            }
            let d = decode(&read_file(&p)?);
            damaged += d.damaged;
            records.extend(d.records);
            files.push(p);
            locks.push(f);
        }
        if let Ok(b) = read_file(&self.path(LEGACY_SPOOL)) {
            records.extend(decode_legacy(&b));
            let _ = fs::remove_file(self.path(LEGACY_SPOOL));
        }
        let mine = self.path(&format!("{CLAIM_PREFIX}{}-{}.v2", std::process::id(), now_nanos()));
        match fs::rename(self.path(SPOOL), &mine) {
            Ok(()) => {
                let f = open(&mine, true, false, false, false)?;
                let _ = f.try_lock();
                let d = decode(&read_file(&mine)?);
                damaged += d.damaged;
                records.extend(d.records);
                files.push(mine);
                locks.push(f);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if damaged > 0 {
            self.add_count(DAMAGED, damaged)?;
        }
        Ok(Claim { files, _locks: locks, records })
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
        for f in &claim.files {
            let _ = fs::remove_file(f);
        }
        Ok(())
    }

    /// Read and reset the dropped and damaged counters.
    pub fn take_counts(&self, deadline: Instant) -> Result<(u64, u64), SpoolError> {
        if !self.path(DROPPED).exists() && !self.path(DAMAGED).exists() {
            return Ok((0, 0));
        }
        let _lock = self.lock(deadline)?;
        let counts = (self.read_count(DROPPED), self.read_count(DAMAGED));
        let _ = fs::remove_file(self.path(DROPPED));
        let _ = fs::remove_file(self.path(DAMAGED));
        Ok(counts)
    }

    fn marker(&self, session: &str) -> PathBuf {
        self.path(&format!("paused-{}", session_hash(session)))
    }

    /// The collector said this session is paused (the marker outlives a collector restart).
    pub fn is_paused(&self, session: &str) -> bool {
        let p = self.marker(session);
        match age(&p) {
            Some(a) if a > STALE_MARKER => {
                let _ = fs::remove_file(p);
                false
            }
            Some(_) => read_file(&p).is_ok_and(|b| b == session.as_bytes()),
            None => false,
        }
    }

    pub fn set_paused(&self, session: &str, paused: bool) -> Result<(), SpoolError> {
        let p = self.marker(session);
        if paused {
            self.ensure_dir()?;
            write_atomic(&self.dir, &p, session.as_bytes())?;
        } else if let Err(e) = fs::remove_file(&p) {
            if e.kind() != ErrorKind::NotFound {
                return Err(e.into());
            }
        }
        Ok(())
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
        Record { kind: if i & 1 == 0 { Kind::Hook } else { Kind::Logs }, body: vec![i; len] }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    #[test]
    fn crc32_known_vector() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
    }

    #[test]
    fn records_round_trip_and_damage_is_skipped_not_swallowing() {
        let rs = vec![rec(0, 3), rec(1, 0), rec(2, 10), rec(4, 7)];
        let bytes = encode(&rs);
        assert_eq!(decode(&bytes), Decoded { records: rs.clone(), damaged: 0 });
        // A torn tail: the complete records survive, the tail counts once.
        let mut torn = bytes.clone();
        torn.extend_from_slice(&encode(&[rec(6, 40)])[..20]);
        assert_eq!(decode(&torn), Decoded { records: rs.clone(), damaged: 1 });
        // A corrupt length in the second record: it is lost, the ones after it are not.
        let mut bad = bytes.clone();
        let second = HEADER + 3;
        bad[second + 4] = 0xFF;
        let d = decode(&bad);
        assert_eq!(d.records, vec![rs[0].clone(), rs[2].clone(), rs[3].clone()]);
        assert_eq!(d.damaged, 1);
        // A flipped body byte: checksum catches it.
        let mut flip = bytes.clone();
        flip[HEADER + 1] ^= 1;
        let d = decode(&flip);
        assert_eq!((d.records.len(), d.damaged), (3, 1));
        // Garbage only.
        assert_eq!(decode(b"not a spool at all").records.len(), 0);
        assert_eq!(decode(&[]), Decoded::default());
    }

    #[test]
    fn decoder_survives_random_damage() {
        // Deterministic xorshift: mutate a valid spool many ways; decode never panics, never
        // returns a record that was not written, and keeps every record not touched.
        let rs: Vec<Record> = (0..12u8).map(|i| rec(i * 2, 5 + i as usize * 3)).collect();
        let clean = encode(&rs);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut b = clean.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % b.len();
                match next() % 3 {
                    0 => b[at] ^= 1 << (next() % 8),
                    1 => b.truncate(at),
                    _ => b.insert(at, next() as u8),
                }
                if b.is_empty() {
                    break;
                }
            }
            let d = decode(&b);
            for r in &d.records {
                assert!(rs.contains(r), "decoded a record never written");
            }
        }
    }

    #[test]
    fn hook_calls_round_trip() {
        let c = HookCall { id: [7; 16], time_ns: 42, json: b"{\"a\":1}".to_vec() };
        assert_eq!(HookCall::from_record(&c.record()), Some(c.clone()));
        assert_eq!(c.id_hex(), "07".repeat(16));
        assert_eq!(HookCall::from_record(&Record { kind: Kind::Hook, body: vec![1; 5] }), None);
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
        assert_eq!(s.take_counts(soon()).expect("counts"), (2, 0));
        assert_eq!(s.take_counts(soon()).expect("counts"), (0, 0));
        s.finish(c, vec![], soon()).expect("finish");
        assert!(!s.has_pending());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn private_files_and_no_symlinks() {
        let dir = tmp("perm");
        let s = Spool::new(dir.join("spool"), 1 << 20);
        s.append(&[rec(1, 4)], soon()).expect("append");
        let mode = |p: &Path| fs::symlink_metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("spool")), 0o700);
        assert_eq!(mode(&dir.join("spool").join(SPOOL)), 0o600);
        // A symlink planted as the spool file is not followed.
        let victim = dir.join("victim");
        fs::write(&victim, b"keep").expect("victim");
        fs::remove_file(dir.join("spool").join(SPOOL)).expect("rm");
        std::os::unix::fs::symlink(&victim, dir.join("spool").join(SPOOL)).expect("symlink");
        assert!(s.append(&[rec(2, 4)], soon()).is_err());
        assert_eq!(fs::read(&victim).expect("read"), b"keep");
        // A symlinked spool directory is refused.
        std::os::unix::fs::symlink(dir.join("spool"), dir.join("link")).expect("dir link");
        assert!(matches!(
            Spool::new(dir.join("link"), 1 << 20).append(&[rec(3, 1)], soon()),
            Err(SpoolError::Unsafe(_))
        ));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn unsent_go_back_in_front_of_newer_records() {
        let dir = tmp("front");
        let s = Spool::new(dir.clone(), 1 << 20);
        s.append(&[rec(1, 4), rec(2, 4)], soon()).expect("append");
        let c = s.claim(soon()).expect("claim");
        assert_eq!(c.records.len(), 2);
        s.append(&[rec(3, 4)], soon()).expect("append");
        let unsent = vec![c.records[1].clone()];
        s.finish(c, unsent, soon()).expect("finish");
        let c = s.claim(soon()).expect("claim");
        assert_eq!(c.records.iter().map(|r| r.body[0]).collect::<Vec<_>>(), vec![2, 3]);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_live_claim_is_left_alone_and_a_dead_ones_adopted() {
        let dir = tmp("claims");
        let s = Spool::new(dir.clone(), 1 << 20);
        s.append(&[rec(1, 4)], soon()).expect("append");
        let held = s.claim(soon()).expect("claim");
        s.append(&[rec(2, 4)], soon()).expect("append");
        // Another flusher sees only the new record: the first claim is locked by its owner.
        let other = s.claim(soon()).expect("claim");
        assert_eq!(other.records.iter().map(|r| r.body[0]).collect::<Vec<_>>(), vec![2]);
        s.finish(other, vec![], soon()).expect("finish");
        // The owner dies (its lock goes with it): the claim is adopted at once.
        drop(held);
        let adopted = s.claim(soon()).expect("claim");
        assert_eq!(adopted.records.iter().map(|r| r.body[0]).collect::<Vec<_>>(), vec![1]);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn legacy_spools_are_read_once() {
        let dir = tmp("legacy");
        let mut old = Vec::new();
        for (k, b) in [(1u8, b"ab".to_vec()), (2, b"cde".to_vec())] {
            old.extend_from_slice(&(b.len() as u32).to_le_bytes());
            old.push(k);
            old.extend_from_slice(&b);
        }
        fs::write(dir.join(LEGACY_SPOOL), old).expect("legacy");
        let s = Spool::new(dir.clone(), 1 << 20);
        assert!(s.has_pending());
        let c = s.claim(soon()).expect("claim");
        assert_eq!(
            c.records,
            vec![
                Record { kind: Kind::Logs, body: b"ab".to_vec() },
                Record { kind: Kind::Traces, body: b"cde".to_vec() }
            ]
        );
        assert!(!dir.join(LEGACY_SPOOL).exists());
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
                        s.append(&[Record { kind: Kind::Hook, body: vec![t, i] }], soon()).expect("append");
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
    fn paused_markers() {
        let dir = tmp("marker");
        let s = Spool::new(dir.clone(), 1 << 20);
        assert!(!s.is_paused("sess-1"));
        s.set_paused("sess-1", true).expect("set");
        assert!(s.is_paused("sess-1"));
        assert!(!s.is_paused("sess-2"));
        s.set_paused("sess-1", false).expect("clear");
        assert!(!s.is_paused("sess-1"));
        s.set_paused("sess-1", false).expect("clear twice");
        let _ = fs::remove_dir_all(dir);
    }
}
