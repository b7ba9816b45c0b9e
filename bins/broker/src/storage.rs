//! Where datasets come from and sealed models go: the local content-addressed store (the embedded default;
//! in the demo the customers' `zg upload` writes to the same directory, standing in for the storage
//! network), or 0G Storage nodes. Either way the broker also keeps the TEE copy it serves on `…/lora`.

use std::path::Path;

use alloy_primitives::B256;
use zg_finetune::{ArtifactStore, Error, Result};
use zg_storage::{HttpFlow, LocalStore, ZgsStore};

/// The broker's storage backend.
#[derive(Debug, Clone)]
pub enum BrokerStore {
    /// A local content-addressed directory.
    Local(LocalStore),
    /// 0G Storage nodes (uploads paid by the broker's wallet through the Flow contract).
    Zgs(Box<ZgsStore<HttpFlow>>),
}

impl ArtifactStore for BrokerStore {
    async fn put_sealed(&self, path: &Path, root: B256) -> Result<()> {
        match self {
            Self::Local(s) => s.put_sealed(path, root).await,
            Self::Zgs(z) => {
                let got = z.upload_file(path).await?;
                if got != root {
                    return Err(Error::Storage(zg_storage::Error::RootMismatch {
                        expected: root,
                        actual: got,
                    }));
                }
                Ok(())
            }
        }
    }

    async fn exists(&self, root: B256) -> Result<bool> {
        match self {
            Self::Local(s) => s.exists(root).await,
            Self::Zgs(z) => Ok(z.file_info(root).await?.is_some_and(|i| i.finalized)),
        }
    }

    async fn fetch(&self, root: B256, out: &Path, max_bytes: u64) -> Result<Option<u64>> {
        match self {
            Self::Local(s) => s.fetch(root, out, max_bytes).await,
            Self::Zgs(z) => {
                let Some(info) = z.file_info(root).await? else {
                    return Ok(None);
                };
                if info.tx.size > max_bytes {
                    return Err(Error::DatasetTooLarge {
                        what: "bytes",
                        size: info.tx.size,
                        max: max_bytes,
                    });
                }
                Ok(Some(z.download_file(root, out).await?))
            }
        }
    }
}
