//! The adapter as it travels: a PEFT adapter (`adapter_config.json` + `adapter_model.safetensors`, the layout HF
//! PEFT and zg-model both write) framed as one byte string, sealed with a fresh AES-256 key in 0G's sealed
//! format (its tag signature by the broker's TEE signer), the key ECIES-wrapped to the provider's TEE signer.
//! Only the attested provider TEE can open it, and only bytes the attested broker sealed open.

use std::path::Path;

use alloy_primitives::Address;
use k256::ecdsa::SigningKey;
use zg_sealing::{EncryptedSecret, Sealer, SealingKey, Unsealer};

use crate::error::{Error, Result};

/// PEFT's adapter config file name.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// PEFT's adapter weights file name.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// Default bound on a package (framed plaintext), 256 MiB: a rank-64 adapter of a 7B model is ~160 MiB.
pub const DEFAULT_MAX_PACKAGE_BYTES: u64 = 256 << 20;

const MAGIC: &[u8; 8] = b"ZGADPT01";
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A PEFT adapter's two files.
#[derive(Clone, PartialEq, Eq)]
pub struct AdapterPackage {
    /// `adapter_config.json`.
    pub config_json: Vec<u8>,
    /// `adapter_model.safetensors`.
    pub safetensors: Vec<u8>,
}

impl std::fmt::Debug for AdapterPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterPackage")
            .field("config_json", &self.config_json.len())
            .field("safetensors", &self.safetensors.len())
            .finish()
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

impl AdapterPackage {
    /// Reads the two files of a PEFT adapter directory (blocking).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let config = dir.join(CONFIG_FILE);
        let weights = dir.join(WEIGHTS_FILE);
        let config_json = std::fs::read(&config).map_err(io("read", &config))?;
        let safetensors = std::fs::read(&weights).map_err(io("read", &weights))?;
        let p = Self {
            config_json,
            safetensors,
        };
        p.check(DEFAULT_MAX_PACKAGE_BYTES)?;
        Ok(p)
    }

    /// Writes the two files into `dir` (created; blocking), each fsynced. The weights are a customer's
    /// plaintext: on Unix the directories created are `0700` and `dir` and the files `0600` (the owner only).
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        use std::io::Write as _;
        private_dir(dir)?;
        for (name, bytes) in [
            (CONFIG_FILE, &self.config_json),
            (WEIGHTS_FILE, &self.safetensors),
        ] {
            let path = dir.join(name);
            let mut f = private_file(&path)?;
            f.write_all(bytes).map_err(io("write", &path))?;
            f.sync_all().map_err(io("fsync", &path))?;
        }
        Ok(())
    }

    fn check(&self, max: u64) -> Result<()> {
        if self.config_json.len() as u64 > MAX_CONFIG_BYTES {
            return Err(Error::Package(format!(
                "{CONFIG_FILE} is {} bytes, more than 1 MiB",
                self.config_json.len()
            )));
        }
        serde_json::from_slice::<serde_json::Value>(&self.config_json)
            .ok()
            .filter(serde_json::Value::is_object)
            .ok_or_else(|| Error::Package(format!("{CONFIG_FILE} is not a JSON object")))?;
        let total = (self.config_json.len() as u64).saturating_add(self.safetensors.len() as u64);
        if total > max {
            return Err(Error::Package(format!(
                "{total} bytes, more than the limit of {max}"
            )));
        }
        Ok(())
    }

    /// The framed bytes: magic ‖ u64 config length ‖ config ‖ u64 weights length ‖ weights.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.config_json.len() + self.safetensors.len() + 24);
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&(self.config_json.len() as u64).to_be_bytes());
        v.extend_from_slice(&self.config_json);
        v.extend_from_slice(&(self.safetensors.len() as u64).to_be_bytes());
        v.extend_from_slice(&self.safetensors);
        v
    }

    /// Parses framed bytes, refusing anything malformed, trailing, or over `max` bytes.
    pub fn decode(bytes: &[u8], max: u64) -> Result<Self> {
        let bad = |why: &str| Error::Package(why.to_owned());
        if bytes.len() as u64 > max.saturating_add(24) {
            return Err(Error::Package(format!(
                "{} bytes, more than the limit of {max}",
                bytes.len()
            )));
        }
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("not an adapter package (bad magic)"))?;
        let (config_json, rest) = take_framed(rest).ok_or_else(|| bad("truncated config"))?;
        let (safetensors, rest) = take_framed(rest).ok_or_else(|| bad("truncated weights"))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes after the weights"));
        }
        let p = Self {
            config_json: config_json.to_vec(),
            safetensors: safetensors.to_vec(),
        };
        p.check(max)?;
        Ok(p)
    }

    /// Seals the package for `provider_key` (the provider TEE signer's public key, recovered from its
    /// challenge signature) with a fresh key, the tags signed by `broker_key` (the broker's TEE signer).
    pub fn seal_for(&self, broker_key: &SigningKey, provider_key: &k256::PublicKey) -> Result<SealedAdapter> {
        let key = SealingKey::generate()?;
        let sealed = Sealer::new(&key).seal_bytes(broker_key, &self.encode())?;
        let wrapped_key = key.wrap_for(provider_key)?.as_bytes().to_vec();
        Ok(SealedAdapter { sealed, wrapped_key })
    }
}

/// Creates `dir` and its missing parents (`0700` on Unix) and makes `dir` itself `0700` if it existed.
pub fn private_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        b.mode(0o700);
        b.create(dir).map_err(io("create", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io("chmod", dir))
    }
    #[cfg(not(unix))]
    b.create(dir).map_err(io("create", dir))
}

/// Creates (or truncates) `path` for writing, `0600` on Unix.
pub fn private_file(path: &Path) -> Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        o.mode(0o600);
        let f = o.open(path).map_err(io("create", path))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io("chmod", path))?;
        Ok(f)
    }
    #[cfg(not(unix))]
    o.open(path).map_err(io("create", path))
}

fn take_framed(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let len_bytes: [u8; 8] = b.get(..8)?.try_into().ok()?;
    let len = usize::try_from(u64::from_be_bytes(len_bytes)).ok()?;
    let rest = b.get(8..)?;
    Some((rest.get(..len)?, rest.get(len..)?))
}

/// A sealed package and its wrapped key.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedAdapter {
    /// The package in 0G's sealed format (tag signature by the broker's TEE signer).
    pub sealed: Vec<u8>,
    /// The AES-256 key, ECIES-wrapped to the provider's TEE signer (129 bytes).
    pub wrapped_key: Vec<u8>,
}

impl std::fmt::Debug for SealedAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedAdapter")
            .field("sealed", &self.sealed.len())
            .field("wrapped_key", &self.wrapped_key.len())
            .finish()
    }
}

impl SealedAdapter {
    /// Opens (in the provider's TEE): unwraps the key with `provider_secret`, checks the tag signature is
    /// `broker_signer`'s, decrypts and parses, refusing more than `max` bytes.
    pub fn open(
        &self,
        provider_secret: &k256::SecretKey,
        broker_signer: Address,
        max: u64,
    ) -> Result<AdapterPackage> {
        if self.sealed.len() as u64 > max.saturating_add(1 << 16) {
            return Err(Error::Package(format!(
                "sealed adapter is {} bytes, more than the limit of {max}",
                self.sealed.len()
            )));
        }
        let key = EncryptedSecret::from_bytes(self.wrapped_key.clone()).unwrap_with(provider_secret)?;
        let plain = Unsealer::new(&key, broker_signer).unseal_bytes(&self.sealed)?;
        AdapterPackage::decode(&plain, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sig::address_of;

    fn pkg() -> AdapterPackage {
        AdapterPackage {
            config_json: br#"{"r":8,"lora_alpha":16}"#.to_vec(),
            safetensors: vec![7u8; 4096],
        }
    }

    #[test]
    fn only_the_provider_opens_and_only_the_brokers_seal_opens() {
        let broker = SigningKey::from_slice(&[1; 32]).unwrap();
        let provider = k256::SecretKey::from_slice(&[2; 32]).unwrap();
        let sealed = pkg().seal_for(&broker, &provider.public_key()).unwrap();
        let broker_addr = address_of(broker.verifying_key());
        assert_eq!(sealed.open(&provider, broker_addr, 1 << 20).unwrap(), pkg());
        // Another provider key cannot unwrap; another expected broker refuses the tag signature.
        let eve = k256::SecretKey::from_slice(&[3; 32]).unwrap();
        assert!(sealed.open(&eve, broker_addr, 1 << 20).is_err());
        assert!(sealed.open(&provider, Address::repeat_byte(1), 1 << 20).is_err());
        // A flipped ciphertext byte fails authentication; a tight limit refuses before decrypting.
        let mut tampered = sealed.clone();
        let last = tampered.sealed.len() - 1;
        tampered.sealed[last] ^= 1;
        assert!(tampered.open(&provider, broker_addr, 1 << 20).is_err());
        assert!(matches!(
            sealed.open(&provider, broker_addr, 100),
            Err(Error::Package(_))
        ));
    }

    #[test]
    fn malformed_packages_are_refused_by_name() {
        let good = pkg().encode();
        assert_eq!(AdapterPackage::decode(&good, 1 << 20).unwrap(), pkg());
        assert!(AdapterPackage::decode(&good[..good.len() - 1], 1 << 20).is_err());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(AdapterPackage::decode(&trailing, 1 << 20).is_err());
        let mut huge_len = good.clone();
        huge_len[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(AdapterPackage::decode(&huge_len, 1 << 20).is_err());
        let not_json = AdapterPackage {
            config_json: b"nope".to_vec(),
            safetensors: vec![],
        };
        assert!(AdapterPackage::decode(&not_json.encode(), 1 << 20).is_err());
    }

    #[test]
    fn a_package_round_trips_through_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        pkg().write_dir(&dir.path().join("a")).unwrap();
        assert_eq!(AdapterPackage::from_dir(&dir.path().join("a")).unwrap(), pkg());
    }

    /// Red team: the plaintext weights on disk are readable by their owner only, even under a permissive umask.
    #[cfg(unix)]
    #[test]
    fn written_adapters_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let a = dir.path().join("x").join("a");
        pkg().write_dir(&a).unwrap();
        assert_eq!(mode(&dir.path().join("x")), 0o700);
        assert_eq!(mode(&a), 0o700);
        assert_eq!(mode(&a.join(CONFIG_FILE)), 0o600);
        assert_eq!(mode(&a.join(WEIGHTS_FILE)), 0o600);
        // An existing, world-readable directory and file are tightened on rewrite.
        std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(a.join(WEIGHTS_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        pkg().write_dir(&a).unwrap();
        assert_eq!(mode(&a), 0o700);
        assert_eq!(mode(&a.join(WEIGHTS_FILE)), 0o600);
    }
}
