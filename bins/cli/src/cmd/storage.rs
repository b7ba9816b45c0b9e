//! `zg storage root`, `zg upload`, `zg download`: 0G Storage roots and transfers, to the local
//! content-addressed store (default) or to 0G Storage nodes (`--node`).
use super::GlobalOpts;
use crate::output;
use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use zg_storage::{AlloyFlow, BlobStore, HttpFlow, LocalStore, MerkleBuilder, ZgsStore};

/// Files above this size get a progress bar (hashing runs at roughly 0.2-0.5 GB/s per core).
const PROGRESS_MIN_BYTES: u64 = 128 << 20;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum StorageCommand {
    /// Print a file's 0G Storage root (the "root hash" the official client logs), computed locally.
    ///
    /// Example: `zg storage root model.bin` → `0x…`; with `--json` also size, chunks, padded size and
    /// segments.
    Root(RootArgs),
}

/// `zg storage root FILE`.
#[derive(Debug, clap::Args)]
pub(crate) struct RootArgs {
    /// The file to hash (read once, with bounded memory).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Hashing threads; 0 uses every core.
    #[arg(long, default_value_t = 0, env = "ZG_STORAGE_THREADS", value_name = "N")]
    threads: usize,
}

impl StorageCommand {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        match self {
            Self::Root(a) => a.run(g).await,
        }
    }
}

impl RootArgs {
    async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let size = std::fs::metadata(&self.file)
            .with_context(|| format!("cannot read {}", self.file.display()))?
            .len();
        let bar = progress_bar(size, "hashing");
        let b2 = bar.clone();
        let threads = self.threads;
        let file = self.file.clone();
        let tree = tokio::task::spawn_blocking(move || {
            MerkleBuilder::new()
                .threads(threads)
                .progress(move |n| b2.set_position(n))
                .hash_file(&file)
        })
        .await??;
        bar.finish_and_clear();
        let l = tree.layout();
        if g.json {
            output::json(&serde_json::json!({
                "root": tree.root().to_string(),
                "size": l.size(),
                "chunks": l.chunks(),
                "paddedSize": l.padded_size(),
                "paddedChunks": l.padded_chunks(),
                "segments": l.segments(),
            }))?;
        } else {
            output::text(tree.root())?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Where blobs go: the local store unless storage nodes are given.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Storage backend")]
pub(crate) struct BackendOpts {
    /// Local content-addressed store directory, the default backend [default: ~/.zg/storage].
    #[arg(long, env = "ZG_STORAGE_DIR", value_name = "DIR")]
    store_dir: Option<PathBuf>,
    /// 0G Storage node URL(s), comma-separated or repeated. When set, transfers go to 0G Storage
    /// instead of the local store.
    #[arg(
        long = "node",
        env = "ZG_STORAGE_NODES",
        value_delimiter = ',',
        value_name = "URL"
    )]
    nodes: Vec<String>,
    /// Flow contract address, needed to upload a file the network does not know yet. The fee
    /// (sectors × pricePerSector) is paid by the key in `ZG_PRIVATE_KEY`.
    #[arg(long, env = "ZG_FLOW_ADDRESS", value_name = "ADDR")]
    flow: Option<String>,
    /// EVM JSON-RPC URL for the Flow submission.
    #[arg(long, env = "ZG_RPC_URL", value_name = "URL")]
    rpc_url: Option<String>,
    /// Return once the segments are sent instead of waiting for the nodes to finalize the file.
    #[arg(long)]
    no_finality: bool,
}

enum Backend {
    Local(LocalStore),
    Zgs(Box<ZgsStore<HttpFlow>>),
}

impl BackendOpts {
    fn open(&self, bar: &ProgressBar) -> anyhow::Result<Backend> {
        if self.nodes.is_empty() {
            let dir = match &self.store_dir {
                Some(d) => d.clone(),
                None => default_store_dir()?,
            };
            let b = bar.clone();
            let store = LocalStore::open(&dir)
                .with_context(|| {
                    format!(
                        "cannot open the local store {} (set --store-dir or ZG_STORAGE_DIR)",
                        dir.display()
                    )
                })?
                .with_progress(move |n| b.set_position(n));
            return Ok(Backend::Local(store));
        }
        let flow = match (&self.flow, &self.rpc_url) {
            (Some(flow), Some(rpc)) => {
                let addr = flow
                    .parse()
                    .with_context(|| format!("--flow {flow:?} is not an address"))?;
                let key = std::env::var("ZG_PRIVATE_KEY").context(
                    "uploading to 0G Storage pays a Flow fee: set ZG_PRIVATE_KEY to the paying key",
                )?;
                Some(AlloyFlow::connect_http(rpc, &key, addr)?)
            }
            (None, None) => None,
            _ => anyhow::bail!("--flow and --rpc-url go together (or ZG_FLOW_ADDRESS and ZG_RPC_URL)"),
        };
        Ok(Backend::Zgs(Box::new(
            ZgsStore::new(self.nodes.clone(), flow)?.wait_finality(!self.no_finality),
        )))
    }
}

fn default_store_dir() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("no $HOME: set --store-dir or ZG_STORAGE_DIR")?;
    Ok(PathBuf::from(home).join(".zg").join("storage"))
}

fn progress_bar(total: u64, what: &'static str) -> ProgressBar {
    if total < PROGRESS_MIN_BYTES {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what);
    bar
}

fn spinner(msg: &'static str) -> ProgressBar {
    let s = ProgressBar::new_spinner();
    s.set_message(msg);
    s.enable_steady_tick(Duration::from_millis(120));
    s
}

/// `zg upload --data-path FILE`: store a file and print its root (0G CLI flag names).
#[derive(Debug, clap::Args)]
pub(crate) struct UploadArgs {
    /// The file to upload.
    #[arg(long, value_name = "FILE")]
    data_path: PathBuf,
    #[command(flatten)]
    backend: BackendOpts,
}

impl UploadArgs {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let size = std::fs::metadata(&self.data_path)
            .with_context(|| format!("cannot read --data-path {}", self.data_path.display()))?
            .len();
        let bar = progress_bar(size, "uploading");
        let (root, backend) = match self.backend.open(&bar)? {
            Backend::Local(store) => {
                let path = self.data_path.clone();
                let r = tokio::task::spawn_blocking(move || store.put_file_blocking(&path)).await??;
                (r, "local")
            }
            Backend::Zgs(store) => {
                let s = spinner("uploading to 0G Storage");
                let r = store.put_file(&self.data_path).await;
                s.finish_and_clear();
                (r?, "0g-storage")
            }
        };
        bar.finish_and_clear();
        if g.json {
            output::json(&serde_json::json!({"root": root.to_string(), "size": size, "backend": backend}))?;
        } else {
            output::text(root)?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// `zg download --data-root ROOT --data-path OUT`: fetch a file by root, verifying every byte.
#[derive(Debug, clap::Args)]
pub(crate) struct DownloadArgs {
    /// Root of the file (0x + 64 hex digits), as printed by `zg upload`.
    #[arg(long, value_name = "ROOT")]
    data_root: String,
    /// Where to write the file; it appears only once fully verified.
    #[arg(long, value_name = "FILE")]
    data_path: PathBuf,
    #[command(flatten)]
    backend: BackendOpts,
}

impl DownloadArgs {
    pub(crate) async fn run(self, g: &GlobalOpts) -> anyhow::Result<ExitCode> {
        let root = zg_storage::parse_root(&self.data_root).context("--data-root")?;
        let bar = progress_bar(0, "verifying");
        let size = match self.backend.open(&bar)? {
            Backend::Local(store) => {
                let size = store.size_blocking(root)?.unwrap_or(0);
                let bar2 = progress_bar(size, "verifying");
                let b = bar2.clone();
                let store = store.with_progress(move |n| b.set_position(n));
                let out = self.data_path.clone();
                let n = tokio::task::spawn_blocking(move || store.get_file_blocking(root, &out)).await??;
                bar2.finish_and_clear();
                n
            }
            Backend::Zgs(store) => {
                let s = spinner("downloading from 0G Storage");
                let r = store.get_file(root, &self.data_path).await;
                s.finish_and_clear();
                r?
            }
        };
        if g.json {
            output::json(&serde_json::json!({
                "root": root.to_string(), "size": size, "path": self.data_path.display().to_string(), "verified": true,
            }))?;
        } else {
            output::text(format_args!(
                "{} ({size} bytes, root verified)",
                display(&self.data_path)
            ))?;
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use crate::cmd::Cli;
    use clap::Parser;

    async fn zg(args: &[&str]) -> anyhow::Result<std::process::ExitCode> {
        let mut argv = vec!["zg"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)?.run().await
    }

    #[tokio::test]
    async fn upload_then_download_through_the_local_store() {
        let dir = tempfile::tempdir().unwrap();
        let (src, out, store) = (
            dir.path().join("in.bin"),
            dir.path().join("out.bin"),
            dir.path().join("store"),
        );
        let data: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        let s = store.to_str().unwrap();
        zg(&["upload", "--data-path", src.to_str().unwrap(), "--store-dir", s])
            .await
            .unwrap();
        let root = "0x536080d522b3b2f374e16c533265540ed26688995b200ed724fa3ef81fb8184b";
        assert!(
            store.join("blobs").join(&root[2..]).exists(),
            "stored under the official root"
        );
        zg(&[
            "download",
            "--data-root",
            root,
            "--data-path",
            out.to_str().unwrap(),
            "--store-dir",
            s,
        ])
        .await
        .unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), data);

        // A corrupted blob is refused and nothing is written.
        std::fs::write(store.join("blobs").join(&root[2..]), b"rot").unwrap();
        let out2 = dir.path().join("out2.bin");
        let err = zg(&[
            "download",
            "--data-root",
            root,
            "--data-path",
            out2.to_str().unwrap(),
            "--store-dir",
            s,
        ])
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("root mismatch"), "{err:#}");
        assert!(!out2.exists());
    }

    #[tokio::test]
    async fn bad_flags_name_the_fix() {
        let err = zg(&["download", "--data-root", "0x12", "--data-path", "x"])
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("--data-root"), "{err:#}");
        let err = zg(&[
            "upload",
            "--data-path",
            "/nonexistent/file",
            "--node",
            "http://127.0.0.1:1",
            "--flow",
            "0x0000000000000000000000000000000000000001",
        ])
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("--data-path"), "{err:#}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let err = zg(&[
            "upload",
            "--data-path",
            f.to_str().unwrap(),
            "--node",
            "http://127.0.0.1:1",
            "--flow",
            "0x0000000000000000000000000000000000000001",
        ])
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("--rpc-url"), "{err:#}");
    }
}
