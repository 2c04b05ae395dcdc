//! Reading the log back in position order: replay at start, and catch-up when the in-memory
//! hand-off from the log thread to the pipeline was full. Only positions already durable are
//! asked for, so a cursor never meets a record being written.

use std::fs::File;
use std::path::PathBuf;

use bytes::Bytes;

use super::record::Record;
use super::segment::{self, At, FILE_HEADER};
use super::LogError;

struct Open {
    first: u64,
    path: PathBuf,
    file: File,
    len: u64,
    offset: u64,
}

/// A reader positioned at a log position.
pub struct Cursor {
    dir: PathBuf,
    seg: Option<Open>,
    next_pos: u64,
    /// Log byte count after the last record returned.
    bytes: u64,
    skip_damaged: bool,
}

/// One record read back.
pub struct ReadRecord {
    pub pos: u64,
    pub end_bytes: u64,
    pub record: Record,
}

impl Cursor {
    /// A cursor at `pos`; `start_bytes` is the log byte count before `pos`.
    pub fn new(dir: PathBuf, pos: u64, start_bytes: u64, skip_damaged: bool) -> Self {
        Self { dir, seg: None, next_pos: pos, bytes: start_bytes, skip_damaged }
    }

    pub fn next_pos(&self) -> u64 {
        self.next_pos
    }

    /// Move to `pos` (forward only), with the byte count before it.
    pub fn seek(&mut self, pos: u64, start_bytes: u64) {
        if pos < self.next_pos {
            self.seg = None;
        }
        self.next_pos = pos;
        self.bytes = start_bytes;
    }

    /// Open the segment holding `next_pos`.
    fn locate(&mut self) -> Result<bool, LogError> {
        let segs = segment::list(&self.dir)?;
        let Some((first, path)) = segs.iter().rev().find(|(f, _)| *f <= self.next_pos).cloned().or_else(|| {
            // Everything before the first segment is gone: start at the first one that exists.
            segs.first().cloned()
        }) else {
            return Ok(false);
        };
        let (file, _, len) = segment::open_existing(&path)?;
        self.seg = Some(Open { first, path, file, len, offset: FILE_HEADER });
        Ok(true)
    }

    /// The next record, if its position is at most `limit` (the last durable position).
    pub fn next(&mut self, limit: u64) -> Result<Option<ReadRecord>, LogError> {
        while self.next_pos <= limit {
            if self.seg.is_none() && !self.locate()? {
                return Ok(None);
            }
            let Some(s) = self.seg.as_mut() else { return Ok(None) };
            match segment::read_at(&s.file, s.offset, s.len).map_err(|e| LogError::io(&s.path, e))? {
                At::Record { pos, payload, next } => {
                    s.offset = next;
                    if pos < self.next_pos {
                        continue;
                    }
                    if pos > limit {
                        return Ok(None);
                    }
                    self.next_pos = pos + 1;
                    self.bytes += segment::framed_len(payload.len());
                    let record = Record::decode(Bytes::from(payload))?;
                    return Ok(Some(ReadRecord { pos, end_bytes: self.bytes, record }));
                }
                At::End => {
                    // The writer rolled to a new segment: continue there.
                    let segs = segment::list(&self.dir)?;
                    let current = s.first;
                    match segs.into_iter().find(|(f, _)| *f > current) {
                        Some((first, path)) => {
                            let (file, _, len) = segment::open_existing(&path)?;
                            self.seg = Some(Open { first, path, file, len, offset: FILE_HEADER });
                        }
                        None => return Ok(None),
                    }
                }
                At::Damaged(why) => {
                    let (path, off) = (s.path.display().to_string(), s.offset);
                    if !self.skip_damaged {
                        return Err(LogError::Damaged {
                            segment: path,
                            position: Some(self.next_pos),
                            offset: off,
                            why: why.to_string(),
                        });
                    }
                    match segment::find_valid_after(&s.file, off + 1, s.len, self.next_pos.saturating_sub(1))
                        .map_err(|e| LogError::io(&s.path, e))?
                    {
                        Some((o, p)) => {
                            tracing::error!(segment = %path, offset = off, lost_from = self.next_pos, lost_to = p - 1,
                                "ingest log: skipping damaged records while reading (lost)");
                            s.offset = o;
                            self.next_pos = p;
                        }
                        None => {
                            tracing::error!(segment = %path, offset = off, "ingest log: skipping the damaged rest of a segment");
                            s.offset = s.len;
                        }
                    }
                }
            }
        }
        Ok(None)
    }
}
