//! `ZgsStore`: 0G Storage nodes over JSON-RPC, plus the Flow contract submission.
//!
//! Protocol as the official client speaks it (0glabs/0g-storage-client `node/client_zgs.go`,
//! `node/types.go`, `transfer/uploader.go`, `transfer/downloader.go`, `contract/contract.go`):
//! * `zgs_getFileInfo(root)` → `{tx: {size, seq, …}, finalized, uploadedSegNum, …}` or `null`;
//! * `zgs_uploadSegments([SegmentWithProof])`, `SegmentWithProof = {root, data (base64), index,
//!   proof: {lemma, path}, fileSize}`; the last data segment is cut to the chunks that hold data;
//! * `zgs_downloadSegmentWithProof(root, index)` → `SegmentWithProof`, which we verify before writing;
//! * Flow `submit(((length, tags, (root, height)[]), submitter))` paid `sectors × market.pricePerSector()`.

use crate::error::{Error, ProofError, Result};
use crate::hasher::{FileTree, MerkleBuilder};
use crate::layout::{CHUNK_SIZE, FileLayout, SEGMENT_SIZE, SubmissionNode};
use crate::merkle::{Proof, segment_root};
use crate::store::BlobStore;
use alloy::primitives::{Address, U256};
use alloy_primitives::B256;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

alloy::sol! {
    /// The 0G Flow contract (submission entry point), current ABI (`submit` selector 0xbc8c11f8).
    #[sol(rpc)]
    #[derive(Debug)]
    interface IFlow {
        struct SubmissionNode { bytes32 root; uint256 height; }
        struct SubmissionData { uint256 length; bytes tags; SubmissionNode[] nodes; }
        struct Submission { SubmissionData data; address submitter; }
        function submit(Submission submission) external payable returns (uint256 index, bytes32 digest, uint256 startIndex, uint256 length);
        function market() external view returns (address);
    }
    /// The 0G storage market: price per 256-byte sector.
    #[sol(rpc)]
    #[derive(Debug)]
    interface IMarket {
        function pricePerSector() external view returns (uint256);
    }
}

/// Submits a file's Merkle node list to the Flow contract (the on-chain half of an upload).
///
/// A trait so the node protocol can be tested without a chain, and so callers can route submissions
/// through their own signer or relayer.
pub trait FlowSubmitter: Send + Sync {
    /// Fee per sector, in neuron (wei).
    fn price_per_sector(&self) -> impl Future<Output = Result<U256>> + Send;
    /// Sends `submit` for a file of `size` bytes with `fee` attached; returns the transaction hash once
    /// it is mined.
    fn submit(
        &self,
        size: u64,
        nodes: &[SubmissionNode],
        fee: U256,
    ) -> impl Future<Output = Result<B256>> + Send;
}

/// [`FlowSubmitter`] through an alloy provider with a wallet.
#[derive(Debug, Clone)]
pub struct AlloyFlow<P> {
    provider: P,
    flow: Address,
    submitter: Address,
}

impl<P: alloy::providers::Provider + Clone + Send + Sync> AlloyFlow<P> {
    /// `provider` must sign for `submitter`.
    pub fn new(provider: P, flow: Address, submitter: Address) -> Self {
        Self {
            provider,
            flow,
            submitter,
        }
    }
}

/// [`AlloyFlow`] over HTTP with a local private key, as built by [`AlloyFlow::connect_http`].
pub type HttpFlow = AlloyFlow<alloy::providers::DynProvider>;

impl AlloyFlow<alloy::providers::DynProvider> {
    /// Connects to `rpc_url` over HTTP, signing with a hex private key.
    pub fn connect_http(rpc_url: &str, private_key_hex: &str, flow: Address) -> Result<Self> {
        use alloy::providers::{Provider, ProviderBuilder};
        let signer: alloy::signers::local::PrivateKeySigner =
            private_key_hex.trim().parse().map_err(|_| {
                Error::Config(
                    "private key is not 32 bytes of hex (set --private-key or ZG_PRIVATE_KEY)".into(),
                )
            })?;
        let url = rpc_url.parse().map_err(|e| {
            Error::Config(format!(
                "RPC URL {rpc_url:?} is invalid ({e}); set --rpc-url or ZG_RPC_URL"
            ))
        })?;
        let submitter = signer.address();
        let provider = ProviderBuilder::new().wallet(signer).connect_http(url).erased();
        Ok(Self {
            provider,
            flow,
            submitter,
        })
    }
}

impl<P: alloy::providers::Provider + Clone + Send + Sync> FlowSubmitter for AlloyFlow<P> {
    async fn price_per_sector(&self) -> Result<U256> {
        let flow = IFlow::new(self.flow, &self.provider);
        let market = flow
            .market()
            .call()
            .await
            .map_err(|e| Error::Flow(format!("Flow.market(): {e}")))?;
        IMarket::new(market, &self.provider)
            .pricePerSector()
            .call()
            .await
            .map_err(|e| Error::Flow(format!("Market.pricePerSector(): {e}")))
    }

    async fn submit(&self, size: u64, nodes: &[SubmissionNode], fee: U256) -> Result<B256> {
        let submission = flow_submission(size, nodes, self.submitter);
        let flow = IFlow::new(self.flow, &self.provider);
        let pending = flow
            .submit(submission)
            .value(fee)
            .send()
            .await
            .map_err(|e| Error::Flow(format!("Flow.submit: {e}")))?;
        let receipt = pending
            .get_receipt()
            .await
            .map_err(|e| Error::Flow(format!("Flow.submit receipt: {e}")))?;
        if !receipt.status() {
            return Err(Error::Flow(format!(
                "Flow.submit reverted in {}",
                receipt.transaction_hash
            )));
        }
        Ok(receipt.transaction_hash)
    }
}

/// The ABI value of a Flow submission.
pub(crate) fn flow_submission(size: u64, nodes: &[SubmissionNode], submitter: Address) -> IFlow::Submission {
    IFlow::Submission {
        data: IFlow::SubmissionData {
            length: U256::from(size),
            tags: Default::default(),
            nodes: nodes
                .iter()
                .map(|n| IFlow::SubmissionNode {
                    root: n.root,
                    height: U256::from(n.height),
                })
                .collect(),
        },
        submitter,
    }
}

/// What a storage node knows about a file (`zgs_getFileInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    /// The Flow transaction that announced the file.
    pub tx: FileTx,
    /// All segments stored and verified.
    #[serde(default)]
    pub finalized: bool,
    /// Segments the node holds.
    #[serde(default)]
    pub uploaded_seg_num: u64,
}

/// The on-chain part of [`FileInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileTx {
    /// File root.
    pub data_merkle_root: B256,
    /// File size in bytes.
    pub size: u64,
    /// Flow sequence number.
    #[serde(default)]
    pub seq: u64,
}

/// One segment with its proof, as exchanged with nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SegmentWithProof {
    pub(crate) root: B256,
    #[serde(with = "b64")]
    pub(crate) data: Vec<u8>,
    pub(crate) index: u64,
    pub(crate) proof: Proof,
    pub(crate) file_size: u64,
}

mod b64 {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};
    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Bytes a node expects for segment `index` on upload: the data chunks, the last one zero-padded
/// (the uploader trims padding-only chunks from the last data segment).
fn upload_len(layout: &FileLayout, index: u64) -> usize {
    layout.segment_data_len(index).div_ceil(CHUNK_SIZE) * CHUNK_SIZE
}

/// Reads data segments `start..end` of the file at `path` as a node expects them on upload (last chunk
/// zero-padded). Blocking: run it on a worker.
fn read_segments(path: &Path, layout: &FileLayout, start: u64, end: u64) -> Result<Vec<Vec<u8>>> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
    for i in start..end {
        let mut seg = vec![0u8; upload_len(layout, i)];
        let have = layout.segment_data_len(i);
        file.seek(SeekFrom::Start(i * SEGMENT_SIZE as u64))
            .map_err(|e| Error::io(path, e))?;
        file.read_exact(seg.get_mut(..have).unwrap_or_default())
            .map_err(|e| Error::io(path, e))?;
        out.push(seg);
    }
    Ok(out)
}

/// Client for 0G Storage nodes; uploads submit through `F` first when the file is new.
///
/// File reads, writes, fsyncs and the whole-file hash run on worker threads, never on the caller's executor.
#[derive(Debug, Clone)]
pub struct ZgsStore<F> {
    nodes: Vec<String>,
    http: reqwest::Client,
    flow: Option<F>,
    segments_per_request: usize,
    retries: u32,
    backoff: Duration,
    wait_timeout: Duration,
    poll: Duration,
    wait_finality: bool,
    threads: usize,
    progress: Option<Progress>,
}

/// A progress callback (bytes hashed so far); `Debug` without the closure.
#[derive(Clone)]
struct Progress(std::sync::Arc<dyn Fn(u64) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

impl<F: FlowSubmitter> ZgsStore<F> {
    /// A client for `nodes` (each `http://host:port`); `flow` is needed only to upload new files.
    pub fn new(nodes: Vec<String>, flow: Option<F>) -> Result<Self> {
        if nodes.is_empty() {
            return Err(Error::Config(
                "no storage node URL given (set --node or ZG_STORAGE_NODES)".into(),
            ));
        }
        Ok(Self {
            nodes,
            http: reqwest::Client::new(),
            flow,
            segments_per_request: 10,
            retries: 5,
            backoff: Duration::from_millis(200),
            wait_timeout: Duration::from_secs(300),
            poll: Duration::from_secs(1),
            wait_finality: true,
            threads: 0,
            progress: None,
        })
    }

    /// Threads for hashing a file before upload (0 = all cores).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Called with the bytes hashed so far while an upload computes the file's root (for progress bars).
    pub fn with_progress(mut self, f: impl Fn(u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Progress(std::sync::Arc::new(f)));
        self
    }

    /// Segments per `zgs_uploadSegments` call (default 10, as the official `--task-size`).
    pub fn segments_per_request(mut self, n: usize) -> Self {
        self.segments_per_request = n.max(1);
        self
    }
    /// Retries of a failed call that may succeed later, with doubling backoff starting at `backoff`.
    pub fn retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }
    /// How long to wait for the node to see a submission and to finalize, and how often to ask.
    pub fn wait(mut self, timeout: Duration, poll: Duration) -> Self {
        self.wait_timeout = timeout;
        self.poll = poll;
        self
    }
    /// Whether `put_file` waits until nodes report the file finalized (default true).
    pub fn wait_finality(mut self, yes: bool) -> Self {
        self.wait_finality = yes;
        self
    }

    async fn call_once<T: DeserializeOwned>(
        &self,
        url: &str,
        method: &'static str,
        params: &Value,
    ) -> Result<T> {
        let rpc = |message: String, retryable: bool| Error::Rpc {
            url: url.to_owned(),
            method,
            message,
            retryable,
        };
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| rpc(e.to_string(), true))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(rpc(
                format!("HTTP {status}"),
                status.is_server_error() || status.as_u16() == 429,
            ));
        }
        let v: Value = resp
            .json()
            .await
            .map_err(|e| rpc(format!("bad JSON: {e}"), true))?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_owned();
            return Err(rpc(msg, false));
        }
        serde_json::from_value(v.get("result").cloned().unwrap_or(Value::Null))
            .map_err(|e| rpc(format!("unexpected result: {e}"), false))
    }

    async fn call<T: DeserializeOwned>(&self, url: &str, method: &'static str, params: Value) -> Result<T> {
        let mut delay = self.backoff;
        let mut attempt = 0;
        loop {
            match self.call_once(url, method, &params).await {
                Err(e) if e.is_retryable() && attempt < self.retries => {
                    tracing::debug!(%url, method, attempt, error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// `zgs_getFileInfo` on the first node that answers.
    pub async fn file_info(&self, root: B256) -> Result<Option<FileInfo>> {
        let mut last = None;
        for url in &self.nodes {
            match self
                .call::<Option<FileInfo>>(url, "zgs_getFileInfo", json!([root]))
                .await
            {
                Ok(info) => return Ok(info),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(Error::Config("no storage node".into())))
    }

    async fn wait_for(
        &self,
        root: B256,
        what: &'static str,
        done: impl Fn(&Option<FileInfo>) -> bool,
    ) -> Result<FileInfo> {
        let start = std::time::Instant::now();
        loop {
            let info = self.file_info(root).await?;
            if done(&info)
                && let Some(i) = info
            {
                return Ok(i);
            }
            if start.elapsed() >= self.wait_timeout {
                return Err(Error::Timeout {
                    what,
                    secs: self.wait_timeout.as_secs(),
                });
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Uploads a file: Flow submission if nodes do not know it yet, then every data segment with its
    /// proof to every node, skipping what a node already holds (resumable), then optionally waits for
    /// finality. Returns the root.
    pub async fn upload_file(&self, path: &Path) -> Result<B256> {
        let mut builder = MerkleBuilder::new().threads(self.threads);
        if let Some(Progress(p)) = self.progress.clone() {
            builder = builder.progress(move |n| p(n));
        }
        let owned = path.to_owned();
        let tree = crate::blocking::run("hash file", move || builder.hash_file(&owned)).await??;
        let root = tree.root();
        let layout = *tree.layout();
        let info = match self.file_info(root).await? {
            Some(info) => info,
            None => {
                let flow = self.flow.as_ref().ok_or_else(|| {
                    Error::Config(
                        "file is new to the network and no Flow contract is configured (set --flow)".into(),
                    )
                })?;
                let price = flow.price_per_sector().await?;
                let fee = price.saturating_mul(U256::from(layout.sectors()));
                let tx = flow.submit(layout.size(), &tree.submission_nodes(), fee).await?;
                tracing::info!(%root, %tx, %fee, "flow submission mined");
                self.wait_for(root, "storage nodes to see the Flow submission", Option::is_some)
                    .await?
            }
        };
        if !info.finalized {
            for url in &self.nodes {
                self.upload_to(url, &tree, path).await?;
            }
        }
        if self.wait_finality {
            self.wait_for(root, "storage nodes to finalize the file", |i| {
                i.as_ref().is_some_and(|i| i.finalized)
            })
            .await?;
        }
        Ok(root)
    }

    async fn upload_to(&self, url: &str, tree: &FileTree, path: &Path) -> Result<()> {
        let layout = *tree.layout();
        let root = tree.root();
        let info: Option<FileInfo> = self.call(url, "zgs_getFileInfo", json!([root])).await?;
        if info.as_ref().is_some_and(|i| i.finalized) {
            return Ok(());
        }
        // Resume: we upload in order, one request at a time, so what a node holds is a prefix; restart at
        // the request boundary below it.
        let k = self.segments_per_request as u64;
        let held = info.map_or(0, |i| i.uploaded_seg_num).min(layout.data_segments());
        let mut index = held / k * k;
        while index < layout.data_segments() {
            let end = (index + k).min(layout.data_segments());
            let owned = path.to_owned();
            let datas = crate::blocking::run("read segments", move || {
                read_segments(&owned, &layout, index, end)
            })
            .await??;
            let mut batch = Vec::with_capacity(datas.len());
            for (i, data) in (index..end).zip(datas) {
                batch.push(SegmentWithProof {
                    root,
                    data,
                    index: i,
                    proof: tree.segment_proof(i)?,
                    file_size: layout.size(),
                });
            }
            let _: Value = self.call(url, "zgs_uploadSegments", json!([batch])).await?;
            index = end;
        }
        Ok(())
    }

    /// Downloads `root` to `out`, verifying every segment's proof against the root before writing it;
    /// the output appears only when complete. Returns the size.
    pub async fn download_file(&self, root: B256, out: &Path) -> Result<u64> {
        let info = self.file_info(root).await?.ok_or(Error::NotFound { root })?;
        let layout = FileLayout::new(info.tx.size)?;
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.part", std::process::id()));
        let res = async {
            let t = tmp.clone();
            let mut file = crate::blocking::run("create download", move || {
                std::fs::File::create(&t)
                    .map(std::io::BufWriter::new)
                    .map_err(|e| Error::io(&t, e))
            })
            .await??;
            // Verified segments are written in groups of `segments_per_request`, each group on a worker.
            let k = self.segments_per_request as u64;
            let mut index = 0;
            while index < layout.data_segments() {
                let end = (index + k).min(layout.data_segments());
                let mut group = Vec::with_capacity((end - index) as usize);
                for i in index..end {
                    let mut seg = self.download_segment(root, &layout, i).await?;
                    seg.truncate(layout.segment_data_len(i));
                    group.push(seg);
                }
                let t = tmp.clone();
                file = crate::blocking::run("write download", move || {
                    for seg in &group {
                        file.write_all(seg).map_err(|e| Error::io(&t, e))?;
                    }
                    Ok::<_, Error>(file)
                })
                .await??;
                index = end;
            }
            let (t, out) = (tmp.clone(), out.to_owned());
            crate::blocking::run("finish download", move || {
                let f = file.into_inner().map_err(|e| Error::io(&t, e.into_error()))?;
                f.sync_all().map_err(|e| Error::io(&t, e))?;
                std::fs::rename(&t, &out).map_err(|e| Error::io(&out, e))
            })
            .await??;
            Ok(layout.size())
        }
        .await;
        if res.is_err() {
            let t = tmp.clone();
            // Best effort, like the rest of the cleanup: the error that matters is `res`.
            let _ = crate::blocking::run("remove partial download", move || std::fs::remove_file(&t)).await;
        }
        res
    }

    /// One verified segment (data cut to whole chunks), from the first node that serves a valid one.
    async fn download_segment(&self, root: B256, layout: &FileLayout, index: u64) -> Result<Vec<u8>> {
        let mut last = None;
        for url in &self.nodes {
            let got: Result<Option<SegmentWithProof>> = self
                .call(url, "zgs_downloadSegmentWithProof", json!([root, index]))
                .await;
            let checked = got.and_then(|s| {
                let s = s.ok_or(Error::NotFound { root })?;
                verify_segment(root, layout, index, &s)?;
                Ok(s.data)
            });
            match checked {
                Ok(data) => return Ok(data),
                Err(e) => {
                    tracing::warn!(%url, index, error = %e, "segment rejected, trying next node");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(Error::NotFound { root }))
    }
}

/// Checks a segment as a node (or a careful client) must: length, content hash and proof position.
pub(crate) fn verify_segment(
    root: B256,
    layout: &FileLayout,
    index: u64,
    s: &SegmentWithProof,
) -> Result<()> {
    if index >= layout.data_segments() {
        return Err(Error::SegmentOutOfRange {
            index,
            segments: layout.data_segments(),
        });
    }
    let expected = upload_len(layout, index);
    if s.data.len() != expected {
        return Err(Error::SegmentLength {
            index,
            expected,
            actual: s.data.len(),
        });
    }
    if s.root != root || s.index != index {
        return Err(Error::BadSegment {
            index,
            reason: ProofError::RootMismatch,
        });
    }
    let leaf = segment_root(&s.data, layout.segment_chunks(index));
    s.proof
        .validate(root, leaf, index, layout.segments())
        .map_err(|reason| Error::BadSegment { index, reason })
}

impl<F: FlowSubmitter> BlobStore for ZgsStore<F> {
    async fn put_file(&self, path: &Path) -> Result<B256> {
        self.upload_file(path).await
    }
    async fn get_file(&self, root: B256, out: &Path) -> Result<u64> {
        self.download_file(root, out).await
    }
    async fn exists(&self, root: B256) -> Result<bool> {
        Ok(self.file_info(root).await?.is_some_and(|i| i.finalized))
    }
    async fn size(&self, root: B256) -> Result<Option<u64>> {
        Ok(self.file_info(root).await?.map(|i| i.tx.size))
    }
}

#[cfg(test)]
mod tests {
    use alloy::sol_types::SolCall;

    #[test]
    fn submit_selector_matches_the_deployed_flow() {
        // 0xbc8c11f8 = submit(((uint256,bytes,(bytes32,uint256)[]),address)), as called on Galileo.
        assert_eq!(super::IFlow::submitCall::SELECTOR, [0xbc, 0x8c, 0x11, 0xf8]);
    }
}
