//! The official JavaScript tools, run live: the 0G SDK 0.9.0's own `eciesDecrypt` + `aesGCMDecryptToFile` (what
//! `broker.fineTuning.decryptModel` calls) open files sealed here, eciesjs 0.4.18 wraps keys that open here, and
//! a file sealed in JavaScript with the SDK's AES-GCM adapter opens here. Node or a package missing fails the
//! test (`zg_test_utils::node`); nothing is skipped.

use std::path::Path;
use std::time::Duration;

use k256::SecretKey;
use k256::elliptic_curve::sec1::ToEncodedPoint as _;
use serde_json::Value;
use zg_sealing::{EncryptedSecret, Error, Sealer, SealingKey, Unsealer, ecies_decrypt, signer_address};
use zg_test_utils::node::{package_dir, result_line, run_js};

use super::{data, tee_key};

/// Runs `js/official.cjs <args>` and returns its RESULT document.
fn js(args: &[&str]) -> Value {
    package_dir("@0gfoundation/0g-compute-ts-sdk", Some("0.9.0"));
    package_dir("eciesjs", Some("0.4.18"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/js/official.cjs");
    let run = run_js(&script, args, Duration::from_secs(120));
    assert!(run.ok(), "node failed: {run:?}");
    serde_json::from_str(result_line(&run)).unwrap()
}

fn uncompressed_hex(sk: &SecretKey) -> String {
    hex::encode(sk.public_key().to_encoded_point(false).as_bytes())
}

#[test]
fn official_sdk_decrypts_a_model_sealed_here_at_the_real_chunk_size() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, sealed, out) = (
        dir.path().join("model.bin"),
        dir.path().join("model.sealed"),
        dir.path().join("model.out"),
    );
    // Two chunks of the real 64 MiB size (one full, one short), IV …00ff so the per-chunk increment carries.
    let model = data(64 * 1024 * 1024 + 1000);
    std::fs::write(&plain, &model).unwrap();
    let key_bytes: [u8; 32] = rand::random();
    let key = SealingKey::from_bytes(key_bytes);
    let tee = tee_key();
    let summary = Sealer::new(&key)
        .iv([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff])
        .seal_file(&tee, &plain, &sealed)
        .unwrap();
    assert_eq!(summary.chunks, 2);
    let customer = SecretKey::random(&mut rand::rngs::OsRng);
    let secret = hex::encode(key.wrap_for(&customer.public_key()).unwrap().as_bytes());
    let signer = summary.signer.to_string();
    let (sealed_s, out_s) = (sealed.to_str().unwrap(), out.to_str().unwrap());
    let sk = hex::encode(customer.to_bytes());

    let r = js(&["open", &sk, &secret, sealed_s, out_s, &signer]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        r["key"],
        hex::encode(key_bytes),
        "the SDK unwrapped our encryptedSecret"
    );
    assert!(
        std::fs::read(&out).unwrap() == model,
        "the SDK's plaintext is the model"
    );

    // The SDK refuses what it must: another customer's key, another TEE signer, a flipped ciphertext byte.
    let other = hex::encode(SecretKey::random(&mut rand::rngs::OsRng).to_bytes());
    let r = js(&["open", &other, &secret, sealed_s, out_s, &signer]);
    assert_eq!(r["ok"], false, "{r}");
    let r = js(&[
        "open",
        &sk,
        &secret,
        sealed_s,
        out_s,
        "0x1111111111111111111111111111111111111111",
    ]);
    assert_eq!(r["ok"], false);
    assert!(
        r["error"].as_str().unwrap().contains("Invalid tag signature"),
        "{r}"
    );
    let mut bad = std::fs::read(&sealed).unwrap();
    let i = bad.len() - 100; // in the second chunk's ciphertext
    bad[i] ^= 1;
    std::fs::write(&sealed, &bad).unwrap();
    let r = js(&["open", &sk, &secret, sealed_s, out_s, &signer]);
    assert_eq!(r["ok"], false, "a flipped byte must not decrypt: {r}");
}

#[test]
fn committed_fixture_is_still_what_we_seal_and_the_official_sdk_opens_it() {
    // testdata/sealed_fixture.bin: 70 000 bytes of `data()`, key 0x09…09, TEE key 0x42…42, IV ff…fe. Sealing
    // is deterministic (fixed IV, RFC 6979 signature), so our sealer must still produce these exact bytes …
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sealed_fixture.bin");
    let committed = std::fs::read(&path).unwrap();
    let key = SealingKey::from_bytes([9; 32]);
    let mut iv = [0xff; 12];
    iv[11] = 0xfe;
    let again = Sealer::new(&key)
        .iv(iv)
        .seal_bytes(&tee_key(), &data(70_000))
        .unwrap();
    assert!(again == committed, "sealing drifted from the committed fixture");
    // … and the official SDK opens them now.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let signer = signer_address(tee_key().verifying_key()).to_string();
    let r = js(&[
        "open-raw",
        &hex::encode([9u8; 32]),
        path.to_str().unwrap(),
        out.to_str().unwrap(),
        &signer,
    ]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(std::fs::read(&out).unwrap(), data(70_000));
}

#[test]
fn eciesjs_wraps_keys_that_open_here() {
    let customer = SecretKey::random(&mut rand::rngs::OsRng);
    let key_bytes: [u8; 32] = rand::random();
    let r = js(&["wrap", &uncompressed_hex(&customer), &hex::encode(key_bytes)]);
    let payload = hex::decode(r["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload.len(), 129, "0G's encryptedSecret size");
    let opened = EncryptedSecret::from_bytes(payload.clone())
        .unwrap_with(&customer)
        .unwrap();
    // The unwrapped key seals exactly as the key itself (same IV: same ciphertext and tags).
    let same = SealingKey::from_bytes(key_bytes);
    let a = Sealer::new(&opened)
        .iv([1; 12])
        .seal_bytes(&tee_key(), b"x")
        .unwrap();
    let b = Sealer::new(&same)
        .iv([1; 12])
        .seal_bytes(&tee_key(), b"x")
        .unwrap();
    assert_eq!(a[65..], b[65..]);
    // Another key cannot open it; arbitrary payloads round-trip.
    let other = SecretKey::random(&mut rand::rngs::OsRng);
    assert!(matches!(
        EncryptedSecret::from_bytes(payload).unwrap_with(&other),
        Err(Error::EciesDecrypt)
    ));
    let text = b"zg-sealing <-> eciesjs, live";
    let r = js(&["wrap", &uncompressed_hex(&customer), &hex::encode(text)]);
    let payload = hex::decode(r["payload"].as_str().unwrap()).unwrap();
    assert_eq!(ecies_decrypt(&customer, &payload).unwrap(), text);
}

#[test]
fn a_file_sealed_with_the_sdks_aes_gcm_opens_here() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, sealed) = (dir.path().join("plain"), dir.path().join("sealed"));
    const CHUNK: usize = 1024;
    let body = data(3 * CHUNK + 500);
    std::fs::write(&plain, &body).unwrap();
    let key_bytes: [u8; 32] = rand::random();
    let tee_sk = [0x42u8; 32];
    let r = js(&[
        "seal",
        &hex::encode(key_bytes),
        "0000000000000000000000fe",
        &hex::encode(tee_sk),
        plain.to_str().unwrap(),
        sealed.to_str().unwrap(),
        &CHUNK.to_string(),
    ]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["chunks"], 4);
    let signer = signer_address(tee_key().verifying_key());
    assert_eq!(r["signer"], signer.to_checksum(None));
    let bytes = std::fs::read(&sealed).unwrap();
    let key = SealingKey::from_bytes(key_bytes);
    let un = Unsealer::new(&key, signer).chunk_size(CHUNK).unwrap();
    assert_eq!(un.unseal_bytes(&bytes).unwrap(), body);
    // What we would seal with the same key, IV and signer is byte-identical.
    let ours = Sealer::new(&key)
        .chunk_size(CHUNK)
        .unwrap()
        .iv([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe])
        .seal_bytes(&tee_key(), &body)
        .unwrap();
    assert!(
        ours == bytes,
        "our sealer and the JavaScript one write the same bytes"
    );
    assert!(matches!(
        Unsealer::new(&key, zg_sealing::Address::ZERO)
            .chunk_size(CHUNK)
            .unwrap()
            .unseal_bytes(&bytes),
        Err(Error::WrongSigner { .. })
    ));
}
