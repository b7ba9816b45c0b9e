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
///
/// On Unix the file is readable by its owner only (mode 0600) from the moment it appears under its name: it is
/// written in a private (0700) scratch directory inside `dir`, restricted, then linked into place. A `dir`
/// created here is 0700 too.
pub fn save_keystore(signer: &PrivateKeySigner, dir: &Path, name: &str, password: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.exists() {
        return Err(Error::Keystore {
            path,
            reason: "already exists: choose another --name or remove it first".into(),
        });
    }
    create_private_dir(dir, true).map_err(|e| Error::Keystore {
        path: dir.to_owned(),
        reason: format!("cannot create directory: {e}"),
    })?;
    let scratch = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    create_private_dir(&scratch, false).map_err(|e| Error::Keystore {
        path: scratch.clone(),
        reason: format!("cannot create a scratch directory: {e}"),
    })?;
    let result = write_into(signer, &scratch, name, password, &path);
    // Best effort: the scratch file is encrypted and 0600; a leftover is harmless, but tidy up.
    let _ = std::fs::remove_dir_all(&scratch);
    result.map(|()| path)
}

fn write_into(
    signer: &PrivateKeySigner,
    scratch: &Path,
    name: &str,
    password: &str,
    path: &Path,
) -> Result<()> {
    let key = signer.to_bytes();
    let mut rng = rand::thread_rng();
    PrivateKeySigner::encrypt_keystore(scratch, &mut rng, key.as_slice(), password, Some(name)).map_err(
        |e| Error::Keystore {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    )?;
    let tmp = scratch.join(name);
    restrict(&tmp).map_err(|e| Error::Keystore {
        path: path.to_owned(),
        reason: format!("cannot make it private (chmod 600): {e}"),
    })?;
    // A hard link fails if `path` appeared in the meantime, so an existing keystore is never replaced.
    // Filesystems without hard links get a rename after a last existence check.
    let linked = match std::fs::hard_link(&tmp, path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists && !path.exists() => {
            std::fs::rename(&tmp, path)
        }
        other => other,
    };
    linked.map_err(|e| Error::Keystore {
        path: path.to_owned(),
        reason: if e.kind() == std::io::ErrorKind::AlreadyExists {
            "already exists: choose another --name or remove it first".into()
        } else {
            format!("cannot write: {e}")
        },
    })
}

#[cfg(unix)]
fn create_private_dir(dir: &Path, recursive: bool) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if recursive && dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(recursive)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path, recursive: bool) -> std::io::Result<()> {
    if recursive {
        std::fs::create_dir_all(dir)
    } else {
        std::fs::create_dir(dir)
    }
}

#[cfg(unix)]
fn restrict(file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict(_file: &Path) -> std::io::Result<()> {
    Ok(())
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

    /// Issue 9 (low): keystore files were written with the umask's permissions (often 0644).
    #[cfg(unix)]
    #[test]
    fn keystore_file_is_private_0600_in_a_new_0700_dir() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("zg-keys-mode-{}", std::process::id()));
        let dir = base.join("nested").join("keys");
        let signer = PrivateKeySigner::random();
        let path = save_keystore(&signer, &dir, "owner.json", "pw").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "keystore file mode");
        assert_eq!(mode(&dir), 0o700, "directory created for it");
        // Only the keystore is left in the directory (no scratch files), and it still opens.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["owner.json".to_owned()]);
        assert_eq!(load_keystore(&path, "pw").unwrap().address(), signer.address());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn bad_hex_key_is_not_echoed() {
        let err = signer_from_hex("0xdeadbeef-secret").unwrap_err().to_string();
        assert!(!err.contains("secret") && !err.contains("deadbeef"), "{err}");
    }
}
