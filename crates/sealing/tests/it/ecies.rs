//! eciesjs compatibility vectors and key wrapping.

use k256::SecretKey;
use serde_json::Value;
use zg_sealing::{EncryptedSecret, Error, SealingKey, ecies_decrypt, ecies_encrypt};

fn vector() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/eciesjs_vector.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn receiver(v: &Value) -> SecretKey {
    SecretKey::from_slice(&hex::decode(v["receiver_sk"].as_str().unwrap()).unwrap()).unwrap()
}

#[test]
fn decrypts_eciesjs_payloads() {
    let v = vector();
    let sk = receiver(&v);
    let pk_hex = hex::encode(
        k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&sk.public_key(), false).as_bytes(),
    );
    assert_eq!(pk_hex, v["receiver_pk_uncompressed"].as_str().unwrap());
    for case in v["vectors"].as_array().unwrap() {
        let payload = hex::decode(case["payload"].as_str().unwrap()).unwrap();
        let plain = ecies_decrypt(&sk, &payload).unwrap();
        assert_eq!(
            hex::encode(plain),
            case["plaintext"].as_str().unwrap(),
            "{}",
            case["name"]
        );
    }
}

#[test]
fn eciesjs_wrapped_aes_key_unwraps_to_a_sealing_key() {
    let v = vector();
    let sk = receiver(&v);
    let case = &v["vectors"][0];
    let payload = hex::decode(case["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload.len(), 129, "0G encryptedSecret size");
    let key = EncryptedSecret::from_bytes(payload).unwrap_with(&sk).unwrap();
    // The key inside is the vector's plaintext: sealing with it equals sealing with that hex.
    let same = SealingKey::from_hex(case["plaintext"].as_str().unwrap()).unwrap();
    let tee = super::tee_key();
    let a = zg_sealing::Sealer::new(&key)
        .iv([1; 12])
        .seal_bytes(&tee, b"x")
        .unwrap();
    let b = zg_sealing::Sealer::new(&same)
        .iv([1; 12])
        .seal_bytes(&tee, b"x")
        .unwrap();
    assert_eq!(a[65..], b[65..], "same key, same IV: same ciphertext and tags");
}

#[test]
fn round_trip_and_wrong_key_and_tampering() {
    let mut rng = rand::rngs::OsRng;
    let sk = SecretKey::random(&mut rng);
    let other = SecretKey::random(&mut rng);
    let payload = ecies_encrypt(&sk.public_key(), b"hello", &mut rng).unwrap();
    assert_eq!(payload.len(), 65 + 16 + 16 + 5);
    assert_eq!(payload[0], 0x04, "uncompressed ephemeral key");
    assert_eq!(ecies_decrypt(&sk, &payload).unwrap(), b"hello");
    assert!(matches!(
        ecies_decrypt(&other, &payload),
        Err(Error::EciesDecrypt)
    ));
    for i in [0usize, 70, 85, 100] {
        let mut bad = payload.clone();
        bad[i] ^= 1;
        let e = ecies_decrypt(&sk, &bad).unwrap_err();
        assert!(
            matches!(e, Error::EciesDecrypt | Error::InvalidPublicKey),
            "byte {i}: {e:?}"
        );
    }
    assert!(matches!(
        ecies_decrypt(&sk, &payload[..96]),
        Err(Error::EciesTooShort { len: 96 })
    ));

    let key = SealingKey::generate().unwrap();
    let wrapped = key.wrap_for(&sk.public_key()).unwrap();
    assert_eq!(wrapped.as_bytes().len(), 129);
    assert!(wrapped.unwrap_with(&sk).is_ok());
    assert!(matches!(wrapped.unwrap_with(&other), Err(Error::EciesDecrypt)));
    let not_a_key = EncryptedSecret::from_bytes(ecies_encrypt(&sk.public_key(), &[1; 31], &mut rng).unwrap());
    assert!(matches!(
        not_a_key.unwrap_with(&sk),
        Err(Error::SecretLength { len: 31 })
    ));
    assert!(
        !format!("{key:?}").contains(|c: char| c.is_ascii_digit()),
        "Debug must not show key bytes"
    );
}
