//! Regenerates the fixtures that the official JS tools then check (run by hand, see testdata/README.md).

use super::{data, tee_key};
use zg_sealing::{Sealer, SealingKey, ecies_encrypt};

#[test]
#[ignore = "writes testdata/; run by hand: cargo test -p zg-sealing --test it regen -- --ignored"]
fn regenerate_fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");
    let sealed = Sealer::new(&SealingKey::from_bytes([9; 32]))
        .iv([
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
        ])
        .seal_bytes(&tee_key(), &data(70_000))
        .unwrap();
    std::fs::write(format!("{dir}/sealed_fixture.bin"), sealed).unwrap();
    std::fs::write(format!("{dir}/sealed_fixture.plain"), data(70_000)).unwrap();

    // Optional two-chunk file (64 MiB + 1000 B, IV …00ff so the carry crosses a byte) for the same SDK check;
    // too big to commit.
    if let Ok(big) = std::env::var("ZG_BIG_FIXTURE_DIR") {
        let sealed = Sealer::new(&SealingKey::from_bytes([9; 32]))
            .iv([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff])
            .seal_bytes(&tee_key(), &data(64 * 1024 * 1024 + 1000))
            .unwrap();
        std::fs::write(format!("{big}/big.sealed"), sealed).unwrap();
        std::fs::write(format!("{big}/big.plain"), data(64 * 1024 * 1024 + 1000)).unwrap();
    }

    let sk_hex = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    let sk = k256::SecretKey::from_slice(&hex::decode(sk_hex).unwrap()).unwrap();
    let plaintext = [0xa5u8; 32];
    let payload = ecies_encrypt(&sk.public_key(), &plaintext, &mut rand::rngs::OsRng).unwrap();
    let doc = serde_json::json!({
        "generator": "zg-sealing ecies_encrypt (tests/it/regen.rs); opened by eciesjs 0.4.18 decrypt",
        "receiver_sk": sk_hex,
        "plaintext": hex::encode(plaintext),
        "payload": hex::encode(payload),
    });
    std::fs::write(
        format!("{dir}/zg_sealing_vector.json"),
        serde_json::to_string_pretty(&doc).unwrap() + "\n",
    )
    .unwrap();
}
