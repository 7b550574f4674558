//! The fuzz targets' checks (`fuzz/src/`), run on stable: on every input
//! kept under `fuzz/regressions/<target>/` (each a finding of the fuzzer,
//! fixed since), and on a bounded number of inputs mutated from small
//! seeds with a fixed random seed, so every run checks the same ones.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod cutover_fuzz;

use rand::{Rng, SeedableRng};

#[global_allocator]
static ALLOC: cutover_fuzz::CountingAlloc = cutover_fuzz::CountingAlloc;

/// A target's check of one input.
type Check = fn(&[u8]);

const TARGETS: &[(&str, Check)] = &[
    ("frame_codec", cutover_fuzz::frame_codec::check),
    ("segment", cutover_fuzz::segment::check),
    ("request_bodies", cutover_fuzz::request_bodies::check),
    ("response_bodies", cutover_fuzz::response_bodies::check),
    ("lexer", cutover_fuzz::lexer::check),
    ("classify", cutover_fuzz::classify::check),
    ("node", cutover_fuzz::node::check),
    ("config", cutover_fuzz::config::check),
];

#[test]
fn every_kept_finding_passes_its_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut ran = 0;
    for (name, check) in TARGETS {
        let Ok(dir) = std::fs::read_dir(root.join(name)) else {
            continue;
        };
        for f in dir {
            let path = f.unwrap().path();
            check(&std::fs::read(&path).unwrap());
            ran += 1;
        }
    }
    assert!(ran > 0, "no regression inputs under {}", root.display());
}

/// Small inputs each target reads far enough to matter.
fn seeds(name: &str) -> Vec<Vec<u8>> {
    let text: Vec<Vec<u8>> = [
        "SELECT * FROM ks.t WHERE tenant_id = ? AND k IN (1, 2)",
        "INSERT INTO t (tenant_id, v) VALUES ('a', now()) USING TTL 5",
        "BEGIN BATCH UPDATE t SET v = v + 1 WHERE k = 1; APPLY BATCH",
        "[limits]\nmax_frame_bytes = \"1MiB\"\n[route]\nphase = \"dual-write\"",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    match name {
        "lexer" | "classify" | "config" => text,
        "node" => text
            .into_iter()
            .map(|t| [&[0u8][..], &t].concat())
            .collect(),
        _ => (0u8..24)
            .map(|mode| {
                let mut v = vec![mode, 8];
                v.extend_from_slice(&[
                    0x84, 0, 0, 1, 8, 0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1,
                ]);
                v.extend_from_slice(&[0, 2, b'k', b's', 0, 1, b't', 0, 1, b'v', 0, 9]);
                v
            })
            .collect(),
    }
}

#[test]
fn mutated_seeds_pass_every_check() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for (name, check) in TARGETS {
        for seed in seeds(name) {
            for _ in 0..300 {
                let mut input = seed.clone();
                for _ in 0..rng.gen_range(1..6) {
                    let at = rng.gen_range(0..input.len().max(1));
                    match rng.gen_range(0..4) {
                        0 if !input.is_empty() => input[at] = rng.gen(),
                        1 => input.insert(at.min(input.len()), rng.gen()),
                        2 if input.len() > 1 => {
                            input.remove(at);
                        }
                        _ => {
                            let b = [0x00, 0x7f, 0xff, 0x80][rng.gen_range(0..4)];
                            input.insert(at.min(input.len()), b);
                        }
                    }
                }
                check(&input);
            }
        }
    }
}
