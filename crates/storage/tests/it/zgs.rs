//! A conformance fake 0G Storage node: a real HTTP JSON-RPC server on 127.0.0.1:0 that verifies every
//! uploaded segment's proof against the file root announced through the (fake) Flow contract, as a node
//! does, and serves segments with proofs.

use super::vectors::pattern;
use alloy::primitives::U256;
use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zg_storage::{
    B256, BlobStore, Error, FileLayout, FlowSubmitter, MerkleBuilder, Proof, SubmissionNode, ZgsStore,
    segment_root,
};

#[derive(Default)]
struct FakeFile {
    size: u64,
    segments: BTreeMap<u64, Vec<u8>>,
    finalized: bool,
}

#[derive(Default)]
struct Node {
    files: Mutex<HashMap<B256, FakeFile>>,
    /// Answer HTTP 503 to this many next requests.
    fail_next: AtomicU32,
    /// Reject uploads of segments at or past this index (simulates a crash mid-upload).
    accept_below: AtomicU64,
    /// Flip a byte in served segments.
    corrupt: AtomicBool,
    /// Segments accepted.
    received: AtomicU64,
}

type Rpc = Result<Value, String>;

impl Node {
    fn new() -> Arc<Self> {
        let n = Self::default();
        n.accept_below.store(u64::MAX, Ordering::Relaxed);
        Arc::new(n)
    }

    fn announce(&self, root: B256, size: u64) {
        self.files.lock().unwrap().entry(root).or_insert(FakeFile {
            size,
            ..Default::default()
        });
    }

    fn file_info(&self, root: B256) -> Value {
        let files = self.files.lock().unwrap();
        match files.get(&root) {
            None => Value::Null,
            Some(f) => json!({
                "tx": {"streamIds": [], "data": "", "dataMerkleRoot": root, "startEntryIndex": 0, "size": f.size, "seq": 0},
                "finalized": f.finalized, "isCached": false, "uploadedSegNum": f.segments.len(),
            }),
        }
    }

    fn upload(&self, seg: &Value) -> Rpc {
        let root: B256 = serde_json::from_value(seg["root"].clone()).map_err(|e| e.to_string())?;
        let index = seg["index"].as_u64().ok_or("index")?;
        let data = B64
            .decode(seg["data"].as_str().ok_or("data")?)
            .map_err(|e| e.to_string())?;
        let proof: Proof = serde_json::from_value(seg["proof"].clone()).map_err(|e| e.to_string())?;
        if index >= self.accept_below.load(Ordering::Relaxed) {
            return Err("node stopped accepting".into());
        }
        let mut files = self.files.lock().unwrap();
        let f = files
            .get_mut(&root)
            .ok_or("file not found: submit it to the Flow contract first")?;
        if seg["fileSize"].as_u64() != Some(f.size) {
            return Err("file size mismatch".into());
        }
        let layout = FileLayout::new(f.size).map_err(|e| e.to_string())?;
        if index >= layout.data_segments() {
            return Err("segment index out of range".into());
        }
        let want = layout.segment_data_len(index).div_ceil(256) * 256;
        if data.len() != want {
            return Err(format!("segment {index}: {} bytes, expected {want}", data.len()));
        }
        let leaf = segment_root(&data, layout.segment_chunks(index));
        proof
            .validate(root, leaf, index, layout.segments())
            .map_err(|e| format!("invalid proof: {e}"))?;
        f.segments.insert(index, data);
        self.received.fetch_add(1, Ordering::Relaxed);
        if f.segments.len() as u64 == layout.data_segments() {
            f.finalized = true;
        }
        Ok(Value::Null)
    }

    fn download(&self, root: B256, index: u64) -> Rpc {
        let files = self.files.lock().unwrap();
        let Some(f) = files.get(&root).filter(|f| f.finalized) else {
            return Ok(Value::Null);
        };
        let mut all: Vec<u8> = f.segments.values().flatten().copied().collect();
        all.truncate(f.size as usize);
        let tree = MerkleBuilder::new().hash_bytes(&all).map_err(|e| e.to_string())?;
        let proof = tree.segment_proof(index).map_err(|e| e.to_string())?;
        let mut data = f.segments.get(&index).cloned().ok_or("no such segment")?;
        if self.corrupt.load(Ordering::Relaxed) {
            data[0] ^= 1;
        }
        Ok(
            json!({"root": root, "data": B64.encode(&data), "index": index, "proof": proof, "fileSize": f.size}),
        )
    }

    fn handle(&self, req: &Value) -> Rpc {
        let p = &req["params"];
        let root = || serde_json::from_value::<B256>(p[0].clone()).map_err(|e| e.to_string());
        match req["method"].as_str().unwrap_or_default() {
            "zgs_getStatus" => {
                Ok(json!({"connectedPeers": 1, "logSyncHeight": 1, "logSyncBlock": B256::ZERO}))
            }
            "zgs_getFileInfo" => Ok(self.file_info(root()?)),
            "zgs_uploadSegment" => self.upload(&p[0]),
            "zgs_uploadSegments" => {
                for s in p[0].as_array().ok_or("segments")? {
                    self.upload(s)?;
                }
                Ok(Value::Null)
            }
            "zgs_downloadSegmentWithProof" => self.download(root()?, p[1].as_u64().ok_or("index")?),
            m => Err(format!("method {m} not found")),
        }
    }
}

async fn rpc(State(node): State<Arc<Node>>, Json(req): Json<Value>) -> Result<Json<Value>, StatusCode> {
    if node.fail_next.load(Ordering::Relaxed) > 0 {
        node.fail_next.fetch_sub(1, Ordering::Relaxed);
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    let id = req["id"].clone();
    Ok(Json(match node.handle(&req) {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(message) => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": message}}),
    }))
}

async fn serve(node: Arc<Node>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", post(rpc)).with_state(node);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Stands in for the Flow contract: checks the fee and the node list, then "emits the log" the nodes
/// sync from (announces the file to them).
/// (size, nodes, fee) of each submission.
type Submissions = Arc<Mutex<Vec<(u64, Vec<SubmissionNode>, U256)>>>;

#[derive(Clone)]
struct FakeFlow {
    nodes: Vec<Arc<Node>>,
    submissions: Submissions,
}

const PRICE: u64 = 7;

impl FlowSubmitter for FakeFlow {
    async fn price_per_sector(&self) -> zg_storage::Result<U256> {
        Ok(U256::from(PRICE))
    }
    async fn submit(&self, size: u64, nodes: &[SubmissionNode], fee: U256) -> zg_storage::Result<B256> {
        let sectors: u64 = nodes.iter().map(|n| 1u64 << n.height).sum();
        if fee < U256::from(sectors * PRICE) {
            return Err(Error::Flow("NotEnoughFee".into()));
        }
        let mut root = nodes.last().unwrap().root;
        for n in nodes.iter().rev().skip(1) {
            root = alloy::primitives::keccak256([n.root.as_slice(), root.as_slice()].concat());
        }
        for node in &self.nodes {
            node.announce(root, size);
        }
        self.submissions.lock().unwrap().push((size, nodes.to_vec(), fee));
        Ok(B256::repeat_byte(0xee))
    }
}

async fn setup(n: usize) -> (Vec<Arc<Node>>, Vec<String>, FakeFlow) {
    let nodes: Vec<_> = (0..n).map(|_| Node::new()).collect();
    let mut urls = Vec::new();
    for node in &nodes {
        urls.push(serve(node.clone()).await);
    }
    let flow = FakeFlow {
        nodes: nodes.clone(),
        submissions: Default::default(),
    };
    (nodes, urls, flow)
}

fn store(urls: Vec<String>, flow: FakeFlow) -> ZgsStore<FakeFlow> {
    ZgsStore::new(urls, Some(flow))
        .unwrap()
        .segments_per_request(2)
        .retries(3, Duration::from_millis(5))
        .wait(Duration::from_secs(5), Duration::from_millis(10))
}

fn write_file(dir: &tempfile::TempDir, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let data = pattern(len);
    let p = dir.path().join("data.bin");
    std::fs::write(&p, &data).unwrap();
    (p, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_download_through_two_nodes() {
    let (nodes, urls, flow) = setup(2).await;
    let s = store(urls, flow.clone());
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = write_file(&dir, 5 * 256 * 1024 + 3000);
    let root = s.put_file(&path).await.unwrap();
    assert_eq!(root, zg_storage::root_of_bytes(&data).unwrap());
    {
        let subs = flow.submissions.lock().unwrap();
        assert_eq!(subs.len(), 1);
        let layout = FileLayout::new(data.len() as u64).unwrap();
        assert_eq!(
            subs[0].2,
            U256::from(layout.sectors() * PRICE),
            "fee = sectors x pricePerSector"
        );
    }
    for n in &nodes {
        assert_eq!(
            n.received.load(Ordering::Relaxed),
            6,
            "6 data segments to each node"
        );
    }
    assert!(s.exists(root).await.unwrap());
    assert_eq!(s.size(root).await.unwrap(), Some(data.len() as u64));
    let out = dir.path().join("out.bin");
    assert_eq!(s.get_file(root, &out).await.unwrap(), data.len() as u64);
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // Uploading again: already finalized, nothing submitted or sent.
    s.put_file(&path).await.unwrap();
    assert_eq!(flow.submissions.lock().unwrap().len(), 1);
    assert_eq!(nodes[0].received.load(Ordering::Relaxed), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_upload_resumes_from_the_last_request_boundary() {
    let (nodes, urls, flow) = setup(1).await;
    let s = store(urls, flow.clone()).retries(0, Duration::from_millis(1));
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_file(&dir, 9 * 256 * 1024 + 1);
    nodes[0].accept_below.store(5, Ordering::Relaxed);
    let err = s.put_file(&path).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Rpc {
                method: "zgs_uploadSegments",
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    // Requests of 2 segments: [0,1] [2,3] landed, then [4,5] stored 4 and failed at 5.
    assert_eq!(nodes[0].received.load(Ordering::Relaxed), 5);
    nodes[0].accept_below.store(u64::MAX, Ordering::Relaxed);
    s.put_file(&path).await.unwrap();
    // The node holds 5: resume at the request boundary below (4), so 4..=9 go out: 6 more, not 10.
    assert_eq!(nodes[0].received.load(Ordering::Relaxed), 11);
    assert_eq!(
        flow.submissions.lock().unwrap().len(),
        1,
        "no second Flow submission"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_persistent_ones_reported() {
    let (nodes, urls, flow) = setup(1).await;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = write_file(&dir, 1000);
    nodes[0].fail_next.store(3, Ordering::Relaxed);
    store(urls.clone(), flow.clone()).put_file(&path).await.unwrap();
    nodes[0].fail_next.store(100, Ordering::Relaxed);
    let err = store(urls, flow)
        .retries(1, Duration::from_millis(1))
        .exists(B256::ZERO)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_segments_are_rejected_and_other_nodes_used() {
    let (nodes, urls, flow) = setup(2).await;
    let s = store(urls.clone(), flow.clone());
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = write_file(&dir, 3 * 256 * 1024);
    let root = s.put_file(&path).await.unwrap();
    nodes[0].corrupt.store(true, Ordering::Relaxed);
    let out = dir.path().join("out.bin");
    s.get_file(root, &out).await.unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        data,
        "served by the honest second node"
    );
    nodes[1].corrupt.store(true, Ordering::Relaxed);
    let out2 = dir.path().join("out2.bin");
    let err = s.get_file(root, &out2).await.unwrap_err();
    assert!(matches!(err, Error::BadSegment { index: 0, .. }), "{err:?}");
    assert!(!out2.exists(), "nothing written when verification fails");
    assert!(matches!(
        s.get_file(B256::ZERO, &out2).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_node_really_checks_proofs() {
    let (_nodes, urls, flow) = setup(1).await;
    let data = pattern(2 * 256 * 1024);
    let tree = MerkleBuilder::new().hash_bytes(&data).unwrap();
    flow.submit(data.len() as u64, &tree.submission_nodes(), U256::from(u64::MAX))
        .await
        .unwrap();
    let mut proof = tree.segment_proof(1).unwrap();
    let post = |proof: &Proof, index: u64| {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "zgs_uploadSegment", "params": [{
            "root": tree.root(), "data": B64.encode(&data[256 * 1024..]), "index": index, "proof": proof, "fileSize": data.len(),
        }]});
        let url = urls[0].clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert!(
        post(&proof, 0).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid proof"),
        "wrong position"
    );
    assert!(
        post(&proof, 1).await["error"].is_null(),
        "honest segment accepted"
    );
    proof.lemma[1].0[5] ^= 1;
    assert!(
        post(&proof, 1).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid proof"),
        "tampered sibling"
    );
}

/// The whole-file hash of an upload runs on a worker thread, not on the caller's executor (issue 9 item 11):
/// on a current-thread runtime, the hashing progress callback never fires on the test's own thread. The
/// segment reads and the download's writes and fsync go through the same worker helper.
#[tokio::test]
async fn upload_hashes_off_the_executor_thread() {
    let (_nodes, urls, flow) = setup(1).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let s = store(urls, flow)
        .with_threads(1)
        .with_progress(move |_| s2.lock().unwrap().push(std::thread::current().id()));
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = write_file(&dir, 3 * 256 * 1024 + 10);
    let root = s.put_file(&path).await.unwrap();
    assert_eq!(root, zg_storage::root_of_bytes(&data).unwrap());
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "progress was reported");
    let here = std::thread::current().id();
    assert!(seen.iter().all(|t| *t != here), "hashed on the executor thread");
    let out = dir.path().join("out.bin");
    assert_eq!(s.get_file(root, &out).await.unwrap(), data.len() as u64);
    assert_eq!(std::fs::read(&out).unwrap(), data);
}
