//! Segment files: `<dir>/<first position, 20 digits>.seg`, preallocated to the segment size.
//! A 32-byte file header (`magic 8 | first position u64 | created µs i64 | reserved u32 |
//! crc32c u32`) is followed by records framed as
//! `magic u32 | len u32 | position u64 | crc32c u32 | reserved u32 | payload`, where the CRC
//! covers len, position and payload. Positions go up by one per record, across segments. The
//! preallocated space after the last record is zeros, so a zero header is the end of the log.
//!
//! Opening checks every record a consumer may still need (from the first position not yet in
//! DuckDB). A damaged record with nothing valid after it is a torn tail (a crash during a write
//! that was never acknowledged): it is zeroed with a warning. A damaged record with valid
//! records after it is damage in the middle: opening refuses, naming the segment, position and
//! byte offset, unless told to skip damaged records (each skip is logged as lost).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::LogError;

pub const FILE_MAGIC: [u8; 8] = *b"ACLOG\0\0\x01";
pub const FILE_HEADER: u64 = 32;
pub const REC_MAGIC: u32 = 0x5243_4341;
pub const REC_HEADER: usize = 24;
/// Largest payload a record may have (a sanity bound for readers of damaged files).
pub const MAX_PAYLOAD: usize = 256 << 20;

fn record_crc(len: u32, pos: u64, payload: &[u8]) -> u32 {
    let c = crc32c::crc32c(&len.to_le_bytes());
    let c = crc32c::crc32c_append(c, &pos.to_le_bytes());
    crc32c::crc32c_append(c, payload)
}

/// Bytes a record of `payload_len` takes in a segment.
pub fn framed_len(payload_len: usize) -> u64 {
    (REC_HEADER + payload_len) as u64
}

/// Append one framed record to `out`.
pub fn frame(pos: u64, payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len() as u32;
    out.extend_from_slice(&REC_MAGIC.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&pos.to_le_bytes());
    out.extend_from_slice(&record_crc(len, pos, payload).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Append one framed record whose payload is encoded in place by `encode` (no extra copy).
pub fn frame_with(pos: u64, out: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; REC_HEADER]);
    encode(out);
    let len = (out.len() - start - REC_HEADER) as u32;
    let crc = record_crc(len, pos, &out[start + REC_HEADER..]);
    out[start..start + 4].copy_from_slice(&REC_MAGIC.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    out[start + 8..start + 16].copy_from_slice(&pos.to_le_bytes());
    out[start + 16..start + 20].copy_from_slice(&crc.to_le_bytes());
}

fn file_header(first_pos: u64, created_us: i64) -> [u8; FILE_HEADER as usize] {
    let mut h = [0u8; FILE_HEADER as usize];
    h[..8].copy_from_slice(&FILE_MAGIC);
    h[8..16].copy_from_slice(&first_pos.to_le_bytes());
    h[16..24].copy_from_slice(&created_us.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

fn parse_file_header(h: &[u8]) -> Option<u64> {
    if h.len() < FILE_HEADER as usize || h[..8] != FILE_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if crc32c::crc32c(&h[..28]) != crc {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[8..16]);
    Some(u64::from_le_bytes(b))
}

pub fn segment_path(dir: &Path, first_pos: u64) -> PathBuf {
    dir.join(format!("{first_pos:020}.seg"))
}

/// Segment files in `dir`, by first position.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| LogError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else { continue };
        if stem.len() != 20 {
            continue;
        }
        if let Ok(first) = stem.parse::<u64>() {
            out.push((first, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// fsync a directory (after creating, renaming or deleting a file in it).
pub fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| LogError::io(dir, e))
}

/// What is at an offset of a segment.
#[derive(Debug)]
pub enum At {
    /// A valid record.
    Record { pos: u64, payload: Vec<u8>, next: u64 },
    /// Zeros (or the end of the file): nothing more in this segment.
    End,
    /// Something that is neither: a torn write or damage.
    Damaged(&'static str),
}

/// Read the record at `offset` of `file` (of length `file_len`).
pub fn read_at(file: &File, offset: u64, file_len: u64) -> std::io::Result<At> {
    if offset + REC_HEADER as u64 > file_len {
        return Ok(At::End);
    }
    let mut h = [0u8; REC_HEADER];
    file.read_exact_at(&mut h, offset)?;
    if h.iter().all(|&b| b == 0) {
        return Ok(At::End);
    }
    let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if magic != REC_MAGIC {
        return Ok(At::Damaged("bad record magic"));
    }
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let mut p = [0u8; 8];
    p.copy_from_slice(&h[8..16]);
    let pos = u64::from_le_bytes(p);
    let crc = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
    let len_us = len as usize;
    if len_us > MAX_PAYLOAD || offset + framed_len(len_us) > file_len {
        return Ok(At::Damaged("record length past the end of the segment"));
    }
    let mut payload = vec![0u8; len_us];
    file.read_exact_at(&mut payload, offset + REC_HEADER as u64)?;
    if record_crc(len, pos, &payload) != crc {
        return Ok(At::Damaged("record checksum mismatch"));
    }
    Ok(At::Record { pos, payload, next: offset + framed_len(len_us) })
}

/// The first valid record at or after byte `from` of a segment whose position is > `after`
/// (a byte-by-byte search, only run on damage). Returns (offset, position).
pub fn find_valid_after(file: &File, from: u64, file_len: u64, after: u64) -> std::io::Result<Option<(u64, u64)>> {
    const CHUNK: u64 = 1 << 20;
    let magic = REC_MAGIC.to_le_bytes();
    let mut start = from;
    while start + REC_HEADER as u64 <= file_len {
        let end = (start + CHUNK + 3).min(file_len);
        let mut buf = vec![0u8; (end - start) as usize];
        file.read_exact_at(&mut buf, start)?;
        for i in 0..buf.len().saturating_sub(3) {
            if buf[i..i + 4] == magic {
                let off = start + i as u64;
                if let At::Record { pos, .. } = read_at(file, off, file_len)? {
                    if pos > after {
                        return Ok(Some((off, pos)));
                    }
                }
            }
        }
        start += CHUNK;
    }
    Ok(None)
}

/// One segment file on disk.
#[derive(Debug, Clone)]
pub struct SegmentFile {
    pub first_pos: u64,
    pub path: PathBuf,
}

/// Open (or create) a segment's file and check its header.
pub fn open_existing(path: &Path) -> Result<(File, u64, u64), LogError> {
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| LogError::io(path, e))?;
    let len = file.metadata().map_err(|e| LogError::io(path, e))?.len();
    let mut h = [0u8; FILE_HEADER as usize];
    if len < FILE_HEADER || file.read_exact_at(&mut h, 0).is_err() {
        return Err(LogError::Damaged {
            segment: path.display().to_string(),
            position: None,
            offset: 0,
            why: "segment shorter than its header".into(),
        });
    }
    let first = parse_file_header(&h).ok_or_else(|| LogError::Damaged {
        segment: path.display().to_string(),
        position: None,
        offset: 0,
        why: "bad segment header".into(),
    })?;
    Ok((file, first, len))
}

/// Create a new, preallocated segment starting at `first_pos` (synced, directory synced).
pub fn create(dir: &Path, first_pos: u64, size: u64) -> Result<(File, PathBuf), LogError> {
    let path = segment_path(dir, first_pos);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| LogError::io(&path, e))?;
    preallocate(&file, size).map_err(|e| LogError::io(&path, e))?;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
    file.write_all_at(&file_header(first_pos, now), 0).map_err(|e| LogError::io(&path, e))?;
    file.sync_all().map_err(|e| LogError::io(&path, e))?;
    sync_dir(dir)?;
    Ok((file, path))
}

/// Reserve the blocks (so a later fdatasync does not also allocate), else just size the file.
fn preallocate(file: &File, size: u64) -> std::io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        Err(_) => file.set_len(size),
    }
}

/// Overwrite `[from, to)` with zeros (truncating a torn tail) and sync.
pub fn zero_range(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(CHUNK);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()
}

/// Where the data in a segment ends: the offset after the last non-zero byte, bounded by a
/// scan of whole 1 MiB chunks (for zeroing a torn tail without writing the whole file).
pub fn data_end(file: &File, from: u64, file_len: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 1 << 20;
    let mut end = from;
    let mut at = from;
    let mut buf = vec![0u8; CHUNK as usize];
    while at < file_len {
        let n = (file_len - at).min(CHUNK) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        if let Some(last) = buf[..n].iter().rposition(|&b| b != 0) {
            end = at + last as u64 + 1;
        } else if end < at {
            // A whole zero chunk after data: preallocated space, the data has ended.
            break;
        }
        at += n as u64;
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_and_damage_is_seen() {
        let dir = tempfile::tempdir().expect("dir");
        let (file, _) = create(dir.path(), 5, 1 << 16).expect("create");
        let mut buf = Vec::new();
        frame(5, b"hello", &mut buf);
        frame(6, b"world!", &mut buf);
        file.write_all_at(&buf, FILE_HEADER).expect("write");
        let len = 1 << 16;
        let At::Record { pos, payload, next } = read_at(&file, FILE_HEADER, len).expect("read") else {
            panic!("record")
        };
        assert_eq!((pos, payload.as_slice()), (5, &b"hello"[..]));
        let At::Record { pos, next: end, .. } = read_at(&file, next, len).expect("read") else { panic!("record") };
        assert_eq!(pos, 6);
        assert!(matches!(read_at(&file, end, len).expect("read"), At::End));
        // Flip a payload byte of the first record.
        file.write_all_at(b"J", FILE_HEADER + REC_HEADER as u64).expect("flip");
        assert!(matches!(read_at(&file, FILE_HEADER, len).expect("read"), At::Damaged(_)));
        assert_eq!(find_valid_after(&file, FILE_HEADER + 1, len, 5).expect("scan"), Some((next, 6)));
        assert_eq!(data_end(&file, FILE_HEADER, len).expect("end"), end);
    }
}
