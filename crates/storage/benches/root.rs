//! Root throughput: raw keccak (the ceiling), then the file root on 1 and 2 threads.
//!
//! `cargo bench -p zg-storage --bench root -- --warm-up-time 1 --measurement-time 3`
//! (add `--no-default-features` to measure alloy-primitives' default `sha3` keccak instead of keccak-asm).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use zg_storage::{MerkleBuilder, segment_root};

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn keccak(c: &mut Criterion) {
    let buf = data(1 << 20);
    let mut g = c.benchmark_group("keccak");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("bulk 1 MiB", |b| {
        b.iter(|| alloy_primitives::keccak256(black_box(&buf)))
    });
    g.bench_function("256-byte chunks, 1 MiB", |b| {
        b.iter(|| {
            for c in buf.chunks(256) {
                black_box(alloy_primitives::keccak256(c));
            }
        })
    });
    g.bench_function("segment root, 1 MiB", |b| {
        b.iter(|| {
            for s in buf.chunks(256 * 1024) {
                black_box(segment_root(s, 1024));
            }
        })
    });
    g.finish();
}

fn root(c: &mut Criterion) {
    let buf = data(64 << 20);
    let mut g = c.benchmark_group("root 64 MiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(buf.len() as u64));
    for threads in [1, 2] {
        g.bench_function(format!("{threads} thread(s)"), |b| {
            b.iter(|| {
                MerkleBuilder::new()
                    .threads(threads)
                    .hash_bytes(black_box(&buf))
                    .unwrap()
                    .root()
            })
        });
    }
    let path = std::env::temp_dir().join(format!("zg-storage-bench-{}.bin", std::process::id()));
    std::fs::write(&path, &buf).unwrap();
    for threads in [1, 2] {
        g.bench_function(format!("file, {threads} thread(s)"), |b| {
            b.iter(|| {
                MerkleBuilder::new()
                    .threads(threads)
                    .hash_file(&path)
                    .unwrap()
                    .root()
            })
        });
    }
    let _ = std::fs::remove_file(&path);
    g.finish();
}

criterion_group!(benches, keccak, root);
criterion_main!(benches);
