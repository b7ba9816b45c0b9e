//! Seal fuzz-chosen plaintext, tamper with it as the fuzzer says, and check the reader's verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zg_sealing::{Sealer, SealingKey, Unsealer, k256::ecdsa::SigningKey, signer_address};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (ops, plain) = data.split_at(4.min(data.len()));
    let plain = &plain[..plain.len().min(4096)];
    let key = SealingKey::from_bytes([9; 32]);
    let tee = SigningKey::from_slice(&[0x42; 32]).expect("valid key");
    let signer = signer_address(tee.verifying_key());
    let mut sealed = Sealer::new(&key)
        .chunk_size(64)
        .unwrap()
        .iv([0xff; 12])
        .seal_bytes(&tee, plain)
        .unwrap();
    let pos = usize::from(u16::from_le_bytes([ops[0], ops[1]])) % sealed.len();
    // Whole chunks (64 bytes of ciphertext + 16 of tag after the 77-byte header) for the structural edits.
    const HEADER: usize = 77;
    const CHUNK: usize = 64 + 16;
    let chunks = sealed.len().saturating_sub(HEADER).div_ceil(CHUNK);
    let span = |i: usize, len: usize| {
        let start = HEADER + (i % chunks.max(1)) * CHUNK;
        start..(start + CHUNK).min(len)
    };
    match ops[2] % 7 {
        0 => sealed[pos] ^= ops[3],
        1 => sealed.truncate(pos),
        2 => sealed.insert(pos, ops[3]),
        // Swap two chunks (reordering).
        3 if chunks >= 2 => {
            let (a, b) = (span(usize::from(ops[3]), sealed.len()), span(usize::from(ops[3]) + 1, sealed.len()));
            if a.len() == CHUNK && b.len() == CHUNK && a != b {
                let ca = sealed[a.clone()].to_vec();
                let cb = sealed[b.clone()].to_vec();
                sealed[a].copy_from_slice(&cb);
                sealed[b].copy_from_slice(&ca);
            }
        }
        // Duplicate a chunk (replay inside the file).
        4 if chunks >= 1 => {
            let a = span(usize::from(ops[3]), sealed.len());
            let c = sealed[a.clone()].to_vec();
            let at = a.end;
            sealed.splice(at..at, c);
        }
        // Drop a whole chunk.
        5 if chunks >= 1 => {
            sealed.drain(span(usize::from(ops[3]), sealed.len()));
        }
        // Append bytes (as a storage node padding the download would).
        _ => sealed.extend(std::iter::repeat_n(0u8, usize::from(ops[3] % 32) + 1)),
    }
    let un = Unsealer::new(&key, signer).chunk_size(64).unwrap();
    match un.unseal_bytes(&sealed) {
        Ok(out) => assert_eq!(out, plain, "tampered file decrypted to other plaintext"),
        Err(e) => assert!(e.is_corrupt_input(), "unexpected error kind: {e:?}"),
    }
});
