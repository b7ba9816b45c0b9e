//! Loading the signing key: from an encrypted keystore (Web3 Secret Storage, scrypt) or a raw hex key.
//! The key itself never appears in an error message or a log.

use crate::{Error, Result};
use alloy::signers::local::PrivateKeySigner;
use std::path::{Path, PathBuf};

/// Parses a hex private key (64 hex digits, optional `0x`). The error never echoes the input.
pub fn signer_from_hex(key: &str) -> Result<PrivateKeySigner> {
    key.trim()
        .parse::<PrivateKeySigner>()
        .map_err(|_| Error::InvalidPrivateKey)
}

/// Decrypts a keystore file with its password.
pub fn load_keystore(path: &Path, password: &str) -> Result<PrivateKeySigner> {
    if !path.is_file() {
        return Err(Error::Keystore {
            path: path.to_owned(),
            reason: "no such file (create one with `zg key new` or `zg key import`)".into(),
        });
    }
    PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| {
        let text = e.to_string();
        if text.contains("Mac Mismatch") || text.contains("MacMismatch") {
            Error::WrongPassword {
                path: path.to_owned(),
            }
        } else {
            Error::Keystore {
                path: path.to_owned(),
                reason: format!("not a readable keystore: {text}"),
            }
        }
    })
}

/// Encrypts `signer` into a new keystore file `dir/name` (refuses to overwrite) and returns its path.
pub fn save_keystore(signer: &PrivateKeySigner, dir: &Path, name: &str, password: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.exists() {
        return Err(Error::Keystore {
            path,
            reason: "already exists: choose another --name or remove it first".into(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::Keystore {
        path: dir.to_owned(),
        reason: format!("cannot create directory: {e}"),
    })?;
    let key = signer.to_bytes();
    let mut rng = rand::thread_rng();
    PrivateKeySigner::encrypt_keystore(dir, &mut rng, key.as_slice(), password, Some(name)).map_err(|e| {
        Error::Keystore {
            path: path.clone(),
            reason: e.to_string(),
        }
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystore_round_trip_and_wrong_password() {
        let dir = std::env::temp_dir().join(format!("zg-keys-{}", std::process::id()));
        let signer = PrivateKeySigner::random();
        let path = save_keystore(&signer, &dir, "k.json", "pw").unwrap();
        assert_eq!(load_keystore(&path, "pw").unwrap().address(), signer.address());
        assert!(matches!(
            load_keystore(&path, "nope"),
            Err(Error::WrongPassword { .. })
        ));
        assert!(matches!(
            save_keystore(&signer, &dir, "k.json", "pw"),
            Err(Error::Keystore { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_hex_key_is_not_echoed() {
        let err = signer_from_hex("0xdeadbeef-secret").unwrap_err().to_string();
        assert!(!err.contains("secret") && !err.contains("deadbeef"), "{err}");
    }
}
