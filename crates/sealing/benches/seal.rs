//! Seal and unseal throughput, file to file, at 0G's 64 MiB chunk size (256 MiB file under the temp dir).
//!
//! `cargo bench -p zg-sealing --bench seal -- --warm-up-time 1 --measurement-time 3`
//! (`ZG_BENCH_DIR=/dev/shm` to leave the disk out: fsync on tmpfs is free).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zg_sealing::{Sealer, SealingKey, Unsealer, k256::ecdsa::SigningKey, signer_address};

fn bench(c: &mut Criterion) {
    let len = 256usize << 20;
    // ZG_BENCH_DIR=/dev/shm measures the CPU side; the default temp dir includes the disk (fsync).
    let base = std::env::var_os("ZG_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = base.join(format!("zg-sealing-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (plain, sealed, out) = (dir.join("plain"), dir.join("sealed"), dir.join("out"));
    std::fs::write(&plain, (0..len).map(|i| (i >> 7) as u8).collect::<Vec<u8>>()).unwrap();
    let key = SealingKey::generate().unwrap();
    let tee = SigningKey::from_slice(&[7u8; 32]).unwrap();
    let signer = signer_address(tee.verifying_key());

    let mut g = c.benchmark_group("sealed file 256 MiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("seal", |b| {
        b.iter(|| Sealer::new(&key).seal_file(&tee, &plain, &sealed).unwrap())
    });
    Sealer::new(&key).seal_file(&tee, &plain, &sealed).unwrap();
    g.bench_function("unseal", |b| {
        b.iter(|| Unsealer::new(&key, signer).unseal_file(&sealed, &out).unwrap())
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);

    let buf = vec![0x5au8; 64 << 20];
    let sealed_buf = Sealer::new(&key).seal_bytes(&tee, &buf).unwrap();
    let mut g = c.benchmark_group("in memory 64 MiB");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("seal", |b| {
        b.iter(|| Sealer::new(&key).seal_bytes(&tee, &buf).unwrap())
    });
    g.bench_function("unseal", |b| {
        b.iter(|| Unsealer::new(&key, signer).unseal_bytes(&sealed_buf).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
