//! Delivery: package the output directory (deterministic ustar, streamed), seal it with a fresh key
//! (zg-sealing, one 64 MiB chunk in memory at a time), hash the sealed file once for both roots (keccak256 →
//! `modelRootHash` on chain, 0G Merkle root → storage), store it, and wrap the key for the customer. The
//! plaintext never touches the disk; the raw key never leaves this function.

use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};

use alloy_primitives::B256;
use k256::ecdsa::SigningKey;
use zg_sealing::{Sealer, SealingKey};
use zg_storage::{LocalStore, MerkleBuilder};

use crate::error::{Error, Result};
use crate::package::TarStream;

/// A sealed, stored deliverable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// keccak256 of the sealed file: what `addDeliverable` records, and what the official CLI checks after
    /// a TEE download.
    pub model_root_hash: B256,
    /// 0G Storage root of the sealed file.
    pub storage_root: B256,
    /// Sealed bytes.
    pub sealed_len: u64,
    /// Plaintext (archive) bytes.
    pub plaintext_len: u64,
    /// The TEE's copy.
    pub sealed_path: PathBuf,
    /// The AES key, ECIES-wrapped for the customer (129 bytes).
    pub encrypted_secret: Vec<u8>,
}

struct Tee<R> {
    inner: R,
    hasher: alloy_primitives::Keccak256,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// keccak256 and the 0G Merkle root of a file, in one read.
pub fn hash_file(path: &Path) -> Result<(B256, B256, u64)> {
    let f = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
    let size = f.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    let mut tee = Tee {
        inner: std::io::BufReader::with_capacity(4 << 20, f),
        hasher: alloy_primitives::Keccak256::new(),
    };
    let tree = MerkleBuilder::new().hash_reader(&mut tee, size)?;
    Ok((tee.hasher.finalize(), tree.root(), size))
}

/// Packages `output_dir`, seals it into `sealed_path` with a fresh key signed by `tee`, hashes it, and wraps
/// the key for `customer_pubkey` (uncompressed SEC1). Blocking: run it on a blocking thread.
pub fn seal_output(
    output_dir: &Path,
    tee: &SigningKey,
    customer_pubkey: &[u8],
    sealed_path: &Path,
) -> Result<Artifact> {
    let customer = k256::PublicKey::from_sec1_bytes(customer_pubkey).map_err(|e| Error::InvalidField {
        field: "customer public key",
        reason: e.to_string(),
    })?;
    let mut tar = TarStream::new(output_dir)?;
    let key = SealingKey::generate()?;
    let summary = Sealer::new(&key).seal_reader(tee, &mut tar, sealed_path)?;
    let encrypted_secret = key.wrap_for(&customer)?.as_bytes().to_vec();
    drop(key);
    let (model_root_hash, storage_root, sealed_len) = hash_file(sealed_path)?;
    Ok(Artifact {
        model_root_hash,
        storage_root,
        sealed_len,
        plaintext_len: summary.plaintext_len,
        sealed_path: sealed_path.to_owned(),
        encrypted_secret,
    })
}

/// Where datasets come from and sealed models go: the local content-addressed store, or 0G Storage nodes
/// (implemented by the broker).
pub trait ArtifactStore: Send + Sync + 'static {
    /// Stores the sealed file at `path`, whose 0G root the caller computed as `root`.
    fn put_sealed(&self, path: &Path, root: B256) -> impl Future<Output = Result<()>> + Send;
    /// Whether the store has blob `root`.
    fn exists(&self, root: B256) -> impl Future<Output = Result<bool>> + Send;
    /// Writes blob `root` to `out`, verified; `Ok(None)` when the store does not have it.
    fn fetch(
        &self,
        root: B256,
        out: &Path,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Option<u64>>> + Send;
}

impl ArtifactStore for LocalStore {
    async fn put_sealed(&self, path: &Path, root: B256) -> Result<()> {
        let (store, path) = (self.clone(), path.to_owned());
        tokio::task::spawn_blocking(move || store.adopt_file(&path, root))
            .await
            .map_err(|e| Error::store("storage", e))??;
        Ok(())
    }

    async fn exists(&self, root: B256) -> Result<bool> {
        Ok(self.size_blocking(root)?.is_some())
    }

    async fn fetch(&self, root: B256, out: &Path, max_bytes: u64) -> Result<Option<u64>> {
        let (store, out) = (self.clone(), out.to_owned());
        tokio::task::spawn_blocking(move || {
            match store.size_blocking(root)? {
                None => return Ok(None),
                Some(size) if size > max_bytes => {
                    return Err(Error::DatasetTooLarge {
                        what: "bytes",
                        size,
                        max: max_bytes,
                    });
                }
                Some(_) => {}
            }
            Ok(Some(store.get_file_blocking(root, &out)?))
        })
        .await
        .map_err(|e| Error::store("storage", e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;
    use zg_sealing::{EncryptedSecret, Unsealer, signer_address};

    #[test]
    fn seal_output_round_trips_to_the_same_archive() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("adapter.bin"), vec![5u8; 300_000]).unwrap();
        let tee = SigningKey::from_slice(&[9u8; 32]).unwrap();
        let customer = k256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let pubkey = customer.public_key().to_sec1_bytes().to_vec();
        let pubkey = k256::PublicKey::from_sec1_bytes(&pubkey).unwrap();
        let uncompressed = {
            use k256::elliptic_curve::sec1::ToEncodedPoint as _;
            pubkey.to_encoded_point(false).as_bytes().to_vec()
        };
        let sealed = dir.path().join("m.sealed");
        let a = seal_output(&out, &tee, &uncompressed, &sealed).unwrap();
        let bytes = std::fs::read(&sealed).unwrap();
        assert_eq!(a.model_root_hash, keccak256(&bytes));
        assert_eq!(a.storage_root, zg_storage::root_of_bytes(&bytes).unwrap());
        assert_eq!(a.sealed_len, bytes.len() as u64);
        assert_eq!(a.encrypted_secret.len(), 129);
        let key = EncryptedSecret::from_bytes(a.encrypted_secret.clone())
            .unwrap_with(&customer)
            .unwrap();
        let plain = Unsealer::new(&key, signer_address(tee.verifying_key()))
            .unseal_bytes(&bytes)
            .unwrap();
        let mut tar = Vec::new();
        TarStream::new(&out).unwrap().read_to_end(&mut tar).unwrap();
        assert_eq!(plain, tar);
        assert_eq!(a.plaintext_len, tar.len() as u64);
    }
}
