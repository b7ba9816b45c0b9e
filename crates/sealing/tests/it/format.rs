//! Sealed-file round trips and the IV rule, checked chunk by chunk with plain AES-GCM.

use super::{data, tee_key};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use alloy_primitives::keccak256;
use zg_sealing::{Sealer, SealingKey, Unsealer, increment_iv, recover_tag_signer, signer_address};

const KEY: [u8; 32] = [9; 32];

/// Decrypts a sealed buffer with nothing but the documented layout and plain AES-GCM: chunk `i` under
/// `IV + i` (big-endian), signature over keccak256 of all tags. An independent reading of the format.
fn open_by_spec(sealed: &[u8], chunk: usize) -> (Vec<u8>, alloy_primitives::Address) {
    let cipher = Aes256Gcm::new((&KEY).into());
    let sig: [u8; 65] = sealed[..65].try_into().unwrap();
    let mut iv: [u8; 12] = sealed[65..77].try_into().unwrap();
    let mut out = Vec::new();
    let mut tags = Vec::new();
    for piece in sealed[77..].chunks(chunk + 16) {
        let (ct, tag) = piece.split_at(piece.len() - 16);
        let mut buf = ct.to_vec();
        cipher
            .decrypt_in_place_detached(Nonce::from_slice(&iv), &[], &mut buf, Tag::from_slice(tag))
            .unwrap();
        out.extend(buf);
        tags.extend_from_slice(tag);
        let n = u128::from_be_bytes([[0u8; 4].as_slice(), &iv].concat().try_into().unwrap()) + 1;
        iv.copy_from_slice(&n.to_be_bytes()[4..]);
    }
    (out, recover_tag_signer(&keccak256(&tags), &sig).unwrap())
}

#[test]
fn iv_is_a_wrapping_big_endian_counter() {
    let mut iv = [0u8; 12];
    increment_iv(&mut iv);
    assert_eq!(iv, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let mut iv = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff];
    increment_iv(&mut iv);
    assert_eq!(iv, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    let mut iv = [0xff; 12];
    increment_iv(&mut iv);
    assert_eq!(iv, [0; 12]);
}

#[test]
fn multi_chunk_round_trip_matches_the_spec() {
    let key = SealingKey::from_bytes(KEY);
    let tee = tee_key();
    let signer = signer_address(tee.verifying_key());
    for (len, chunk) in [
        (0usize, 64),
        (1, 64),
        (64, 64),
        (65, 64),
        (1000, 64),
        (5000, 1024),
    ] {
        // An IV near a byte boundary so carries happen across chunks.
        let sealed = Sealer::new(&key)
            .chunk_size(chunk)
            .unwrap()
            .iv([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe])
            .seal_bytes(&tee, &data(len))
            .unwrap();
        let chunks = len.div_ceil(chunk);
        assert_eq!(sealed.len(), 77 + len + 16 * chunks, "len {len}");
        let (plain, who) = open_by_spec(&sealed, chunk);
        assert_eq!(plain, data(len));
        assert_eq!(who, signer);
        assert_eq!(sealed[64], 27 + (sealed[64] - 27) % 2, "v is 27 or 28");
        let back = Unsealer::new(&key, signer)
            .chunk_size(chunk)
            .unwrap()
            .unseal_bytes(&sealed)
            .unwrap();
        assert_eq!(back, data(len), "len {len}");
    }
}

#[test]
fn file_round_trip_at_the_real_64_mib_chunk_size() {
    let dir = tempfile::tempdir().unwrap();
    let (input, sealed, output) = (
        dir.path().join("in"),
        dir.path().join("sealed"),
        dir.path().join("out"),
    );
    let plain = data(64 * 1024 * 1024 + 1000); // two chunks: one full, one short
    std::fs::write(&input, &plain).unwrap();
    let key = SealingKey::generate().unwrap();
    let tee = tee_key();
    let s = Sealer::new(&key).seal_file(&tee, &input, &sealed).unwrap();
    assert_eq!(s.chunks, 2);
    assert_eq!(s.sealed_len, std::fs::metadata(&sealed).unwrap().len());
    let u = Unsealer::new(&key, s.signer)
        .unseal_file(&sealed, &output)
        .unwrap();
    assert_eq!(u.plaintext_len, plain.len() as u64);
    assert!(std::fs::read(&output).unwrap() == plain);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty());
}
