//! zg-sealing tour: a provider's TEE seals a fine-tuned model with a fresh key and wraps the key for the
//! customer; the customer unwraps it and decrypts, checking the TEE's tag signature first. Run with
//! `cargo run -p zg-examples --example seal_model`.
#![allow(clippy::print_stdout, reason = "an example program: stdout is its output")]

use zg_sealing::{Sealer, SealingKey, Unsealer, k256, signer_address};

fn main() -> Result<(), zg_sealing::Error> {
    let dir = std::env::temp_dir().join(format!("zg-sealing-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| zg_sealing::Error::Io {
        path: dir.clone(),
        source: e,
    })?;
    let (model, sealed, decrypted) = (
        dir.join("model.bin"),
        dir.join("model.sealed"),
        dir.join("model.out"),
    );
    std::fs::write(&model, b"pretend these are LoRA weights").map_err(|e| zg_sealing::Error::Io {
        path: model.clone(),
        source: e,
    })?;

    // Inside the provider's TEE: its secp256k1 signer (bound in the attestation) and the customer's key.
    let tee = k256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let customer = k256::SecretKey::random(&mut rand::rngs::OsRng);
    let key = SealingKey::generate()?;
    let summary = Sealer::new(&key).seal_file(&tee, &model, &sealed)?;
    let encrypted_secret = key.wrap_for(&customer.public_key())?; // recorded on chain, revealed at settlement
    println!(
        "sealed {} -> {} bytes in {} chunk(s), tags signed by {}",
        summary.plaintext_len, summary.sealed_len, summary.chunks, summary.signer
    );
    println!("encryptedSecret: 0x{}", hex::encode(encrypted_secret.as_bytes()));

    // The customer: unwrap with their key, then verify the TEE signature and decrypt.
    let key = encrypted_secret.unwrap_with(&customer)?;
    let tee_signer = signer_address(tee.verifying_key()); // in practice: the service's teeSignerAddress
    let done = Unsealer::new(&key, tee_signer).unseal_file(&sealed, &decrypted)?;
    println!(
        "decrypted {} bytes, signature by {} verified",
        done.plaintext_len, done.signer
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
