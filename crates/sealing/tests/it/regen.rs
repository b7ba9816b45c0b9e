//! Regenerates the committed sealed fixture (run by hand, see testdata/README.md); `official.rs` checks it
//! with the official SDK on every run.

use super::{data, tee_key};
use zg_sealing::{Sealer, SealingKey};

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
}
