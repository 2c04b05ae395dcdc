//! Opening the log after a clean stop or a crash: check every record a consumer may still need,
//! find the tail, truncate a torn last write, and refuse damage in the middle (or skip it when
//! told to, logging every lost position).

use std::fs::File;
use std::path::PathBuf;

use super::segment::{self, At, FILE_HEADER};
use super::{LogConfig, LogError, Opened};

/// The segment appends go to, and where in it.
pub struct Tail {
    pub file: File,
    pub path: PathBuf,
    pub first_pos: u64,
    /// Byte offset of the next record.
    pub offset: u64,
    /// The file's (preallocated) size.
    pub len: u64,
    /// Position of the next record.
    pub next_pos: u64,
}

fn damaged(path: &std::path::Path, position: Option<u64>, offset: u64, why: String) -> LogError {
    LogError::Damaged { segment: path.display().to_string(), position, offset, why }
}

/// Open the log for appending after `committed_pos` (the last position DuckDB holds).
pub fn open(cfg: &LogConfig, committed_pos: u64) -> Result<(Tail, Opened), LogError> {
    let start_pos = committed_pos + 1;
    let mut segs = segment::list(&cfg.dir)?;
    // A last segment whose header never reached the disk (a crash while it was created) holds
    // nothing: records are written only after the header is synced.
    if let Some((_, path)) = segs.last() {
        if segs.len() > 1 || std::fs::metadata(path).map(|m| m.len() < FILE_HEADER).unwrap_or(false) {
            if let Err(LogError::Damaged { .. }) = segment::open_existing(path) {
                tracing::warn!(segment = %path.display(), "ingest log: removing a segment whose creation never finished");
                std::fs::remove_file(path).map_err(|e| LogError::io(path, e))?;
                segs.pop();
            }
        }
    }
    let mut opened =
        Opened { start_pos, end_pos: committed_pos, backlog_bytes: 0, skipped: Vec::new(), truncated: None };
    if segs.is_empty() {
        let (file, path) = segment::create(&cfg.dir, start_pos, cfg.segment_bytes)?;
        let tail =
            Tail { file, path, first_pos: start_pos, offset: FILE_HEADER, len: cfg.segment_bytes, next_pos: start_pos };
        return Ok((tail, opened));
    }
    // The first segment that may hold `start_pos`.
    let idx = segs.iter().rposition(|(first, _)| *first <= start_pos).unwrap_or(0);
    if segs[idx].0 > start_pos {
        tracing::error!(
            first_missing = start_pos,
            first_present = segs[idx].0,
            "ingest log: positions DuckDB does not hold are no longer in the log (segments deleted by hand?); \
             continuing with what is there"
        );
        opened.start_pos = segs[idx].0;
    }
    let last_idx = segs.len() - 1;
    let mut tail: Option<Tail> = None;
    let mut expected: Option<u64> = None;
    for (i, (first, path)) in segs.iter().enumerate().skip(idx) {
        let is_last = i == last_idx;
        let (file, header_first, len) = segment::open_existing(path)?;
        if header_first != *first {
            return Err(damaged(path, None, 0, format!("file name says position {first}, header says {header_first}")));
        }
        if let Some(e) = expected {
            if *first != e {
                let why = format!("positions {e}..{} are missing between segments", first.saturating_sub(1));
                if !cfg.skip_damaged {
                    return Err(damaged(path, Some(e), 0, why));
                }
                tracing::error!(segment = %path.display(), %why, "ingest log: skipping missing positions (lost)");
                opened.skipped.extend(e..(*first).min(e + 10_000));
            }
        }
        let mut off = FILE_HEADER;
        let mut next = *first;
        loop {
            match segment::read_at(&file, off, len).map_err(|e| LogError::io(path, e))? {
                At::Record { pos, payload, next: n } if pos == next => {
                    if pos >= opened.start_pos {
                        opened.backlog_bytes += segment::framed_len(payload.len());
                    }
                    off = n;
                    next = pos + 1;
                }
                At::End => break,
                other => {
                    let why = match other {
                        At::Damaged(w) => w.to_string(),
                        At::Record { pos, .. } => format!("position {pos} out of sequence (expected {next})"),
                        At::End => String::new(),
                    };
                    let later_here = segment::find_valid_after(&file, off + 1, len, next.saturating_sub(1))
                        .map_err(|e| LogError::io(path, e))?;
                    let later_segments = !is_last;
                    match later_here {
                        None if !later_segments => {
                            // Torn tail: the last write never completed, so it was never acknowledged.
                            let end = segment::data_end(&file, off, len).map_err(|e| LogError::io(path, e))?;
                            segment::zero_range(&file, off, end.max(off)).map_err(|e| LogError::io(path, e))?;
                            tracing::warn!(
                                segment = %path.display(),
                                offset = off,
                                position = next,
                                bytes = end.saturating_sub(off),
                                %why,
                                "ingest log: truncated a torn last record (a write that was never acknowledged)"
                            );
                            opened.truncated = Some((path.display().to_string(), off));
                            break;
                        }
                        found => {
                            let detail = match found {
                                Some((o, p)) => format!("{why}; valid records follow (position {p} at byte {o})"),
                                None => format!("{why}; later segments follow"),
                            };
                            if !cfg.skip_damaged {
                                return Err(damaged(
                                    path,
                                    Some(next),
                                    off,
                                    format!(
                                        "{detail}. Acknowledged records follow the damage, so the collector will not \
                                         start: restore the segment, or start with --ingest-log-skip-damaged to skip \
                                         the damaged records (they are lost)"
                                    ),
                                ));
                            }
                            match found {
                                Some((o, p)) => {
                                    tracing::error!(
                                        segment = %path.display(), offset = off, lost_from = next, lost_to = p - 1,
                                        %why, "ingest log: skipping damaged records (lost)"
                                    );
                                    opened.skipped.extend(next..p.min(next + 10_000));
                                    off = o;
                                    next = p;
                                }
                                None => {
                                    tracing::error!(
                                        segment = %path.display(), offset = off, position = next,
                                        %why, "ingest log: skipping the damaged rest of a segment (lost)"
                                    );
                                    opened.skipped.push(next);
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
        expected = Some(next);
        if is_last {
            tail = Some(Tail { file, path: path.clone(), first_pos: *first, offset: off, len, next_pos: next });
        }
    }
    let mut tail =
        tail.ok_or_else(|| LogError::Io { path: cfg.dir.display().to_string(), message: "no tail".into() })?;
    opened.end_pos = tail.next_pos.saturating_sub(1).max(committed_pos);
    if tail.next_pos < start_pos {
        // DuckDB holds more than the log (the log was removed by hand): continue after DuckDB.
        let (file, path) = segment::create(&cfg.dir, start_pos, cfg.segment_bytes)?;
        tail =
            Tail { file, path, first_pos: start_pos, offset: FILE_HEADER, len: cfg.segment_bytes, next_pos: start_pos };
    }
    Ok((tail, opened))
}
