//! Truncation, flipped bytes, wrong signer, wrong key: typed errors, no plaintext left behind.

use super::{data, tee_key};
use zg_sealing::{Error, Sealer, SealingKey, Unsealer, signer_address};

const CHUNK: usize = 1024;

fn sealed() -> (SealingKey, Vec<u8>, zg_sealing::Address) {
    let key = SealingKey::from_bytes([3; 32]);
    let tee = tee_key();
    let s = Sealer::new(&key)
        .chunk_size(CHUNK)
        .unwrap()
        .seal_bytes(&tee, &data(3 * CHUNK + 100))
        .unwrap();
    (key, s, signer_address(tee.verifying_key()))
}

#[test]
fn every_flipped_byte_is_a_typed_error() {
    let (key, s, signer) = sealed();
    let un = Unsealer::new(&key, signer).chunk_size(CHUNK).unwrap();
    // Every byte of the header, and a sample through each chunk's ciphertext and tag.
    let positions: Vec<usize> = (0..77)
        .chain((77..s.len()).step_by(37))
        .chain(s.len() - 16..s.len())
        .collect();
    for i in positions {
        let mut bad = s.clone();
        bad[i] ^= 0x80;
        let e = un
            .unseal_bytes(&bad)
            .expect_err(&format!("byte {i} flipped must fail"));
        assert!(e.is_corrupt_input(), "byte {i}: {e:?}");
        let chunk = (i.saturating_sub(77)) / (CHUNK + 16);
        let ct_len = if chunk == 3 { 100 } else { CHUNK };
        if (77..s.len()).contains(&i) && (i - 77) % (CHUNK + 16) < ct_len {
            // Ciphertext byte: the signature still holds, the chunk's GCM tag does not.
            assert!(
                matches!(e, Error::ChunkAuth { index } if index == chunk as u64),
                "byte {i}: {e:?}"
            );
        }
    }
}

#[test]
fn truncation_is_a_typed_error_at_every_cut() {
    let (key, s, signer) = sealed();
    let un = Unsealer::new(&key, signer).chunk_size(CHUNK).unwrap();
    for cut in [
        0,
        1,
        64,
        76,
        77,
        78,
        92,
        93,
        500,
        77 + CHUNK + 16,
        77 + CHUNK + 17,
        s.len() - 1,
    ] {
        let e = un.unseal_bytes(&s[..cut]).expect_err(&format!("cut at {cut}"));
        assert!(e.is_corrupt_input(), "cut {cut}: {e:?}");
        if cut < 77 {
            assert!(matches!(e, Error::TruncatedHeader { len } if len == cut as u64));
        }
    }
    // A body that ends 5 bytes into a chunk cannot even hold its tag.
    assert!(matches!(
        un.unseal_bytes(&s[..77 + CHUNK + 16 + 5]),
        Err(Error::TruncatedChunk { len: 5 })
    ));
    // Appended garbage is an extra (unauthenticated) chunk.
    let mut longer = s.clone();
    longer.extend_from_slice(&[0u8; 40]);
    assert!(un.unseal_bytes(&longer).unwrap_err().is_corrupt_input());
}

#[test]
fn wrong_signer_and_wrong_key() {
    let (key, s, signer) = sealed();
    let other = zg_sealing::Address::repeat_byte(0x11);
    match Unsealer::new(&key, other)
        .chunk_size(CHUNK)
        .unwrap()
        .unseal_bytes(&s)
    {
        Err(Error::WrongSigner { expected, recovered }) => {
            assert_eq!(expected, other);
            assert_eq!(recovered, signer);
        }
        r => panic!("{r:?}"),
    }
    let wrong = SealingKey::from_bytes([4; 32]);
    assert!(matches!(
        Unsealer::new(&wrong, signer)
            .chunk_size(CHUNK)
            .unwrap()
            .unseal_bytes(&s),
        Err(Error::ChunkAuth { index: 0 })
    ));
    let mut bad_v = s.clone();
    bad_v[64] = 5;
    assert!(matches!(
        Unsealer::new(&key, signer)
            .chunk_size(CHUNK)
            .unwrap()
            .unseal_bytes(&bad_v),
        Err(Error::MalformedSignature(_))
    ));
}

#[test]
fn failed_unseal_leaves_no_output_and_no_temp_file() {
    let (key, s, signer) = sealed();
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("model.sealed"), dir.path().join("model.bin"));
    let mut bad = s.clone();
    let last = bad.len() - 20; // inside the last chunk: earlier chunks decrypt fine first
    bad[last] ^= 1;
    std::fs::write(&input, &bad).unwrap();
    let e = Unsealer::new(&key, signer)
        .chunk_size(CHUNK)
        .unwrap()
        .unseal_file(&input, &output)
        .unwrap_err();
    assert!(matches!(e, Error::ChunkAuth { index: 3 }), "{e:?}");
    assert!(!output.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the input remains"
    );
    // Wrong signer: fails before decrypting anything.
    std::fs::write(&input, &s).unwrap();
    let e = Unsealer::new(&key, zg_sealing::Address::ZERO)
        .chunk_size(CHUNK)
        .unwrap()
        .unseal_file(&input, &output)
        .unwrap_err();
    assert!(matches!(e, Error::WrongSigner { .. }));
    assert!(!output.exists());
    // An existing output is left untouched on failure.
    std::fs::write(&output, b"previous").unwrap();
    std::fs::write(&input, &bad).unwrap();
    assert!(
        Unsealer::new(&key, signer)
            .chunk_size(CHUNK)
            .unwrap()
            .unseal_file(&input, &output)
            .is_err()
    );
    assert_eq!(std::fs::read(&output).unwrap(), b"previous");
}

#[test]
fn bad_chunk_sizes_are_rejected() {
    let key = SealingKey::from_bytes([3; 32]);
    assert!(matches!(
        Sealer::new(&key).chunk_size(0),
        Err(Error::ChunkSize { size: 0 })
    ));
    assert!(matches!(
        Unsealer::new(&key, zg_sealing::Address::ZERO).chunk_size(usize::MAX),
        Err(Error::ChunkSize { .. })
    ));
}
