//! Fuzz the sealed-file reader with arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zg_sealing::{Address, SealingKey, Unsealer};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, sealed)) = data.split_first() else {
        return;
    };
    let key = SealingKey::from_bytes([9; 32]);
    let chunk = [16usize, 64, 1024, zg_sealing::CHUNK_SIZE][usize::from(sel % 4)];
    let un = Unsealer::new(&key, Address::repeat_byte(0x17))
        .chunk_size(chunk)
        .expect("valid chunk size");
    if let Err(e) = un.unseal_bytes(sealed) {
        let _ = e.to_string();
    }
});
