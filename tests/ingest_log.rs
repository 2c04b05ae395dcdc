//! The ingest log on its own (issue 11): records survive a reopen, a torn last record is
//! truncated with nothing before it lost, a flipped byte in the middle refuses to start with a
//! message naming the segment and position (or is skipped when told to), and segments covered by
//! a checkpoint are deleted.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use agent_console::ingest_log::segment::{self, FILE_HEADER, REC_HEADER};
use agent_console::ingest_log::{Durable, IngestLog, LogConfig, LogError, PartKind, Record};
use bytes::Bytes;

fn cfg(dir: &Path) -> LogConfig {
    LogConfig { segment_bytes: 1 << 20, ..LogConfig::new(dir.to_path_buf()) }
}

fn record(i: u64) -> Record {
    Record::single(PartKind::Logs, Bytes::from(format!("payload-{i:04}").into_bytes()), i as i64)
}

/// Open a log after `committed`, append `n` records, and close it; returns what was handed on.
fn append_n(dir: &Path, committed: u64, from: u64, n: u64) -> Vec<u64> {
    let (tx, rx) = mpsc::channel();
    let forward = Box::new(move |d: Durable<u64>| {
        let _ = tx.send((d.pos, d.item));
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let (log, _opened, handle) = IngestLog::open(&cfg(dir), committed, forward).expect("open");
    rt.block_on(async {
        for i in from..from + n {
            let a = log.append(record(i), i).await.expect("append");
            assert_eq!(a.pos, i, "positions go up by one");
        }
    });
    drop(log);
    handle.join();
    rx.try_iter()
        .map(|(pos, item)| {
            assert_eq!(item, Some(pos));
            pos
        })
        .collect()
}

/// Every record a fresh cursor reads from `from`.
fn read_all(dir: &Path, from: u64, skip_damaged: bool) -> Result<Vec<(u64, Record)>, LogError> {
    let mut c = agent_console::ingest_log::Cursor::new(dir.to_path_buf(), from, 0, skip_damaged);
    let mut out = Vec::new();
    while let Some(r) = c.next(u64::MAX)? {
        out.push((r.pos, r.record));
    }
    Ok(out)
}

fn only_segment(dir: &Path) -> std::path::PathBuf {
    let segs = segment::list(dir).expect("list");
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs[0].1.clone()
}

/// Byte offset of record `pos` in a segment that starts at position 1.
fn offset_of(path: &Path, pos: u64) -> u64 {
    let file = std::fs::File::open(path).expect("open");
    let len = file.metadata().expect("meta").len();
    let mut off = FILE_HEADER;
    loop {
        match segment::read_at(&file, off, len).expect("read") {
            segment::At::Record { pos: p, next, .. } => {
                if p == pos {
                    return off;
                }
                off = next;
            }
            other => panic!("record {pos} not found: {other:?}"),
        }
    }
}

#[test]
fn records_survive_a_reopen_and_continue_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    assert_eq!(append_n(dir.path(), 0, 1, 10), (1..=10).collect::<Vec<_>>());
    // Reopen as if DuckDB held 4: positions continue after the tail, 5..=10 wait for replay.
    let (log, opened, handle) = IngestLog::<u64>::open(&cfg(dir.path()), 4, Box::new(|_| {})).expect("reopen");
    assert_eq!((opened.start_pos, opened.end_pos), (5, 10));
    assert!(opened.backlog_bytes > 0 && opened.truncated.is_none());
    drop(log);
    handle.join();
    let all = read_all(dir.path(), 5, false).expect("read");
    assert_eq!(all.iter().map(|r| r.0).collect::<Vec<_>>(), (5..=10).collect::<Vec<_>>());
    assert_eq!(all[0].1, record(5), "payload and receive time read back as written");
    assert_eq!(append_n(dir.path(), 10, 11, 3), vec![11, 12, 13]);
}

#[test]
fn a_torn_last_record_is_truncated_and_nothing_before_it_is_lost() {
    let dir = tempfile::tempdir().expect("dir");
    append_n(dir.path(), 0, 1, 8);
    let seg = only_segment(dir.path());
    // A crash in the middle of the last write: record 8 is only half there.
    let off = offset_of(&seg, 8);
    let f = std::fs::OpenOptions::new().write(true).open(&seg).expect("open");
    f.write_all_at(&[0u8; 8], off + REC_HEADER as u64 + 4).expect("tear");
    drop(f);
    let (log, opened, handle) = IngestLog::<u64>::open(&cfg(dir.path()), 0, Box::new(|_| {})).expect("open");
    let (seg_name, at) = opened.truncated.clone().expect("the torn record is reported");
    assert!(seg_name.ends_with(".seg") && at == off, "{opened:?}");
    assert_eq!((opened.start_pos, opened.end_pos), (1, 7));
    drop(log);
    handle.join();
    let all = read_all(dir.path(), 1, false).expect("read");
    assert_eq!(all.iter().map(|r| r.0).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
    // Appending continues at the torn record's position, over its bytes.
    assert_eq!(append_n(dir.path(), 0, 8, 2), vec![8, 9]);
    assert_eq!(read_all(dir.path(), 1, false).expect("read").len(), 9);
}

#[test]
fn a_flipped_byte_in_the_middle_refuses_to_start_or_is_skipped_when_told() {
    let dir = tempfile::tempdir().expect("dir");
    append_n(dir.path(), 0, 1, 10);
    let seg = only_segment(dir.path());
    let off = offset_of(&seg, 4);
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&seg).expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off + REC_HEADER as u64 + 2).expect("read");
    f.write_all_at(&[b[0] ^ 0x40], off + REC_HEADER as u64 + 2).expect("flip");
    drop(f);
    let err = match IngestLog::<u64>::open(&cfg(dir.path()), 0, Box::new(|_| {})) {
        Err(e) => e,
        Ok(_) => panic!("a damaged record with acknowledged records after it must refuse to start"),
    };
    let msg = err.to_string();
    assert!(
        msg.contains(&seg.display().to_string()) && msg.contains("position 4") && msg.contains("skip-damaged"),
        "{msg}"
    );
    // Told to skip: record 4 is lost (and logged), everything else is there.
    let mut c = cfg(dir.path());
    c.skip_damaged = true;
    let (log, opened, handle) = IngestLog::<u64>::open(&c, 0, Box::new(|_| {})).expect("open skipping");
    assert_eq!(opened.skipped, vec![4]);
    assert_eq!(opened.end_pos, 10);
    drop(log);
    handle.join();
    let got: Vec<u64> = read_all(dir.path(), 1, true).expect("read").into_iter().map(|r| r.0).collect();
    assert_eq!(got, vec![1, 2, 3, 5, 6, 7, 8, 9, 10]);
    assert!(read_all(dir.path(), 1, false).is_err(), "a strict reader names the damage too");
}

#[test]
fn segments_roll_and_checkpointed_ones_are_deleted() {
    let dir = tempfile::tempdir().expect("dir");
    let c = LogConfig { segment_bytes: 64 << 10, ..cfg(dir.path()) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let (log, _o, handle) = IngestLog::<()>::open(&c, 0, Box::new(|_| {})).expect("open");
    let big = Bytes::from(vec![7u8; 10_000]);
    rt.block_on(async {
        for i in 0..30 {
            log.append(Record::single(PartKind::Traces, big.clone(), i), ()).await.expect("append");
        }
    });
    let segs = segment::list(dir.path()).expect("list");
    assert!(segs.len() >= 4, "30 x 10 KB records roll 64 KiB segments: {segs:?}");
    // DuckDB committed and checkpointed through position 20: segments wholly before it go.
    log.state.committed(20, 0);
    log.state.checkpointed(20);
    rt.block_on(async {
        log.append(Record::single(PartKind::Traces, big.clone(), 31), ()).await.expect("append");
    });
    // The log thread deletes after acknowledging: wait for it (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut after = segment::list(dir.path()).expect("list");
    while after.len() >= segs.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        after = segment::list(dir.path()).expect("list");
    }
    assert!(after.len() < segs.len(), "{after:?}");
    let first_kept = after[0].0;
    assert!(first_kept <= 21, "the segment holding position 21 is kept: {after:?}");
    drop(log);
    handle.join();
    let got: Vec<u64> = read_all(dir.path(), 21, false).expect("read").into_iter().map(|r| r.0).collect();
    assert_eq!(got, (21..=31).collect::<Vec<_>>());
}

#[test]
fn a_failed_write_is_refused_and_never_replayed() {
    let dir = tempfile::tempdir().expect("dir");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let (log, _o, handle) = IngestLog::<()>::open(&cfg(dir.path()), 0, Box::new(|_| {})).expect("open");
    rt.block_on(async {
        log.append(record(1), ()).await.expect("append");
        log.state.fail_appends.store(1, std::sync::atomic::Ordering::Release);
        assert!(log.append(record(2), ()).await.is_err(), "a failed write is not acknowledged");
        // The log carries on; the refused record's position is reused.
        assert_eq!(log.append(record(3), ()).await.expect("append").pos, 2);
    });
    drop(log);
    handle.join();
    let got: Vec<Record> = read_all(dir.path(), 1, false).expect("read").into_iter().map(|r| r.1).collect();
    assert_eq!(got, vec![record(1), record(3)]);
}
