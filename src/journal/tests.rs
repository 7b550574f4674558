use std::path::Path;

use bytes::Bytes;

use super::segment::tests::tempdir;
use super::*;

fn record(i: u64) -> Record {
    Record {
        written_at_ms: 1_796_000_000_000 + i,
        write_time: 1_796_000_000_000_000 + i as i64,
        cluster: "target".into(),
        tenant: None,
        table: "ks.t".into(),
        keyspace: Some("ks".into()),
        version: 4,
        opcode: 0x07,
        prepared: Vec::new(),
        body: Bytes::from(format!("INSERT INTO ks.t (k, v) VALUES ({i}, 'value {i}')")),
    }
}

fn opts(dir: &Path, durability: Durability) -> Options {
    Options {
        dir: dir.to_path_buf(),
        max_bytes: 64 * 1024 * 1024,
        segment_bytes: 1024,
        durability,
    }
}

fn open(o: Options) -> (Arc<Journal>, Recovery) {
    Journal::open(o).unwrap()
}

/// Appends records `range`, waiting for each to be durable.
fn fill(j: &Journal, range: std::ops::Range<u64>) -> Vec<u64> {
    let pending: Vec<_> = range.map(|i| j.append(&record(i)).unwrap()).collect();
    pending.into_iter().map(|p| p.wait().unwrap()).collect()
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log") && !p.ends_with("dead-letter.log"))
        .collect();
    v.sort();
    v
}

#[test]
fn records_read_back_and_a_done_one_is_not_pending_after_a_restart() {
    for durability in [
        Durability::PageCache,
        Durability::GroupCommit(Duration::from_millis(5)),
        Durability::Fsync,
    ] {
        let dir = tempdir();
        let (j, rec) = open(opts(&dir, durability));
        assert_eq!(rec, Recovery::default());
        let seqs = fill(&j, 0..40);
        assert_eq!(seqs, (0..40).collect::<Vec<_>>());
        for s in &seqs {
            assert_eq!(j.read(*s).unwrap(), record(*s));
        }
        for s in seqs.iter().filter(|s| *s % 2 == 0) {
            j.done(*s);
        }
        let st = j.stats();
        assert_eq!(
            (st.appended_total, st.done_total, st.pending_records),
            (40, 20, 20)
        );
        assert!(st.segments > 1, "1 KiB segments: {st:?}");
        j.close();
        drop(j);

        let (j, rec) = open(opts(&dir, durability));
        assert_eq!(rec.pending, 20, "{durability:?}");
        assert_eq!(j.pending_for("target"), 20);
        assert_eq!(j.pending_for("origin"), 0);
        assert_eq!(j.pending_by_cluster(), [("target".to_string(), 20)]);
        assert_eq!(rec.cut_bytes, 0);
        let claimed = j.claim_for_replay(100);
        assert_eq!(claimed, (0..40).filter(|s| s % 2 == 1).collect::<Vec<_>>());
        for s in claimed {
            assert_eq!(j.read(s).unwrap(), record(s));
        }
        // New records follow the recovered ones.
        assert_eq!(fill(&j, 100..101), [40]);
        j.close();
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn a_segment_goes_once_all_its_records_are_done() {
    let dir = tempdir();
    let (j, _) = open(opts(&dir, Durability::PageCache));
    let seqs = fill(&j, 0..30);
    let before = j.stats();
    assert!(before.segments >= 3, "{before:?}");
    for s in &seqs {
        j.done(*s);
    }
    let st = j.stats();
    assert_eq!(st.pending_records, 0);
    assert_eq!(st.pending_bytes, 0);
    // Only the segment still appended to is kept.
    assert_eq!(st.segments, 1, "{st:?}");
    assert!(st.used_bytes < before.used_bytes);
    j.close();
    assert_eq!(segment_files(&dir).len(), 1);
    drop(j);
    let (j, rec) = open(opts(&dir, Durability::PageCache));
    assert_eq!(rec.pending, 0);
    assert_eq!(rec.segments, 0, "an all-done segment is deleted at open");
    assert!(segment_files(&dir).is_empty());
    assert!(j.claim_for_replay(10).is_empty());
    j.close();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes 60 records (several segments), closes, and returns each
/// record's entry: file, offset, end.
fn journal_of_60(dir: &Path) -> Vec<(std::path::PathBuf, u64, u64)> {
    let (j, _) = open(opts(dir, Durability::PageCache));
    fill(&j, 0..60);
    j.close();
    let mut entries = Vec::new();
    for f in segment_files(dir) {
        for e in segment::scan_log(&f).unwrap().entries {
            entries.push((f.clone(), e.offset, e.offset + e.len as u64));
        }
    }
    assert_eq!(entries.len(), 60);
    entries
}

#[test]
fn a_truncated_journal_keeps_every_whole_record_before_the_cut() {
    let dir = tempdir();
    let entries = journal_of_60(&dir);
    let files = segment_files(&dir);
    let last = files.last().unwrap().clone();
    let saved = std::fs::read(&last).unwrap();
    let before_last = entries.iter().filter(|e| e.0 != last).count() as u64;
    for cut in 0..saved.len() as u64 {
        std::fs::write(&last, &saved[..cut as usize]).unwrap();
        let whole = entries.iter().filter(|e| e.0 == last && e.2 <= cut).count() as u64;
        let (j, rec) = open(opts(&dir, Durability::PageCache));
        assert_eq!(rec.pending, before_last + whole, "cut at {cut}");
        let claimed = j.claim_for_replay(1000);
        assert_eq!(
            claimed,
            (0..before_last + whole).collect::<Vec<_>>(),
            "cut at {cut}"
        );
        for s in claimed {
            assert_eq!(j.read(s).unwrap(), record(s), "cut at {cut}");
        }
        j.close();
        drop(j);
        // Put the whole journal back (the open cut the tail, or removed an
        // empty file); the next open appends nothing.
        for f in segment_files(&dir) {
            if !files.contains(&f) {
                std::fs::remove_file(f).unwrap();
            }
        }
        std::fs::write(&last, &saved).unwrap();
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_damaged_byte_anywhere_keeps_every_record_before_it() {
    let dir = tempdir();
    let entries = journal_of_60(&dir);
    let files = segment_files(&dir);
    let saved: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    for (fi, file) in files.iter().enumerate() {
        let len = saved[fi].len();
        // Every offset of the first two segments, every seventh elsewhere.
        let step = if fi < 2 { 1 } else { 7 };
        for at in (0..len).step_by(step) {
            let mut damaged = saved[fi].clone();
            damaged[at] ^= 0x5a;
            std::fs::write(file, &damaged).unwrap();
            let (j, _) = open(opts(&dir, Durability::PageCache));
            let claimed: HashSet<u64> = j.claim_for_replay(1000).into_iter().collect();
            // Every record of another segment, and every one of this
            // segment that ends before the damage, is recovered and reads
            // back whole.
            for (seq, e) in entries.iter().enumerate() {
                let seq = seq as u64;
                let expect = e.0 != *file || e.2 <= at as u64;
                if expect {
                    assert!(
                        claimed.contains(&seq),
                        "{}: byte {at}: record {seq} lost",
                        file.display()
                    );
                    assert_eq!(j.read(seq).unwrap(), record(seq));
                }
            }
            // Nothing after the damage in that segment is served as a record.
            for seq in &claimed {
                assert_eq!(j.read(*seq).unwrap(), record(*seq));
            }
            j.close();
            drop(j);
            for (k, f) in files.iter().enumerate() {
                std::fs::write(f, &saved[k]).unwrap();
            }
            for p in std::fs::read_dir(&dir).unwrap() {
                let p = p.unwrap().path();
                if !files.contains(&p) {
                    std::fs::remove_file(p).unwrap();
                }
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_full_journal_refuses_and_makes_room_when_records_are_done() {
    let dir = tempdir();
    let mut o = opts(&dir, Durability::PageCache);
    o.max_bytes = 4096;
    let (j, _) = open(o);
    let mut seqs = Vec::new();
    let err = loop {
        match j.append(&record(seqs.len() as u64)) {
            Ok(p) => seqs.push(p.wait().unwrap()),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, JournalError::Full { max: 4096, .. }), "{err}");
    assert!(err.to_string().contains("the journal is full"));
    let st = j.stats();
    assert_eq!(st.full_total, 1);
    assert!(st.used_bytes <= 4096);
    for s in &seqs {
        j.done(*s);
    }
    assert!(j.append(&record(999)).is_ok());
    j.close();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_released_record_is_replayed_and_a_claimed_one_is_not() {
    let dir = tempdir();
    let (j, _) = open(opts(&dir, Durability::PageCache));
    let seqs = fill(&j, 0..10);
    // All ten are claimed by their live sends.
    assert!(j.claim_for_replay(100).is_empty());
    assert!(!j.has_backlog());
    j.done(0);
    j.release(3);
    j.release(7);
    assert!(j.has_backlog());
    assert_eq!(j.claim_for_replay(1), [3]);
    assert_eq!(j.claim_for_replay(100), [7]);
    assert!(j.claim_for_replay(100).is_empty());
    j.release(3);
    assert_eq!(j.claim_for_replay(100), [3]);
    for s in seqs {
        j.done(s);
    }
    assert_eq!(j.stats().pending_records, 0);
    j.close();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_dead_letter_keeps_the_record_and_its_error() {
    let dir = tempdir();
    let (j, _) = open(opts(&dir, Durability::Fsync));
    let seqs = fill(&j, 0..3);
    j.dead_letter(seqs[1], "table ks.t does not exist").unwrap();
    assert_eq!(j.stats().dead_letters_total, 1);
    assert_eq!(j.stats().pending_records, 2);
    j.close();
    drop(j);
    let (j, rec) = open(opts(&dir, Durability::Fsync));
    assert_eq!(rec.pending, 2);
    assert_eq!(j.stats().dead_letters_total, 1);
    let dead = j.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, 1);
    assert_eq!(dead[0].1, "table ks.t does not exist");
    assert_eq!(dead[0].2, record(1));
    assert_eq!(j.claim_for_replay(10), [0, 2]);
    j.close();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_oldest_pending_record_gives_the_backlog_age() {
    let dir = tempdir();
    let (j, _) = open(opts(&dir, Durability::PageCache));
    assert_eq!(j.oldest_pending_ms(), None);
    let seqs = fill(&j, 0..20);
    for s in &seqs[..12] {
        j.done(*s);
    }
    assert_eq!(j.oldest_pending_ms(), Some(record(12).written_at_ms));
    j.close();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn counts_by_table_are_bounded() {
    let dir = tempdir();
    let (j, _) = open(Options {
        segment_bytes: 1024 * 1024,
        ..opts(&dir, Durability::PageCache)
    });
    let n = MAX_TABLES as u64 + 50;
    for i in 0..n {
        let r = Record {
            table: format!("ks.t{i}"),
            ..record(i)
        };
        j.append(&r).unwrap().wait().unwrap();
    }
    let tables = j.by_table();
    assert_eq!(tables.len(), MAX_TABLES + 1, "the rest counted as other");
    let other = tables.iter().find(|t| t.table == "other").unwrap();
    assert_eq!(other.pending, 50);
    assert_eq!(tables.iter().map(|t| t.pending).sum::<u64>(), n);
    j.done(0);
    assert_eq!(j.by_table()[0].pending, 0);
    assert_eq!(j.by_table()[0].acknowledged, 1);
    j.close();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn one_process_at_a_time_opens_a_journal() {
    let dir = tempdir();
    let (j, _) = open(opts(&dir, Durability::PageCache));
    let err = Journal::open(opts(&dir, Durability::PageCache))
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    j.close();
    drop(j);
    let (j, _) = open(opts(&dir, Durability::PageCache));
    j.close();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_directory_that_cannot_be_made_is_a_clear_error() {
    let dir = tempdir();
    let file = dir.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = Journal::open(opts(&file.join("journal"), Durability::PageCache))
        .err()
        .expect("an error");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_whole_record_of_a_newer_format_is_refused_not_cut() {
    let dir = tempdir();
    let entries = journal_of_60(&dir);
    let (file, offset, end) = entries.last().unwrap().clone();
    let mut b = std::fs::read(&file).unwrap();
    let (at, end) = (offset as usize, end as usize);
    b[at + segment::ENTRY_HEADER + 8] = 9;
    let mut h = crc32fast::Hasher::new();
    h.update(&b[at..at + 4]);
    h.update(&b[at + segment::ENTRY_HEADER..end]);
    b[at + 4..at + 8].copy_from_slice(&h.finalize().to_be_bytes());
    std::fs::write(&file, &b).unwrap();
    let err = Journal::open(opts(&dir, Durability::PageCache))
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            JournalError::NewerFormat {
                seq: 59,
                format: 9,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("until the journal is empty"),
        "{err}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b, "the journal was changed");
    std::fs::remove_dir_all(dir).unwrap();
}
