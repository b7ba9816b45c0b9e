//! The `BlobStore` trait and the local content-addressed store.

use crate::error::{Error, Result};
use crate::hasher::MerkleBuilder;
use alloy_primitives::B256;
use std::fs::{self, File};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A place blobs live under their 0G root: the local directory or 0G Storage nodes.
///
/// Every backend verifies what it hands out: `get_file` never leaves bytes at `out` that do not hash to
/// `root`.
pub trait BlobStore: Send + Sync {
    /// Stores the file at `path` and returns its root.
    fn put_file(&self, path: &Path) -> impl Future<Output = Result<B256>> + Send;
    /// Writes the blob `root` to `out` (atomically: a temp file renamed on success), returning its size.
    fn get_file(&self, root: B256, out: &Path) -> impl Future<Output = Result<u64>> + Send;
    /// Whether the blob is available.
    fn exists(&self, root: B256) -> impl Future<Output = Result<bool>> + Send;
    /// Size in bytes of the blob, `None` when absent.
    fn size(&self, root: B256) -> impl Future<Output = Result<Option<u64>>> + Send;
}

/// A content-addressed directory: `<dir>/blobs/<root hex>`, written through `<dir>/tmp/` with fsync and
/// rename, so a crash mid-write leaves either nothing or a complete, verified blob.
///
/// The `*_blocking` inherent methods do the work on the calling thread; the async [`BlobStore`] methods run
/// the same work on a dedicated thread (file copies, fsyncs and whole-file hashing never stall the caller's
/// executor) and work under any async runtime.
#[derive(Clone)]
pub struct LocalStore {
    dir: PathBuf,
    threads: usize,
    progress: Option<std::sync::Arc<dyn Fn(u64) + Send + Sync>>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("dir", &self.dir)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl LocalStore {
    /// Opens (creating if needed) a store in `dir`, and removes temp files a crash left behind.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        for sub in ["blobs", "tmp"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        }
        let tmp = dir.join("tmp");
        if let Ok(entries) = fs::read_dir(&tmp) {
            let day = std::time::Duration::from_secs(24 * 3600);
            for e in entries.flatten() {
                // Only stale files: another process may be writing into tmp/ right now.
                let stale = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok());
                if stale.is_some_and(|age| age > day) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(Self {
            dir,
            threads: 0,
            progress: None,
        })
    }

    /// Hashing threads (0 = all cores).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Called with the bytes hashed so far while verifying puts and gets (for progress bars).
    pub fn with_progress(mut self, f: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(std::sync::Arc::new(f));
        self
    }

    fn builder(&self) -> MerkleBuilder {
        let b = MerkleBuilder::new().threads(self.threads);
        match &self.progress {
            Some(p) => {
                let p = p.clone();
                b.progress(move |n| p(n))
            }
            None => b,
        }
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the blob with this root (whether or not it exists).
    pub fn blob_path(&self, root: B256) -> PathBuf {
        self.dir.join("blobs").join(hex::encode(root))
    }

    fn tmp_path(&self) -> PathBuf {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join("tmp")
            .join(format!("{}-{n}.part", std::process::id()))
    }

    /// Stores a copy of `path`; the root is computed from the copy, so a source changing meanwhile can
    /// never produce a blob under the wrong name.
    pub fn put_file_blocking(&self, path: &Path) -> Result<B256> {
        let tmp = self.tmp_path();
        let res = (|| {
            fs::copy(path, &tmp).map_err(|e| Error::io(path, e))?;
            let root = self
                .builder()
                .hash_file(&tmp)
                .map_err(|e| match e {
                    Error::Empty { .. } => Error::Empty {
                        path: Some(path.to_owned()),
                    },
                    e => e,
                })?
                .root();
            self.commit(&tmp, root)?;
            Ok(root)
        })();
        let _ = fs::remove_file(&tmp);
        res
    }

    /// Stores the file at `path` under `root` without copying it when it can: a hard link into the store
    /// (same file system), else a copy that is fsynced and renamed. The caller vouches that `root` is the root
    /// of these bytes (it hashed them itself, e.g. with [`MerkleBuilder::hash_reader`] while computing
    /// another digest in the same pass); nothing is re-hashed here, and every read re-hashes, so a wrong root
    /// can never be served. `path` must not be modified afterwards (it shares the blob's inode).
    pub fn adopt_file(&self, path: &Path, root: B256) -> Result<()> {
        let dest = self.blob_path(root);
        if dest.exists() {
            return Ok(());
        }
        let tmp = self.tmp_path();
        let res = match fs::hard_link(path, &tmp) {
            Ok(()) => Ok(()),
            Err(_) => fs::copy(path, &tmp).map(|_| ()),
        }
        .map_err(|e| Error::io(path, e))
        .and_then(|()| self.commit(&tmp, root));
        let _ = fs::remove_file(&tmp);
        res
    }

    /// Stores `data`.
    pub fn put_bytes(&self, data: &[u8]) -> Result<B256> {
        let root = self.builder().hash_bytes(data)?.root();
        let tmp = self.tmp_path();
        let res = (|| {
            let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            f.write_all(data).map_err(|e| Error::io(&tmp, e))?;
            drop(f);
            self.commit(&tmp, root)
        })();
        let _ = fs::remove_file(&tmp);
        res.map(|()| root)
    }

    /// fsyncs `tmp`, renames it to the blob path and fsyncs the directory.
    fn commit(&self, tmp: &Path, root: B256) -> Result<()> {
        File::open(tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(tmp, e))?;
        let dest = self.blob_path(root);
        fs::rename(tmp, &dest).map_err(|e| Error::io(&dest, e))?;
        let blobs = self.dir.join("blobs");
        // Directory fsync makes the rename durable; not supported everywhere, so best effort.
        let _ = File::open(&blobs).and_then(|d| d.sync_all());
        Ok(())
    }

    /// Copies blob `root` to `out` after checking that the copy hashes to `root`.
    pub fn get_file_blocking(&self, root: B256, out: &Path) -> Result<u64> {
        let src = self.blob_path(root);
        if !src.exists() {
            return Err(Error::NotFound { root });
        }
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.part", std::process::id()));
        let res = (|| {
            let size = fs::copy(&src, &tmp).map_err(|e| Error::io(&src, e))?;
            let actual = self.builder().hash_file(&tmp)?.root();
            if actual != root {
                return Err(Error::RootMismatch {
                    expected: root,
                    actual,
                });
            }
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&tmp, e))?;
            fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
            Ok(size)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    /// Reads blob `root` into memory, verified.
    pub fn get_bytes(&self, root: B256) -> Result<Vec<u8>> {
        let src = self.blob_path(root);
        let data = fs::read(&src).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { root },
            _ => Error::io(&src, e),
        })?;
        let actual = self.builder().hash_bytes(&data)?.root();
        if actual != root {
            return Err(Error::RootMismatch {
                expected: root,
                actual,
            });
        }
        Ok(data)
    }

    /// Size of blob `root`, `None` when absent.
    pub fn size_blocking(&self, root: B256) -> Result<Option<u64>> {
        let p = self.blob_path(root);
        match fs::metadata(&p) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&p, e)),
        }
    }
}

impl BlobStore for LocalStore {
    async fn put_file(&self, path: &Path) -> Result<B256> {
        let (store, path) = (self.clone(), path.to_owned());
        crate::blocking::run("put_file", move || store.put_file_blocking(&path)).await?
    }
    async fn get_file(&self, root: B256, out: &Path) -> Result<u64> {
        let (store, out) = (self.clone(), out.to_owned());
        crate::blocking::run("get_file", move || store.get_file_blocking(root, &out)).await?
    }
    async fn exists(&self, root: B256) -> Result<bool> {
        Ok(self.size(root).await?.is_some())
    }
    async fn size(&self, root: B256) -> Result<Option<u64>> {
        let store = self.clone();
        crate::blocking::run("size", move || store.size_blocking(root)).await?
    }
}
