//! Receipt verification throughput: what the client spends per answer on checking it (ed25519 verify +
//! two sha256 over the request and response). Run:
//! `cargo bench -p zg-client --bench receipts -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use zg_billing::{Receipt, ReceiptSigner, Usage, body_hash};
use zg_client::{ReceiptJson, UsageJson, verify_receipt};

fn receipt_for(signer: &ReceiptSigner, request: &[u8], response: &[u8]) -> ReceiptJson {
    let usage = Usage {
        prompt_tokens: 40,
        completion_tokens: 200,
    };
    let s = signer.sign(Receipt {
        request_hash: body_hash(request),
        response_hash: body_hash(response),
        model: "zg-demo-ngram".into(),
        usage,
        fee: alloy_primitives::U256::from(440_000_000_000u64),
        nonce: alloy_primitives::U256::from(7),
    });
    ReceiptJson {
        key: "k".into(),
        request_hash: s.receipt.request_hash,
        response_hash: s.receipt.response_hash,
        model: s.receipt.model.clone(),
        usage: UsageJson {
            prompt_tokens: 40,
            completion_tokens: 200,
        },
        billed: true,
        fee: s.receipt.fee.to_string(),
        nonce: "7".into(),
        signature: format!("0x{}", hex::encode(s.signature)),
        response_key: format!("0x{}", hex::encode(signer.verifying_key().to_bytes())),
    }
}

fn bench(c: &mut Criterion) {
    let signer = ReceiptSigner::from_seed(&[7; 32]);
    let key = signer.verifying_key().to_bytes();
    let request = vec![b'x'; 1024];
    for (name, len) in [("1KiB", 1024usize), ("64KiB", 64 * 1024)] {
        let response = vec![b'y'; len];
        let r = receipt_for(&signer, &request, &response);
        let mut g = c.benchmark_group("verify_receipt");
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter(|| verify_receipt(black_box(&r), &key, black_box(&request), black_box(&response)).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
