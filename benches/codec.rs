//! Frame codec micro-benchmark: decode and encode throughput for the framings
//! cutover speaks, against a plain memcpy of the same bytes as the baseline.
//!
//!     cargo bench --bench codec            (about 20 s)
//!     cargo bench --bench codec -- --quick (about 5 s)

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use cutover::frame::{Compression, Frame, FrameCodec, Opcode};
use cutover::protocol::reader::RawValue;
use cutover::protocol::request::{Execute, QueryParams};
use cutover::protocol::response::{rows, ColumnSpec, RowsMetadata};
use cutover::protocol::ColumnType;
use tokio_util::codec::{Decoder, Encoder};

struct Workload {
    name: &'static str,
    frames: Vec<Frame>,
}

fn execute_frame(i: i16) -> Frame {
    let body = Execute {
        id: Bytes::from_static(&[7; 16]),
        result_metadata_id: None,
        params: QueryParams {
            consistency: 1,
            values: vec![
                RawValue::Bytes(Bytes::from(format!("tenant-{i}"))),
                RawValue::Bytes(Bytes::copy_from_slice(&(i as i32).to_be_bytes())),
                RawValue::Bytes(Bytes::from(vec![b'x'; 80])),
            ],
            timestamp: Some(1_700_000_000_000_000),
            ..Default::default()
        },
    }
    .encode(4);
    Frame::request(4, i, Opcode::Execute, body)
}

fn rows_frame(i: i16, n: usize) -> Frame {
    let spec = |name: &str, typ| ColumnSpec {
        keyspace: "ks".into(),
        table: "t".into(),
        name: name.into(),
        typ,
    };
    let meta = RowsMetadata::new(vec![
        spec("k", ColumnType::Varchar),
        spec("c", ColumnType::Int),
        spec("v", ColumnType::Varchar),
    ]);
    let data: Vec<Vec<Option<Bytes>>> = (0..n)
        .map(|r| {
            vec![
                Some(Bytes::from(format!("key-{r}"))),
                Some(Bytes::copy_from_slice(&(r as i32).to_be_bytes())),
                Some(Bytes::from(format!(
                    "value number {r} with some padding to look like a row"
                ))),
            ]
        })
        .collect();
    Frame::response(4, i, Opcode::Result, rows(&meta, &data))
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "EXECUTE ~150 B",
            frames: (0..1000).map(execute_frame).collect(),
        },
        Workload {
            name: "ROWS 100 rows ~8 KiB",
            frames: (0..100).map(|i| rows_frame(i, 100)).collect(),
        },
        Workload {
            name: "ROWS 10k rows ~800 KiB",
            frames: vec![rows_frame(1, 10_000)],
        },
    ]
}

#[derive(Clone, Copy)]
enum Framing {
    V4,
    V4Lz4,
    V4Snappy,
    V5,
    V5Lz4,
}

impl Framing {
    fn name(self) -> &'static str {
        match self {
            Framing::V4 => "v4",
            Framing::V4Lz4 => "v4+lz4",
            Framing::V4Snappy => "v4+snappy",
            Framing::V5 => "v5 segments",
            Framing::V5Lz4 => "v5+lz4",
        }
    }

    fn codec(self) -> FrameCodec {
        let mut c = FrameCodec::client();
        match self {
            Framing::V4 => {}
            Framing::V4Lz4 => c.set_compression(Some(Compression::Lz4)),
            Framing::V4Snappy => c.set_compression(Some(Compression::Snappy)),
            Framing::V5 => c.enable_segments(),
            Framing::V5Lz4 => {
                c.set_compression(Some(Compression::Lz4));
                c.enable_segments()
            }
        }
        c
    }
}

/// Runs `f` (one pass over `bytes` bytes) repeatedly for `time`; bytes/s.
fn measure(time: Duration, bytes: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut passes = 0u64;
    while start.elapsed() < time {
        f();
        passes += 1;
    }
    (passes as f64 * bytes as f64) / start.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let time = Duration::from_millis(if quick { 150 } else { 600 });
    println!(
        "frame codec throughput (MiB/s of plain frame bytes; baseline: memcpy of the same bytes)\n"
    );
    println!(
        "{:<24} {:<12} {:>12} {:>10} {:>12} {:>10} {:>12}",
        "workload", "framing", "decode", "÷memcpy", "encode", "÷memcpy", "frames/s dec"
    );
    for w in workloads() {
        let mut plain = BytesMut::new();
        for f in &w.frames {
            f.write_plain(&mut plain);
        }
        let plain_len = plain.len();
        let mut sink = vec![0u8; plain_len];
        let memcpy = measure(time, plain_len, || {
            sink.copy_from_slice(black_box(&plain));
            black_box(&sink);
        });
        for framing in [
            Framing::V4,
            Framing::V4Lz4,
            Framing::V4Snappy,
            Framing::V5,
            Framing::V5Lz4,
        ] {
            let mut wire = BytesMut::new();
            let mut enc = framing.codec();
            for f in &w.frames {
                enc.encode(f.clone(), &mut wire).unwrap();
            }
            let wire = wire.freeze();
            let decode = measure(time, plain_len, || {
                let mut dec = framing.codec();
                let mut buf = BytesMut::from(&wire[..]);
                let mut n = 0;
                while let Some(f) = dec.decode(&mut buf).unwrap() {
                    black_box(&f);
                    n += 1;
                }
                assert_eq!(n, w.frames.len());
            });
            let encode = measure(time, plain_len, || {
                let mut enc = framing.codec();
                let mut out = BytesMut::with_capacity(wire.len() + 1024);
                for f in &w.frames {
                    enc.encode(f.clone(), &mut out).unwrap();
                }
                black_box(&out);
            });
            let mib = |x: f64| x / (1024.0 * 1024.0);
            println!(
                "{:<24} {:<12} {:>12.0} {:>10.3} {:>12.0} {:>10.3} {:>12.0}",
                w.name,
                framing.name(),
                mib(decode),
                decode / memcpy,
                mib(encode),
                encode / memcpy,
                decode / plain_len as f64 * w.frames.len() as f64,
            );
        }
        println!(
            "{:<24} {:<12} {:>12.0}",
            w.name,
            "memcpy",
            memcpy / (1024.0 * 1024.0)
        );
        println!();
    }
}
