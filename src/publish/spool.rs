//! The store-and-forward spool: every record bound for the broker is appended here first and leaves only when the
//! broker acknowledged it, so a lost link, a killed process or a power cut loses nothing already written.
//!
//! Layout: a directory of segment files `NNNNNNNNNNNNNNNNNNNN.seg` (ids in order) and a `cursor` file. Each record
//! is one frame `[len u32][crc32 u32][topic u8][seq u64][payload]` (little-endian; `len` counts topic + seq +
//! payload, the CRC covers the same bytes), written with one `write_all` and synced (`sync_data`) in groups
//! before any of the group is sent. On open, a last record that is short or fails its CRC — the one being
//! written when the process died — is cut off (counted as torn); a bad record in the middle of a segment is an
//! error naming the file and offset, never skipped silently.
//!
//! The cursor file (`segment offset next_seq`, replaced by rename) says where the first unacknowledged record
//! is; it is written at most every [`CURSOR_EVERY`] and whenever a segment is let go, before the segment is
//! deleted. A crash between an acknowledgement and the next cursor write sends those records again, which
//! at-least-once delivery allows (consumers drop duplicates by `(device, seq)`).
//!
//! The spool is bounded: when a record would take it past `max_bytes`, the oldest segments are deleted and their
//! unsent records counted as dropped.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The header before each record's payload: length, CRC, topic, seq.
const HEADER: u64 = 4 + 4 + 1 + 8;
/// The largest record accepted (a caption record is a few kB; this bounds what a corrupt length can ask for).
pub const MAX_RECORD: u64 = 4 << 20;
/// How often the cursor is written while records are being acknowledged.
pub const CURSOR_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("spool {path}: record at byte {offset} is corrupt ({why}) and is not the last one; move the file away to start over")]
    Corrupt { path: PathBuf, offset: u64, why: &'static str },
    #[error("spool {path}: cursor file unreadable ({what})")]
    Cursor { path: PathBuf, what: String },
    #[error("spool {0} is in use by another pancap (one spool per running stream: give each its own --spool-dir or --device-name)")]
    InUse(PathBuf),
    #[error("a record of {0} bytes is larger than the spool allows ({MAX_RECORD} bytes per record, and the spool's own bound)")]
    TooLarge(u64),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_path_buf(), source }
}

/// The topic a spooled record goes to (under `PREFIX/DEVICE/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolTopic {
    Records,
    Events,
}

impl SpoolTopic {
    fn code(self) -> u8 {
        match self {
            SpoolTopic::Records => 1,
            SpoolTopic::Events => 2,
        }
    }
    fn from_code(c: u8) -> Option<SpoolTopic> {
        match c {
            1 => Some(SpoolTopic::Records),
            2 => Some(SpoolTopic::Events),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            SpoolTopic::Records => "records",
            SpoolTopic::Events => "events",
        }
    }
}

/// A place in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub segment: u64,
    pub offset: u64,
}

/// One record read back for sending; `end` is where the next one starts (what to acknowledge up to).
#[derive(Debug, Clone, PartialEq)]
pub struct SpooledRecord {
    pub topic: SpoolTopic,
    pub seq: u64,
    pub payload: Vec<u8>,
    pub end: Pos,
}

#[derive(Debug, Clone)]
struct Segment {
    id: u64,
    bytes: u64,
    /// Record end offsets, in order (so records before an offset can be counted and dropped ones told apart).
    ends: Vec<u64>,
}

/// What the spool holds and has done, for stats and the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpoolStats {
    /// Records written and not yet acknowledged.
    pub depth: u64,
    pub bytes: u64,
    /// The most records held at once since open.
    pub peak: u64,
    /// Unsent records dropped because the spool was full (oldest first).
    pub dropped: u64,
    /// Half-written records found at the end of the last segment on open (a kill mid-write) and cut off.
    pub torn: u64,
    /// Records found unsent on open (left by an earlier run).
    pub recovered: u64,
}

pub struct Spool {
    /// Held (an advisory lock) while the spool is open: two processes never share one.
    _lock: File,
    dir: PathBuf,
    max_bytes: u64,
    segment_max: u64,
    segments: VecDeque<Segment>,
    tail: Option<File>,
    unsynced: bool,
    /// First unacknowledged record.
    acked: Pos,
    /// Next record to hand out for sending (at or after `acked`).
    read: Pos,
    reader: Option<(u64, BufReader<File>, u64)>,
    next_seq: u64,
    cursor_written: Option<Instant>,
    cursor_dirty: bool,
    stats: SpoolStats,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// One record frame as read: its topic, seq, payload and length on disk.
struct RawFrame {
    topic: SpoolTopic,
    seq: u64,
    payload: Vec<u8>,
    bytes: u64,
}

/// Reads one record frame at the reader's position: Ok(None) at a clean end, Err(why) for a short or bad one.
fn read_frame(r: &mut impl Read) -> Result<Option<RawFrame>, &'static str> {
    let mut head = [0u8; HEADER as usize];
    let mut got = 0usize;
    while got < head.len() {
        match r.read(head.get_mut(got..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Err("unreadable"),
        }
    }
    if got == 0 {
        return Ok(None);
    }
    if got < head.len() {
        return Err("short header");
    }
    let [l0, l1, l2, l3, c0, c1, c2, c3, code, seq_bytes @ ..] = head;
    let (len, crc) = (u64::from(u32::from_le_bytes([l0, l1, l2, l3])), u32::from_le_bytes([c0, c1, c2, c3]));
    let seq = u64::from_le_bytes(seq_bytes);
    if !(9..=MAX_RECORD).contains(&len) {
        return Err("bad length");
    }
    let mut payload = vec![0u8; (len - 9) as usize];
    r.read_exact(&mut payload).map_err(|_| "short payload")?;
    let mut h = crc32fast::Hasher::new();
    h.update(head.get(8..17).unwrap_or_default());
    h.update(&payload);
    if h.finalize() != crc {
        return Err("CRC mismatch");
    }
    let topic = SpoolTopic::from_code(code).ok_or("unknown topic")?;
    Ok(Some(RawFrame { topic, seq, payload, bytes: 8 + len }))
}

impl Spool {
    /// Opens (creating) the spool in `dir`, bounded by `max_bytes`; cuts off a torn last record.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(SpoolError::InUse(dir.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(SpoolError::Io { path: lock_path, source: e }),
        }
        let mut ids: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".seg").and_then(|s| s.parse::<u64>().ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let max_bytes = max_bytes.max(64 * 1024);
        // eight segments or more to the bound, so dropping the oldest lets go of an eighth at a time
        let segment_max = (max_bytes / 8).clamp(16 * 1024, 8 << 20);
        let mut spool = Spool {
            _lock: lock,
            dir: dir.to_path_buf(),
            max_bytes,
            segment_max,
            segments: VecDeque::new(),
            tail: None,
            unsynced: false,
            acked: Pos::default(),
            read: Pos::default(),
            reader: None,
            next_seq: 0,
            cursor_written: None,
            cursor_dirty: false,
            stats: SpoolStats::default(),
        };
        let cursor = spool.read_cursor()?;
        let count = ids.len();
        for (i, id) in ids.into_iter().enumerate() {
            let path = segment_path(dir, id);
            let file = File::open(&path).map_err(io(&path))?;
            let mut r = BufReader::new(file);
            let mut seg = Segment { id, bytes: 0, ends: Vec::new() };
            loop {
                match read_frame(&mut r) {
                    Ok(None) => break,
                    Ok(Some(RawFrame { seq, bytes: n, .. })) => {
                        seg.bytes += n;
                        seg.ends.push(seg.bytes);
                        spool.next_seq = spool.next_seq.max(seq + 1);
                    }
                    Err(why) if i + 1 == count => {
                        // the record being written when the process died: cut it off
                        log::warn!("spool {}: a torn record at byte {} cut off ({why})", path.display(), seg.bytes);
                        let f = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
                        f.set_len(seg.bytes).map_err(io(&path))?;
                        f.sync_all().map_err(io(&path))?;
                        spool.stats.torn += 1;
                        break;
                    }
                    Err(why) => return Err(SpoolError::Corrupt { path, offset: seg.bytes, why }),
                }
            }
            spool.segments.push_back(seg);
        }
        if let Some((pos, next_seq)) = cursor {
            spool.next_seq = spool.next_seq.max(next_seq);
            spool.acked = pos;
        }
        // the cursor may point into a segment deleted after it was written (or before any segment): start at the
        // first record at or after it
        spool.acked = spool.clamp(spool.acked);
        spool.read = spool.acked;
        spool.stats.depth = spool.count_from(spool.acked);
        spool.stats.recovered = spool.stats.depth;
        spool.stats.peak = spool.stats.depth;
        spool.stats.bytes = spool.segments.iter().map(|s| s.bytes).sum();
        Ok(spool)
    }

    fn cursor_path(&self) -> PathBuf {
        self.dir.join("cursor")
    }

    fn read_cursor(&self) -> Result<Option<(Pos, u64)>, SpoolError> {
        let path = self.cursor_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SpoolError::Io { path, source: e }),
        };
        let nums: Vec<u64> = text.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        match nums.as_slice() {
            [segment, offset, next_seq] => Ok(Some((Pos { segment: *segment, offset: *offset }, *next_seq))),
            _ => Err(SpoolError::Cursor { path, what: format!("expected `segment offset next_seq`, found {text:?}") }),
        }
    }

    /// The first record boundary at or after `p` that exists (the end of the spool when none).
    fn clamp(&self, p: Pos) -> Pos {
        for s in &self.segments {
            if s.id < p.segment {
                continue;
            }
            if s.id > p.segment {
                return Pos { segment: s.id, offset: 0 };
            }
            if p.offset == 0 || s.ends.contains(&p.offset) {
                if p.offset < s.bytes || s.id == self.segments.back().map_or(0, |l| l.id) {
                    return p;
                }
                continue;
            }
            // not on a boundary: the next boundary after it
            if let Some(e) = s.ends.iter().find(|e| **e > p.offset) {
                return Pos { segment: s.id, offset: *e };
            }
        }
        self.end()
    }

    fn end(&self) -> Pos {
        self.segments.back().map_or(Pos::default(), |s| Pos { segment: s.id, offset: s.bytes })
    }

    fn count_from(&self, p: Pos) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.id >= p.segment)
            .map(|s| if s.id == p.segment { s.ends.len() - s.ends.partition_point(|e| *e <= p.offset) } else { s.ends.len() } as u64)
            .sum()
    }

    /// One past the highest seq ever written here, 0 when nothing was (kept across restarts, so a new run's seq
    /// can continue after it).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    /// Records not yet handed out for sending.
    pub fn unsent(&self) -> bool {
        self.read < self.end()
    }

    /// Appends one record (not yet synced: call [`Spool::sync`] before sending what was appended).
    pub fn append(&mut self, topic: SpoolTopic, seq: u64, payload: &[u8]) -> Result<(), SpoolError> {
        let len = 9 + payload.len() as u64;
        let total = 8 + len;
        if len > MAX_RECORD || total > self.max_bytes / 2 {
            return Err(SpoolError::TooLarge(total));
        }
        let needs_new = match self.segments.back() {
            None => true,
            Some(s) => s.bytes > 0 && s.bytes + total > self.segment_max,
        };
        if needs_new {
            self.roll()?;
        }
        // the bound: let go of the oldest segments (never the one being written)
        while self.stats.bytes + total > self.max_bytes && self.segments.len() > 1 {
            self.drop_oldest()?;
        }
        let mut frame = Vec::with_capacity(total as usize);
        frame.extend_from_slice(&(len as u32).to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&[topic.code()]);
        h.update(&seq.to_le_bytes());
        h.update(payload);
        frame.extend_from_slice(&h.finalize().to_le_bytes());
        frame.push(topic.code());
        frame.extend_from_slice(&seq.to_le_bytes());
        frame.extend_from_slice(payload);
        let Some(seg) = self.segments.back_mut() else { return Err(SpoolError::TooLarge(total)) };
        let path = segment_path(&self.dir, seg.id);
        let file = match &mut self.tail {
            Some(f) => f,
            None => {
                let f = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
                self.tail.insert(f)
            }
        };
        file.write_all(&frame).map_err(io(&path))?;
        seg.bytes += total;
        seg.ends.push(seg.bytes);
        self.unsynced = true;
        self.next_seq = self.next_seq.max(seq + 1);
        self.stats.bytes += total;
        self.stats.depth += 1;
        self.stats.peak = self.stats.peak.max(self.stats.depth);
        Ok(())
    }

    /// Makes what was appended durable (one `sync_data` for a group of records).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        if self.unsynced {
            if let (Some(f), Some(seg)) = (&self.tail, self.segments.back()) {
                f.sync_data().map_err(io(&segment_path(&self.dir, seg.id)))?;
            }
            self.unsynced = false;
        }
        Ok(())
    }

    fn roll(&mut self) -> Result<(), SpoolError> {
        self.sync()?;
        self.tail = None;
        let id = self.segments.back().map_or(1, |s| s.id + 1);
        let path = segment_path(&self.dir, id);
        let f = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        // the new file's name must survive a power cut too
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        self.tail = Some(f);
        self.segments.push_back(Segment { id, bytes: 0, ends: Vec::new() });
        Ok(())
    }

    fn drop_oldest(&mut self) -> Result<(), SpoolError> {
        let Some(seg) = self.segments.front().cloned() else { return Ok(()) };
        let unsent_from = if self.acked.segment > seg.id { seg.bytes } else if self.acked.segment == seg.id { self.acked.offset } else { 0 };
        let dropped = seg.ends.iter().filter(|e| **e > unsent_from).count() as u64;
        self.stats.dropped += dropped;
        self.stats.depth = self.stats.depth.saturating_sub(dropped);
        self.segments.pop_front();
        let next = self.segments.front().map_or(Pos::default(), |s| Pos { segment: s.id, offset: 0 });
        if self.acked.segment <= seg.id {
            self.acked = next;
        }
        if self.read.segment <= seg.id {
            self.read = next;
            self.reader = None;
        }
        self.forget(seg)?;
        if dropped > 0 {
            log::warn!("spool full ({} bytes): {dropped} unsent record(s) dropped, oldest first", self.max_bytes);
        }
        Ok(())
    }

    /// Deletes a segment file no record of which is needed any more (the cursor is written first).
    fn forget(&mut self, seg: Segment) -> Result<(), SpoolError> {
        self.write_cursor()?;
        let path = segment_path(&self.dir, seg.id);
        if let Some((id, _, _)) = &self.reader {
            if *id == seg.id {
                self.reader = None;
            }
        }
        std::fs::remove_file(&path).map_err(io(&path))?;
        self.stats.bytes = self.stats.bytes.saturating_sub(seg.bytes);
        Ok(())
    }

    /// The next record to send, or None when everything was handed out.
    pub fn next_unsent(&mut self) -> Result<Option<SpooledRecord>, SpoolError> {
        loop {
            let Some(seg) = self.segments.iter().find(|s| s.id >= self.read.segment).cloned() else { return Ok(None) };
            if seg.id > self.read.segment {
                self.read = Pos { segment: seg.id, offset: 0 };
            }
            if self.read.offset >= seg.bytes {
                if self.segments.back().map(|s| s.id) == Some(seg.id) {
                    return Ok(None);
                }
                self.read = Pos { segment: seg.id + 1, offset: 0 };
                continue;
            }
            let path = segment_path(&self.dir, seg.id);
            let reuse = matches!(&self.reader, Some((id, _, off)) if *id == seg.id && *off == self.read.offset);
            if !reuse {
                let mut f = File::open(&path).map_err(io(&path))?;
                f.seek(SeekFrom::Start(self.read.offset)).map_err(io(&path))?;
                self.reader = Some((seg.id, BufReader::new(f), self.read.offset));
            }
            let Some((_, r, off)) = &mut self.reader else { return Ok(None) };
            return match read_frame(r) {
                Ok(Some(RawFrame { topic, seq, payload, bytes: n })) => {
                    *off += n;
                    self.read.offset += n;
                    Ok(Some(SpooledRecord { topic, seq, payload, end: self.read }))
                }
                Ok(None) => Ok(None),
                Err(why) => Err(SpoolError::Corrupt { path, offset: self.read.offset, why }),
            };
        }
    }

    /// Hand records out again from the first unacknowledged one (after a lost connection).
    pub fn rewind(&mut self) {
        self.read = self.acked;
        self.reader = None;
    }

    /// Every record before `end` was acknowledged by the broker.
    pub fn ack(&mut self, end: Pos) -> Result<(), SpoolError> {
        if end <= self.acked {
            return Ok(());
        }
        let before = self.count_from(self.acked);
        self.acked = end;
        let after = self.count_from(self.acked);
        self.stats.depth = self.stats.depth.saturating_sub(before.saturating_sub(after));
        self.cursor_dirty = true;
        // segments wholly acknowledged (never the one being written) go
        while self.segments.len() > 1 {
            let Some(front) = self.segments.front() else { break };
            let done = self.acked.segment > front.id || (self.acked.segment == front.id && self.acked.offset >= front.bytes);
            if !done {
                break;
            }
            if let Some(seg) = self.segments.pop_front() {
                if self.acked.segment == seg.id {
                    self.acked = self.segments.front().map_or(self.acked, |s| Pos { segment: s.id, offset: 0 });
                }
                self.forget(seg)?;
            }
        }
        if self.cursor_written.is_none_or(|t| t.elapsed() >= CURSOR_EVERY) {
            self.write_cursor()?;
        }
        Ok(())
    }

    /// Writes the cursor now (at the end of a run and before a segment is deleted).
    pub fn write_cursor(&mut self) -> Result<(), SpoolError> {
        let path = self.cursor_path();
        let tmp = self.dir.join("cursor.tmp");
        let text = format!("{} {} {}\n", self.acked.segment, self.acked.offset, self.next_seq);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(io(&path))?;
        self.cursor_written = Some(Instant::now());
        self.cursor_dirty = false;
        Ok(())
    }

    /// Syncs appended records and writes the cursor if acknowledgements moved it.
    pub fn close(&mut self) -> Result<(), SpoolError> {
        self.sync()?;
        if self.cursor_dirty {
            self.write_cursor()?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn drain(s: &mut Spool) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(r) = s.next_unsent().unwrap() {
            out.push((r.seq, r.payload.clone()));
            s.ack(r.end).unwrap();
        }
        out
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 64 * 1024).unwrap();
        for i in 0..2000u64 {
            s.append(SpoolTopic::Records, i, format!("record {i}").as_bytes()).unwrap();
        }
        s.sync().unwrap();
        assert!(s.segments.len() > 2, "{} segments", s.segments.len());
        // send and acknowledge half, then "crash" (no close)
        for _ in 0..1000 {
            let r = s.next_unsent().unwrap().unwrap();
            s.ack(r.end).unwrap();
        }
        s.write_cursor().unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 64 * 1024).unwrap();
        assert_eq!(s.stats().recovered, 1000);
        assert_eq!(s.next_seq(), 2000);
        let got = drain(&mut s);
        assert_eq!(got.len(), 1000);
        assert!(got.iter().enumerate().all(|(i, (seq, p))| *seq == 1000 + i as u64 && p == format!("record {seq}").as_bytes()));
        assert_eq!(s.stats().depth, 0);
        // acknowledged segments are gone: only the one being written is left
        assert_eq!(s.segments.len(), 1);
    }

    #[test]
    fn a_rewind_after_a_lost_link_sends_the_unacknowledged_records_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for i in 1..=10u64 {
            s.append(SpoolTopic::Events, i, b"e").unwrap();
        }
        let a = s.next_unsent().unwrap().unwrap();
        let _b = s.next_unsent().unwrap().unwrap();
        s.ack(a.end).unwrap();
        s.rewind();
        let again: Vec<u64> = std::iter::from_fn(|| s.next_unsent().unwrap().map(|r| r.seq)).collect();
        assert_eq!(again, (2..=10).collect::<Vec<_>>());
        assert_eq!(s.stats().depth, 9);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_counted_and_earlier_ones_survive() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for i in 1..=3u64 {
            s.append(SpoolTopic::Records, i, b"{\"whole\":true}").unwrap();
        }
        s.sync().unwrap();
        let seg = segment_path(dir.path(), s.segments.back().unwrap().id);
        drop(s);
        // a kill mid-write: half of a fourth record
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 1, 9]).unwrap();
        drop(f);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.stats().torn, 1);
        assert_eq!(drain(&mut s).iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        // and appending after the cut works
        s.append(SpoolTopic::Records, 4, b"x").unwrap();
        assert_eq!(s.next_unsent().unwrap().unwrap().seq, 4);
    }

    #[test]
    fn a_corrupt_record_before_the_end_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for i in 1..=3u64 {
            s.append(SpoolTopic::Records, i, b"payload").unwrap();
        }
        s.sync().unwrap();
        s.roll().unwrap();
        s.append(SpoolTopic::Records, 4, b"payload").unwrap();
        s.sync().unwrap();
        let first = segment_path(dir.path(), s.segments[0].id);
        drop(s);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[20] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        let e = Spool::open(dir.path(), 1 << 20).err().unwrap().to_string();
        assert!(e.contains(&first.display().to_string()) && e.contains("CRC"), "{e}");
    }

    #[test]
    fn a_full_spool_drops_the_oldest_records_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let max = 64 * 1024;
        let mut s = Spool::open(dir.path(), max).unwrap();
        let payload = vec![b'x'; 500];
        for i in 1..=1000u64 {
            s.append(SpoolTopic::Records, i, &payload).unwrap();
            assert!(s.stats().bytes <= max, "{} > {max}", s.stats().bytes);
        }
        s.sync().unwrap();
        let st = s.stats();
        assert!(st.dropped > 800, "{st:?}");
        assert_eq!(st.depth + st.dropped, 1000);
        let on_disk: u64 = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert!(on_disk <= max + 64, "{on_disk}");
        // what is left is the newest, in order
        let seqs: Vec<u64> = drain(&mut s).into_iter().map(|r| r.0).collect();
        assert_eq!(seqs.len() as u64, st.depth);
        assert_eq!(*seqs.last().unwrap(), 1000);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn a_spool_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Spool::open(dir.path(), 1 << 20).unwrap();
        let e = Spool::open(dir.path(), 1 << 20).err().unwrap().to_string();
        assert!(e.contains("in use by another pancap"), "{e}");
    }

    #[test]
    fn the_cursor_keeps_the_next_seq_when_every_segment_was_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(SpoolTopic::Records, 41, b"a").unwrap();
        s.append(SpoolTopic::Records, 42, b"b").unwrap();
        drain(&mut s);
        s.close().unwrap();
        drop(s);
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.next_seq(), 43);
        assert_eq!(s.stats().depth, 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append(usize),
        Send { count: usize, ack: bool },
        Rewind,
        Reopen,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (1usize..6000).prop_map(Op::Append),
            4 => (0usize..12, any::<bool>()).prop_map(|(count, ack)| Op::Send { count, ack }),
            1 => Just(Op::Rewind),
            1 => Just(Op::Reopen),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Against a model (a queue of the unacknowledged seqs): records come out in order, each once per
        /// hand-out, nothing unacknowledged is lost except what the bound drops (oldest first, counted), the depth
        /// is the model's, and the bytes stay within the bound, through sends, acknowledgements, rewinds and
        /// reopens.
        #[test]
        fn the_spool_matches_a_queue_model(ops in proptest::collection::vec(op(), 1..120)) {
            let dir = tempfile::tempdir().unwrap();
            let max = 64 * 1024;
            let mut s = Spool::open(dir.path(), max).unwrap();
            let mut pending: VecDeque<u64> = VecDeque::new();
            let mut handed = 0usize;
            let mut next = 0u64;
            let mut dropped = 0u64;
            for op in ops {
                match op {
                    Op::Append(len) => {
                        s.append(SpoolTopic::Records, next, &vec![b'r'; len]).unwrap();
                        pending.push_back(next);
                        next += 1;
                        let delta = s.stats().dropped - dropped;
                        dropped = s.stats().dropped;
                        for _ in 0..delta {
                            pending.pop_front();
                        }
                        handed = handed.saturating_sub(delta as usize);
                    }
                    Op::Send { count, ack } => {
                        let mut last = None;
                        for _ in 0..count {
                            let got = s.next_unsent().unwrap();
                            proptest::prop_assert_eq!(got.as_ref().map(|r| r.seq), pending.get(handed).copied());
                            if let Some(r) = got {
                                proptest::prop_assert_eq!(r.payload.iter().all(|b| *b == b'r'), true);
                                handed += 1;
                                last = Some(r.end);
                            }
                        }
                        if let (true, Some(end)) = (ack, last) {
                            s.ack(end).unwrap();
                            pending.drain(..handed);
                            handed = 0;
                        }
                    }
                    Op::Rewind => {
                        s.rewind();
                        handed = 0;
                    }
                    Op::Reopen => {
                        s.close().unwrap();
                        drop(s);
                        s = Spool::open(dir.path(), max).unwrap();
                        proptest::prop_assert_eq!(s.stats().recovered, pending.len() as u64);
                        proptest::prop_assert_eq!(s.next_seq(), next);
                        dropped = 0;
                        handed = 0;
                    }
                }
                proptest::prop_assert_eq!(s.stats().depth, pending.len() as u64);
                proptest::prop_assert!(s.stats().bytes <= max);
            }
        }
    }
}
