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
    match ops[2] % 3 {
        0 => sealed[pos] ^= ops[3],
        1 => sealed.truncate(pos),
        _ => sealed.insert(pos, ops[3]),
    }
    let un = Unsealer::new(&key, signer).chunk_size(64).unwrap();
    match un.unseal_bytes(&sealed) {
        Ok(out) => assert_eq!(out, plain, "tampered file decrypted to other plaintext"),
        Err(e) => assert!(e.is_corrupt_input(), "unexpected error kind: {e:?}"),
    }
});
