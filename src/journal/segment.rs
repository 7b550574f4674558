//! The journal's files and their bytes.
//!
//! A segment `<first seq, 20 digits>.log` starts with an 8-byte magic and
//! holds entries `[u32 length][u32 CRC-32 of length and payload][payload]`,
//! the payload a `u64` sequence number and the record's bytes. Beside it,
//! `<first seq>.done` holds the sequence numbers the secondary
//! acknowledged, `[u64 seq][u32 CRC-32 of it]` each after its own magic.
//! Both are only ever appended to; a scan stops at the first entry that is
//! cut short or fails its checksum, and what follows it is cut off.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub(super) const LOG_MAGIC: &[u8; 8] = b"CUTJRNL\x01";
pub(super) const DONE_MAGIC: &[u8; 8] = b"CUTDONE\x01";
pub(super) const DEAD_MAGIC: &[u8; 8] = b"CUTDEAD\x01";
/// An entry's header: length and checksum.
pub(super) const ENTRY_HEADER: usize = 8;
/// A done mark's size.
pub(super) const DONE_ENTRY: usize = 12;
/// No entry is larger (a frame is at most 256 MiB): a length beyond it is
/// damage, not a record.
pub(super) const MAX_ENTRY: u32 = 512 * 1024 * 1024;

pub(super) fn log_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.log"))
}

pub(super) fn done_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.done"))
}

pub(super) fn dead_path(dir: &Path) -> PathBuf {
    dir.join("dead-letter.log")
}

/// The first sequence number a segment file's name gives, if it is one.
pub(super) fn segment_first(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn checksum(len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_be_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends one entry whose payload is `parts`, in order, to `out`.
fn put_framed(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len = parts.iter().map(|p| p.len()).sum::<usize>() as u32;
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_be_bytes());
    for p in parts {
        h.update(p);
    }
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&h.finalize().to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// Appends one entry (`seq` and the record's bytes) to `out`.
pub(super) fn put_entry(out: &mut Vec<u8>, seq: u64, record: &[u8]) {
    put_framed(out, &[&seq.to_be_bytes(), record]);
}

/// An entry's size on disk for a record of `record_len` bytes.
pub(super) fn entry_len(record_len: usize) -> u64 {
    (ENTRY_HEADER + 8 + record_len) as u64
}

pub(super) fn put_done(out: &mut Vec<u8>, seq: u64) {
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&seq.to_be_bytes()).to_be_bytes());
}

/// One entry found by a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Found {
    pub seq: u64,
    /// Where the entry starts in the file.
    pub offset: u64,
    /// The entry's size (header included).
    pub len: u32,
}

/// What a scan found in a file.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub entries: Vec<Found>,
    /// Where the whole entries end; past it is a torn or damaged tail.
    pub valid_end: u64,
    /// The file's length.
    pub file_len: u64,
    /// The file does not start with the magic (cut before it was whole, or
    /// not a journal file).
    pub bad_magic: bool,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

fn read_all(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut b = Vec::new();
    f.read_to_end(&mut b)?;
    Ok(b)
}

/// The whole entries of `b` from `at` on, each (offset, payload), up to
/// the first cut short, of a length outside `min_len..=MAX_ENTRY`, or
/// failing its checksum.
fn framed(b: &[u8], mut at: usize, min_len: u32) -> impl Iterator<Item = (usize, &[u8])> {
    std::iter::from_fn(move || {
        if b.len().saturating_sub(at) < ENTRY_HEADER + min_len as usize {
            return None;
        }
        let len = u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
        let crc = u32::from_be_bytes(b[at + 4..at + 8].try_into().unwrap());
        if !(min_len..=MAX_ENTRY).contains(&len) || b.len() - at - ENTRY_HEADER < len as usize {
            return None;
        }
        let payload = &b[at + ENTRY_HEADER..at + ENTRY_HEADER + len as usize];
        if checksum(len, payload) != crc {
            return None;
        }
        let offset = at;
        at += ENTRY_HEADER + len as usize;
        Some((offset, payload))
    })
}

/// Every whole entry of the segment at `path`, in order. Sequence numbers
/// must rise by one from the first; an entry that breaks the run is
/// damage too.
pub(super) fn scan_log(path: &Path) -> io::Result<Scan> {
    let b = read_all(path)?;
    let mut scan = Scan {
        file_len: b.len() as u64,
        ..Scan::default()
    };
    if b.len() < LOG_MAGIC.len() || &b[..LOG_MAGIC.len()] != LOG_MAGIC {
        scan.bad_magic = true;
        scan.bytes = b;
        return Ok(scan);
    }
    scan.valid_end = LOG_MAGIC.len() as u64;
    for (offset, payload) in framed(&b, LOG_MAGIC.len(), 8) {
        let seq = u64::from_be_bytes(payload[..8].try_into().unwrap());
        if let Some(last) = scan.entries.last() {
            if seq != last.seq + 1 {
                break;
            }
        }
        let len = (ENTRY_HEADER + payload.len()) as u32;
        scan.entries.push(Found {
            seq,
            offset: offset as u64,
            len,
        });
        scan.valid_end = offset as u64 + len as u64;
    }
    scan.bytes = b;
    Ok(scan)
}

/// The record bytes of the entry at `found`, read from `file`.
pub(super) fn read_entry(file: &File, found: Found) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut b = vec![0; found.len as usize];
    file.read_exact_at(&mut b, found.offset)?;
    let len = u32::from_be_bytes(b[..4].try_into().unwrap());
    let crc = u32::from_be_bytes(b[4..8].try_into().unwrap());
    if len as usize != b.len() - ENTRY_HEADER || checksum(len, &b[ENTRY_HEADER..]) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "journal entry at offset {} fails its checksum",
                found.offset
            ),
        ));
    }
    let seq = u64::from_be_bytes(b[8..16].try_into().unwrap());
    if seq != found.seq {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "journal entry at offset {} is record {seq}, not {}",
                found.offset, found.seq
            ),
        ));
    }
    Ok(b.split_off(ENTRY_HEADER + 8))
}

/// The acknowledged sequence numbers in the done file at `path` (none when
/// it does not exist), and where its whole entries end.
pub(super) fn scan_done(path: &Path) -> io::Result<(Vec<u64>, u64, u64)> {
    let b = match read_all(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0, 0)),
        Err(e) => return Err(e),
    };
    if b.len() < DONE_MAGIC.len() || &b[..DONE_MAGIC.len()] != DONE_MAGIC {
        return Ok((Vec::new(), 0, b.len() as u64));
    }
    let mut seqs = Vec::new();
    let mut at = DONE_MAGIC.len();
    while b.len() - at >= DONE_ENTRY {
        let seq = &b[at..at + 8];
        let crc = u32::from_be_bytes(b[at + 8..at + 12].try_into().unwrap());
        if crc32fast::hash(seq) != crc {
            break;
        }
        seqs.push(u64::from_be_bytes(seq.try_into().unwrap()));
        at += DONE_ENTRY;
    }
    Ok((seqs, at as u64, b.len() as u64))
}

/// The dead letters in `path`: each a record's sequence number, its error
/// and its bytes.
pub(super) fn scan_dead(path: &Path) -> io::Result<Vec<(u64, String, Vec<u8>)>> {
    let b = match read_all(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    if b.len() < DEAD_MAGIC.len() || &b[..DEAD_MAGIC.len()] != DEAD_MAGIC {
        return Ok(out);
    }
    for (_, p) in framed(&b, DEAD_MAGIC.len(), 12) {
        let seq = u64::from_be_bytes(p[..8].try_into().unwrap());
        let elen = u32::from_be_bytes(p[8..12].try_into().unwrap()) as usize;
        if p.len() < 12 + elen {
            break;
        }
        let error = String::from_utf8_lossy(&p[12..12 + elen]).into_owned();
        out.push((seq, error, p[12 + elen..].to_vec()));
    }
    Ok(out)
}

/// A dead letter's entry: the record's sequence number, why it failed
/// for good, and its bytes.
pub(super) fn put_dead(out: &mut Vec<u8>, seq: u64, error: &str, record: &[u8]) {
    let elen = (error.len() as u32).to_be_bytes();
    put_framed(out, &[&seq.to_be_bytes(), &elen, error.as_bytes(), record]);
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn segment_names_carry_their_first_sequence_number() {
        let dir = Path::new("/j");
        let p = log_path(dir, 42);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "00000000000000000042.log");
        assert_eq!(segment_first(name), Some(42));
        assert_eq!(segment_first("dead-letter.log"), None);
        assert_eq!(segment_first("00000000000000000042.done"), None);
    }

    #[test]
    fn a_scan_stops_at_a_broken_run_of_sequence_numbers() {
        let dir = tempdir();
        let path = dir.join("x.log");
        let mut b = LOG_MAGIC.to_vec();
        put_entry(&mut b, 5, b"one");
        put_entry(&mut b, 6, b"two");
        put_entry(&mut b, 9, b"three");
        std::fs::write(&path, &b).unwrap();
        let s = scan_log(&path).unwrap();
        assert_eq!(s.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 6]);
        assert!(s.valid_end < s.file_len);
        let f = File::open(&path).unwrap();
        assert_eq!(read_entry(&f, s.entries[1]).unwrap(), b"two");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dead_letters_read_back() {
        let dir = tempdir();
        let path = dead_path(&dir);
        let mut b = DEAD_MAGIC.to_vec();
        put_dead(&mut b, 7, "table dropped", b"rec");
        b.extend_from_slice(b"torn");
        std::fs::write(&path, &b).unwrap();
        assert_eq!(
            scan_dead(&path).unwrap(),
            [(7, "table dropped".to_string(), b"rec".to_vec())]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    pub(crate) fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "cutover-journal-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
