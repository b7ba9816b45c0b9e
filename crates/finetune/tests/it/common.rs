//! Shared helpers: a pipeline over MemChain + LocalStore + the builtin executor, customers that sign like
//! the official SDK, datasets.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use zg_finetune::sig;
use zg_finetune::{
    Address, BuiltinExecutor, CreateTask, Executor, MemChain, ModelSpec, Pipeline, PipelineConfig,
    SigningKey, TaskId, TaskRecord, TaskState, TaskStore, U256, WordTokenizer,
};
use zg_ngram::{NgramModel, SHIPPED_CORPUS};
use zg_storage::LocalStore;

pub type P = Pipeline<Arc<MemChain>, LocalStore>;

pub const MODEL: &str = "zg-demo-ngram";
pub const MODEL_HASH: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";
pub const PRICE: u64 = 1_000;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub chain: Arc<MemChain>,
    pub storage: LocalStore,
    pub tee: SigningKey,
    pub base: Arc<NgramModel>,
}

pub fn customer(i: u8) -> SigningKey {
    SigningKey::from_slice(&[i; 32]).unwrap()
}

pub fn addr(k: &SigningKey) -> Address {
    sig::address_of(k)
}

impl Env {
    pub fn new(penalty: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tee = SigningKey::from_slice(&[0x42; 32]).unwrap();
        let chain = Arc::new(MemChain::new(
            Address::repeat_byte(0xaa),
            sig::address_of(&tee),
            penalty,
        ));
        let storage = LocalStore::open(dir.path().join("storage")).unwrap();
        Self {
            dir,
            chain,
            storage,
            tee,
            base: Arc::new(NgramModel::train(SHIPPED_CORPUS)),
        }
    }

    pub fn config(&self) -> PipelineConfig {
        let mut c = PipelineConfig::new(self.dir.path().join("broker"));
        c.price_per_token = U256::from(PRICE);
        c.poll_interval = Duration::from_millis(20);
        c.ack_timeout = Duration::from_secs(3600);
        c
    }

    pub fn pipeline_with(&self, cfg: PipelineConfig, executor: Arc<dyn Executor>) -> P {
        let store = TaskStore::open(cfg.data_dir.join("tasks.sqlite")).unwrap();
        Pipeline::new(
            cfg,
            store,
            Arc::clone(&self.chain),
            self.storage.clone(),
            vec![ModelSpec {
                name: MODEL.into(),
                hash: MODEL_HASH.into(),
                description: "demo".into(),
                tokenizer: Arc::new(WordTokenizer),
                executor,
                base_model_dir: None,
            }],
            self.tee.clone(),
        )
        .unwrap()
    }

    pub fn builtin(&self, pause: Duration) -> Arc<dyn Executor> {
        Arc::new(BuiltinExecutor::new(Arc::clone(&self.base), MODEL).with_epoch_pause(pause))
    }

    pub fn pipeline(&self) -> P {
        self.pipeline_with(self.config(), self.builtin(Duration::ZERO))
    }

    /// Funds and acknowledges `k`'s sub-account.
    pub fn fund(&self, k: &SigningKey, neuron: u64) {
        self.chain.set_account(addr(k), U256::from(neuron), true);
    }

    /// Puts a dataset into storage and returns its root as 0G writes it.
    pub fn store_dataset(&self, bytes: &[u8]) -> String {
        format!("{:#x}", self.storage.put_bytes(bytes).unwrap())
    }
}

/// A dataset unlike the base corpus (baking), `n` records.
pub fn baking(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"messages":[{{"role":"user","content":"How long do I bake loaf {i}?"}},{{"role":"assistant","content":"Bake the sourdough loaf for {} minutes at {} degrees, then rest it."}}]}}"#,
                30 + i % 9,
                200 + (i % 5) * 10
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A 0G create-task request signed by `k` (nonce as the SDK makes them: ms × 10⁴ + 40, made unique).
pub fn request(k: &SigningKey, dataset: &str, params: &str) -> CreateTask {
    let n = NONCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nonce = U256::from((zg_finetune::now_ms() as u64 + n) * 10_000 + 40);
    let sig = sig::sign_personal(k, &sig::create_digest(addr(k), nonce, dataset)).unwrap();
    CreateTask {
        user: addr(k),
        dataset_hash: dataset.to_owned(),
        training_params: params.to_owned(),
        model: MODEL_HASH.into(),
        nonce,
        signature: format!("0x{}", hex::encode(sig)),
        wait: false,
        max_fee: None,
    }
}

pub fn cancel_sig(k: &SigningKey, id: &TaskId) -> String {
    format!(
        "0x{}",
        hex::encode(sig::sign_personal(k, &sig::cancel_digest(id)).unwrap())
    )
}

/// Waits until the task reaches a state satisfying `f` (or panics after `secs`).
pub async fn wait_for<S: zg_finetune::ArtifactStore>(
    p: &Pipeline<Arc<MemChain>, S>,
    id: &TaskId,
    secs: u64,
    f: impl Fn(TaskState) -> bool,
) -> TaskRecord {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let t = p.store().get(id).await.unwrap().unwrap();
        if f(t.state) {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task {id} stuck in {} ({:?})",
            t.state,
            t.fail_reason
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn files_under(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| {
            if e.path().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}
