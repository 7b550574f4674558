//! Decodes every frame captured from real drivers (proto-fixtures/), checks
//! the fields a proxy relies on, re-encodes them, and cross-checks the v4
//! captures against an independent codec (`scylla-cql`).

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use cutover::frame::{Compression, Frame, FrameCodec, Opcode};
use cutover::protocol::request::{read_startup, Batch, BatchStatement, Execute, Prepare, Query};
use cutover::protocol::response::ResultBody;
use cutover::protocol::ErrorFrame;
use tokio_util::codec::{Decoder, Encoder};

/// One recorded connection, cut into frames.
struct Conn {
    path: PathBuf,
    client_bytes: Vec<u8>,
    server_bytes: Vec<u8>,
    client: Vec<Frame>,
    server: Vec<Frame>,
    version: u8,
    compression: Option<Compression>,
}

fn read_rec(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let d = std::fs::read(path).unwrap();
    let (mut c, mut s) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < d.len() {
        let tag = d[i];
        let n = u32::from_be_bytes(d[i + 9..i + 13].try_into().unwrap()) as usize;
        let bytes = &d[i + 13..i + 13 + n];
        if tag == b'C' {
            c.extend_from_slice(bytes)
        } else {
            s.extend_from_slice(bytes)
        }
        i += 13 + n;
    }
    (c, s)
}

/// Applies the handshake's effect on framing, as both peers do: v3/v4 compress
/// every frame after STARTUP (the answer to STARTUP included); v5 switches to
/// segments after STARTUP (client) and after READY/AUTHENTICATE (server).
#[derive(Clone, Copy)]
enum Side {
    Client,
    Server,
}

fn before_frame(
    side: Side,
    codec: &mut FrameCodec,
    c: &Conn,
    prev: Option<&Frame>,
    next: Option<&Frame>,
) {
    match (side, c.version) {
        (Side::Client, 5) => {
            if prev.is_some_and(|f| f.op() == Some(Opcode::Startup)) {
                codec.set_compression(c.compression);
                codec.enable_segments();
            }
        }
        (Side::Client, _) => {
            if prev.is_some_and(|f| f.op() == Some(Opcode::Startup)) {
                codec.set_compression(c.compression);
            }
        }
        (Side::Server, 5) => {
            if prev
                .is_some_and(|f| matches!(f.op(), Some(Opcode::Ready) | Some(Opcode::Authenticate)))
            {
                codec.set_compression(c.compression);
                codec.enable_segments();
            }
        }
        (Side::Server, _) => {
            if next
                .is_some_and(|f| matches!(f.op(), Some(Opcode::Ready) | Some(Opcode::Authenticate)))
            {
                codec.set_compression(c.compression);
            }
        }
    }
}

fn decode_all(side: Side, bytes: &[u8], c: &Conn) -> Vec<Frame> {
    let mut codec = FrameCodec::client();
    if let (Side::Server, 3 | 4) = (side, c.version) {
        // Decoding only looks at each frame's own compression flag.
        codec.set_compression(c.compression);
    }
    let mut buf = BytesMut::from(bytes);
    let mut out: Vec<Frame> = Vec::new();
    loop {
        if let Side::Client = side {
            before_frame(side, &mut codec, c, out.last(), None);
        } else if c.version == 5 {
            before_frame(side, &mut codec, c, out.last(), None);
        }
        match codec.decode(&mut buf) {
            Ok(Some(f)) => out.push(f),
            Ok(None) => break,
            Err(e) => panic!(
                "{}: {side_name} stream: {e}",
                c.path.display(),
                side_name = name(side)
            ),
        }
    }
    assert!(
        buf.is_empty(),
        "{}: {} bytes left undecoded",
        c.path.display(),
        buf.len()
    );
    out
}

fn encode_all(side: Side, frames: &[Frame], c: &Conn) -> Bytes {
    let mut codec = FrameCodec::client();
    let mut out = BytesMut::new();
    for (i, f) in frames.iter().enumerate() {
        before_frame(
            side,
            &mut codec,
            c,
            i.checked_sub(1).map(|p| &frames[p]),
            Some(f),
        );
        codec.encode(f.clone(), &mut out).unwrap();
    }
    out.freeze()
}

fn name(side: Side) -> &'static str {
    match side {
        Side::Client => "client",
        Side::Server => "server",
    }
}

fn load(path: &Path) -> Option<Conn> {
    let (client_bytes, server_bytes) = read_rec(path);
    let version = client_bytes[0] & 0x7f;
    let mut c = Conn {
        path: path.to_path_buf(),
        client_bytes,
        server_bytes,
        client: Vec::new(),
        server: Vec::new(),
        version,
        compression: None,
    };
    if !(3..=5).contains(&version) {
        // A refused version probe: the server's answer is one ERROR frame.
        let mut codec = FrameCodec::client();
        let f = codec
            .decode(&mut BytesMut::from(&c.server_bytes[..]))
            .unwrap()
            .unwrap();
        let e = ErrorFrame::decode(&f.body).unwrap();
        assert_eq!(e.code.0, 0x000A);
        assert!(
            e.message.starts_with(&format!(
                "Invalid or unsupported protocol version ({version})"
            )),
            "{e:?}"
        );
        return None;
    }
    // STARTUP options decide the compression of everything after it.
    let mut probe = FrameCodec::client();
    let mut buf = BytesMut::from(&c.client_bytes[..]);
    while let Some(f) = probe.decode(&mut buf).unwrap() {
        if f.op() == Some(Opcode::Startup) {
            for (k, v) in read_startup(&f.body).unwrap() {
                if k == "COMPRESSION" {
                    c.compression = Compression::from_option(&v);
                }
            }
            break;
        }
    }
    c.client = decode_all(Side::Client, &c.client_bytes.clone(), &c);
    c.server = decode_all(Side::Server, &c.server_bytes.clone(), &c);
    Some(c)
}

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto-fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn conns(dir: &Path) -> Vec<Conn> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rec"))
        .collect();
    files.sort();
    files.iter().filter_map(|f| load(f)).collect()
}

/// What one fixture set must contain, from the session that recorded it.
struct Expect {
    keyspace: &'static str,
    /// Row count and "more pages" flag of each page of the paged SELECT.
    pages: &'static [(usize, bool)],
    lwt: bool,
}

fn expectation(dir: &Path) -> Expect {
    let name = dir.file_name().unwrap().to_str().unwrap();
    if name.starts_with("scylla") {
        Expect {
            keyspace: "fxr",
            pages: &[(3, true)],
            lwt: false,
        }
    } else {
        Expect {
            keyspace: "fx",
            pages: &[(3, true), (3, true), (1, false)],
            lwt: true,
        }
    }
}

#[test]
fn fixtures_exist_for_every_driver_and_version() {
    let names: Vec<String> = fixture_dirs()
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for v in ["v3", "v4", "v5"] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("python-driver") && n.contains(v)),
            "python {v}: {names:?}"
        );
    }
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("scylla-rust") && n.contains("v4")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.contains("lz4")), "{names:?}");
}

#[test]
fn every_fixture_decodes_with_the_fields_a_proxy_needs() {
    for dir in fixture_dirs() {
        let expect = expectation(&dir);
        let all = conns(&dir);
        assert!(!all.is_empty(), "{}", dir.display());
        let mut prepared_ids = Vec::new();
        let mut executes = Vec::new();
        let mut batches = 0;
        let mut page_rows = Vec::new();
        let mut lwt_not_applied = 0;
        let mut unconfigured = 0;
        for c in &all {
            let v = c.version;
            assert!(c
                .client
                .iter()
                .all(|f| f.protocol_version() == v && !f.is_response()));
            assert!(c
                .server
                .iter()
                .all(|f| f.protocol_version() == v && f.is_response()));
            let startup = c
                .client
                .iter()
                .find(|f| f.op() == Some(Opcode::Startup))
                .expect("a STARTUP");
            let opts = read_startup(&startup.body).unwrap();
            assert!(opts.iter().any(|(k, _)| k == "CQL_VERSION"), "{opts:?}");
            // Every answer carries the stream of a request on this connection.
            for f in &c.server {
                if f.stream >= 0 {
                    assert!(
                        c.client.iter().any(|r| r.stream == f.stream),
                        "{}: orphan answer",
                        c.path.display()
                    );
                }
            }
            let answer = |req: &Frame| -> &Frame {
                let pos = c.client.iter().position(|x| std::ptr::eq(x, req)).unwrap();
                // The n-th use of a stream id is answered by the n-th answer on it.
                let nth = c.client[..pos]
                    .iter()
                    .filter(|x| x.stream == req.stream)
                    .count();
                c.server
                    .iter()
                    .filter(|x| x.stream == req.stream)
                    .nth(nth)
                    .expect("an answer")
            };
            for req in &c.client {
                match req.op().expect("known opcode") {
                    Opcode::Prepare => {
                        let p = Prepare::read(&req.body, v).unwrap();
                        let res = answer(req);
                        if let Ok(ResultBody::Prepared(pr)) = ResultBody::read(&res.body, v) {
                            // The id is Cassandra's: MD5 of (session keyspace +) text.
                            assert_eq!(
                                &pr.id[..],
                                &cutover::protocol::prepared_id(None, &p.text)[..],
                                "{}",
                                p.text
                            );
                            if p.text.starts_with("INSERT") {
                                assert_eq!(pr.bind.columns.len(), 3);
                                if v >= 4 {
                                    assert_eq!(
                                        pr.pk_indexes,
                                        vec![0],
                                        "partition key is the first marker"
                                    );
                                }
                            }
                            assert_eq!(pr.result_metadata_id.is_some(), v >= 5);
                            prepared_ids.push(pr.id);
                        }
                    }
                    Opcode::Execute => {
                        let e = Execute::read(&req.body, v).unwrap();
                        assert_eq!(Execute::read_id(&req.body).unwrap(), e.id);
                        assert_eq!(e.result_metadata_id.is_some(), v >= 5);
                        executes.push(e.id.clone());
                        collect_page(answer(req), v, &e.params.page_size, &mut page_rows);
                    }
                    Opcode::Query => {
                        let q = Query::read(&req.body, v).unwrap();
                        assert_eq!(Query::read_text(&req.body).unwrap(), q.text);
                        let res = answer(req);
                        if q.text
                            .contains(&format!("FROM {}.t WHERE p = 'k'", expect.keyspace))
                            && q.params.page_size == Some(3)
                            || q.params.paging_state.is_some()
                        {
                            collect_page(res, v, &q.params.page_size, &mut page_rows);
                        }
                        if q.text.contains("IF NOT EXISTS") {
                            let ResultBody::Rows(r) = ResultBody::read(&res.body, v).unwrap()
                            else {
                                panic!()
                            };
                            assert_eq!(r.metadata.columns[0].name, "[applied]");
                            assert_eq!(r.rows[0][0].as_deref(), Some(&[0u8][..]));
                            lwt_not_applied += 1;
                        }
                        if q.text.contains("fx.nope") {
                            let e = ErrorFrame::decode(&res.body).unwrap();
                            assert_eq!(
                                (e.code.0, e.message.as_str()),
                                (0x2200, "unconfigured table nope")
                            );
                            unconfigured += 1;
                        }
                    }
                    Opcode::Batch => {
                        let b = Batch::read(&req.body, v).unwrap();
                        assert_eq!(b.children.len(), 2);
                        assert!(matches!(
                            b.children[0].statement,
                            BatchStatement::Prepared(_)
                        ));
                        assert!(
                            matches!(&b.children[1].statement, BatchStatement::Query(q) if q.contains("'v6'"))
                        );
                        assert!(matches!(
                            ResultBody::read(&answer(req).body, v).unwrap(),
                            ResultBody::Void
                        ));
                        batches += 1;
                    }
                    _ => {}
                }
            }
        }
        let d = dir.display();
        assert!(!prepared_ids.is_empty(), "{d}: PREPARE/PREPARED");
        assert!(
            executes
                .iter()
                .filter(|id| prepared_ids.contains(id))
                .count()
                >= 5,
            "{d}: EXECUTEs of prepared ids"
        );
        assert_eq!(batches, 1, "{d}: one BATCH");
        assert_eq!(page_rows, expect.pages, "{d}: paged SELECT");
        assert_eq!(lwt_not_applied, expect.lwt as usize, "{d}: LWT");
        assert_eq!(unconfigured, expect.lwt as usize, "{d}: error answer");
    }
}

fn collect_page(res: &Frame, v: u8, page_size: &Option<i32>, pages: &mut Vec<(usize, bool)>) {
    if *page_size != Some(3) {
        return;
    }
    if let Ok(ResultBody::Rows(r)) = ResultBody::read(&res.body, v) {
        pages.push((r.rows.len(), r.metadata.paging_state.is_some()));
    }
}

#[test]
fn uncompressed_v3_v4_frames_re_encode_byte_for_byte() {
    let mut checked = 0;
    for dir in fixture_dirs() {
        for c in conns(&dir) {
            if c.version == 5 || c.compression.is_some() {
                continue;
            }
            assert_eq!(
                &encode_all(Side::Client, &c.client, &c)[..],
                &c.client_bytes[..],
                "{}",
                c.path.display()
            );
            assert_eq!(
                &encode_all(Side::Server, &c.server, &c)[..],
                &c.server_bytes[..],
                "{}",
                c.path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "checked {checked} connections");
}

#[test]
fn compressed_and_v5_frames_survive_decode_encode_decode() {
    let mut checked = 0;
    for dir in fixture_dirs() {
        for c in conns(&dir) {
            if c.version != 5 && c.compression.is_none() {
                continue;
            }
            for (side, frames) in [(Side::Client, &c.client), (Side::Server, &c.server)] {
                let again = decode_all(side, &encode_all(side, frames, &c), &c);
                assert_eq!(&again, frames, "{} {}", c.path.display(), name(side));
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "checked {checked} connections");
}

#[test]
fn v4_fixtures_agree_with_scylla_cql() {
    use scylla_cql::frame::protocol_features::ProtocolFeatures;
    use scylla_cql::frame::request::{RequestOpcode, RequestV2};
    use scylla_cql::frame::response::result::Result as SResult;
    use scylla_cql::frame::response::{Response, ResponseOpcode};

    let features = ProtocolFeatures::default();
    let mut compared = 0;
    for dir in fixture_dirs() {
        for c in conns(&dir).into_iter().filter(|c| c.version == 4) {
            for f in &c.client {
                let opcode = match f.op() {
                    Some(Opcode::Query) => RequestOpcode::Query,
                    Some(Opcode::Execute) => RequestOpcode::Execute,
                    Some(Opcode::Batch) => RequestOpcode::Batch,
                    _ => continue,
                };
                let theirs = RequestV2::deserialize(&mut &f.body[..], opcode, &features).unwrap();
                match theirs {
                    RequestV2::Query(q) => {
                        let ours = Query::read(&f.body, 4).unwrap();
                        assert_eq!(q.contents, ours.text);
                        assert_eq!(q.parameters.page_size, ours.params.page_size);
                        assert_eq!(q.parameters.timestamp, ours.params.timestamp);
                    }
                    RequestV2::Execute(e) => {
                        let ours = Execute::read(&f.body, 4).unwrap();
                        assert_eq!(e.id.as_ref(), &ours.id[..]);
                        assert_eq!(e.parameters.page_size, ours.params.page_size);
                    }
                    RequestV2::Batch(b) => {
                        assert_eq!(
                            b.statements.len(),
                            Batch::read(&f.body, 4).unwrap().children.len()
                        );
                    }
                    _ => unreachable!("only QUERY, EXECUTE and BATCH are asked for"),
                }
                compared += 1;
            }
            for f in &c.server {
                let opcode = match f.op() {
                    Some(Opcode::Result) => ResponseOpcode::Result,
                    Some(Opcode::Error) => ResponseOpcode::Error,
                    _ => continue,
                };
                let theirs =
                    Response::deserialize(&features, opcode, f.body.clone(), None).unwrap();
                match (theirs, ResultBody::read(&f.body, 4)) {
                    (Response::Result(SResult::Void), Ok(ResultBody::Void)) => {}
                    (
                        Response::Result(SResult::Rows((raw, paging))),
                        Ok(ResultBody::Rows(ours)),
                    ) => {
                        let meta = raw.deserialize_metadata().unwrap();
                        assert_eq!(meta.rows_count(), ours.rows.len());
                        assert_eq!(
                            meta.metadata().col_specs().len(),
                            ours.metadata.column_count
                        );
                        let more = matches!(
                            paging,
                            scylla_cql::frame::request::query::PagingStateResponse::HasMorePages { .. }
                        );
                        assert_eq!(more, ours.metadata.paging_state.is_some());
                    }
                    (Response::Result(SResult::Prepared(p)), Ok(ResultBody::Prepared(ours))) => {
                        assert_eq!(&p.id[..], &ours.id[..]);
                        assert_eq!(p.prepared_metadata.col_specs.len(), ours.bind.columns.len());
                        assert_eq!(
                            p.prepared_metadata
                                .pk_indexes
                                .iter()
                                .map(|i| i.index)
                                .collect::<Vec<_>>(),
                            ours.pk_indexes
                        );
                    }
                    (
                        Response::Result(SResult::SetKeyspace(k)),
                        Ok(ResultBody::SetKeyspace(ours)),
                    ) => {
                        assert_eq!(k.keyspace_name, ours)
                    }
                    (
                        Response::Result(SResult::SchemaChange(_)),
                        Ok(ResultBody::SchemaChange(_)),
                    ) => {}
                    (Response::Error(e), _) => {
                        let ours = ErrorFrame::decode(&f.body).unwrap();
                        assert_eq!(e.error.code(&features), ours.code.0);
                        assert_eq!(e.reason, ours.message);
                    }
                    (theirs, ours) => panic!("disagree: {theirs:?} vs {ours:?}"),
                }
                compared += 1;
            }
        }
    }
    assert!(compared > 50, "compared {compared} frames");
}

#[test]
fn every_statement_the_drivers_sent_classifies() {
    use cutover::cql::{classify, StatementKind};
    let mut seen = 0;
    let mut system_reads = 0;
    for dir in fixture_dirs() {
        for c in conns(&dir) {
            for f in &c.client {
                let text = match f.op() {
                    Some(Opcode::Query) => Query::read(&f.body, c.version).unwrap().text,
                    Some(Opcode::Prepare) => Prepare::read(&f.body, c.version).unwrap().text,
                    _ => continue,
                };
                let k = classify(&text, None).unwrap_or_else(|e| panic!("{text}: {e}"));
                let upper = text.trim_start().to_ascii_uppercase();
                let expected = if upper.starts_with("SELECT") {
                    StatementKind::Read
                } else if upper.starts_with("CREATE") {
                    StatementKind::Schema
                } else {
                    StatementKind::Write
                };
                assert_eq!(k.kind, expected, "{text}");
                if upper.contains("FROM SYSTEM") {
                    assert!(k.system, "{text}");
                    system_reads += 1;
                }
                seen += 1;
            }
        }
    }
    assert!(
        seen > 100 && system_reads > 50,
        "{seen} statements, {system_reads} system reads"
    );
}
