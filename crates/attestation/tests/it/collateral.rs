//! Directory and in-memory collateral sources.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use zg_attestation::{
    CachedCollateral, Collateral, CollateralKey, CollateralSource, DirectoryCollateral, Error, TdQuote,
    Timestamp,
};

struct Counting(DirectoryCollateral, AtomicUsize);

impl CollateralSource for Counting {
    async fn collateral(
        &self,
        key: &CollateralKey,
        now: Timestamp,
    ) -> zg_attestation::Result<Arc<Collateral>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.collateral(key, now).await
    }
}

#[tokio::test]
async fn directory_and_memory_cache() {
    let dir = tempfile::tempdir().unwrap();
    let stored = Collateral::from_json(&zg_test_utils::testdata::read_string(
        "attestation/dcap-qvl/tdx_quote_collateral.json",
    ))
    .unwrap();
    let dirsrc = DirectoryCollateral::new(dir.path());
    let file = dirsrc.store(&stored).unwrap();
    assert!(file.ends_with("B0C06F000000.json"));
    let quote = TdQuote::parse(&zg_test_utils::testdata::read(
        "attestation/dcap-qvl/tdx_quote.bin",
    ))
    .unwrap();
    let key = CollateralKey::for_quote(&quote).unwrap();
    assert_eq!(
        (key.fmspc.as_str(), key.pck_ca.as_str()),
        ("B0C06F000000", "platform")
    );
    assert_eq!(dirsrc.load(&key).unwrap().digest(), stored.digest());

    let cache = CachedCollateral::new(Counting(dirsrc, AtomicUsize::new(0)));
    let t = |s| Timestamp::from_rfc3339(s).unwrap();
    cache.collateral(&key, t("2025-06-20T00:00:00Z")).await.unwrap();
    cache.collateral(&key, t("2025-06-25T00:00:00Z")).await.unwrap();
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.inner().1.load(Ordering::SeqCst), 1);
    // Within an hour of nextUpdate the cache refetches.
    cache.collateral(&key, t("2025-07-19T09:30:00Z")).await.unwrap();
    assert_eq!(cache.inner().1.load(Ordering::SeqCst), 2);

    // Unknown platform: typed error naming the FMSPC and the fix.
    let other = CollateralKey {
        fmspc: "50806F000000".into(),
        pck_ca: "platform".into(),
    };
    let err = DirectoryCollateral::new(dir.path()).load(&other).unwrap_err();
    assert!(
        matches!(err, Error::CollateralNotFound { ref fmspc, .. } if fmspc == "50806F000000"),
        "{err}"
    );
    assert!(err.to_string().contains("50806F000000.json"));
}

#[test]
fn malformed_collateral_names_the_field() {
    let bad = Collateral::from_json("{}").unwrap_err();
    assert!(
        matches!(
            bad,
            Error::MalformedCollateral {
                field: "document",
                ..
            }
        ),
        "{bad}"
    );
    let text = zg_test_utils::testdata::read_string("attestation/dcap-qvl/tdx_quote_collateral.json");
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["tcb_info"] = serde_json::Value::String("{\"issueDate\":\"x\"}".into());
    let bad = Collateral::from_json(&v.to_string()).unwrap_err();
    assert!(
        matches!(
            bad,
            Error::MalformedCollateral {
                field: "tcb_info",
                ..
            }
        ),
        "{bad}"
    );
}

/// Issue 9 item 11: the directory sources read files off the async runtime. On a one-thread
/// runtime with one blocking thread, held by a gate that only a task spawned before the call can
/// open: a source that uses the blocking pool must yield and let that task run first; one that
/// reads inline with `std::fs` finishes before the task ever runs. Deterministic, no timing.
#[test]
fn directory_sources_do_not_block_the_runtime() {
    use std::sync::atomic::AtomicBool;
    let dir = tempfile::tempdir().unwrap();
    let stored = Collateral::from_json(&zg_test_utils::testdata::read_string(
        "attestation/dcap-qvl/tdx_quote_collateral.json",
    ))
    .unwrap();
    let src = DirectoryCollateral::new(dir.path());
    src.store(&stored).unwrap();
    let key = CollateralKey {
        fmspc: "B0C06F000000".into(),
        pck_ca: "platform".into(),
    };
    let gpu_dir = zg_test_utils::testdata::path("gpu");
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    // Occupies the only blocking thread until the spawned task has run.
    let gate = || {
        let ran = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let held = tokio::task::spawn_blocking(move || rx.recv());
        let r = ran.clone();
        tokio::spawn(async move {
            r.store(true, Ordering::SeqCst);
            let _ = tx.send(());
        });
        (ran, held)
    };
    rt.block_on(async {
        let (ran, held) = gate();
        let c = src.collateral(&key, Timestamp(0)).await.unwrap();
        assert_eq!(c.digest(), stored.digest());
        assert!(
            ran.load(Ordering::SeqCst),
            "DirectoryCollateral read the file on the runtime thread"
        );
        held.await.unwrap().unwrap();

        let (ran, held) = gate();
        let g = zg_attestation::DirectoryGpuCollateral::new(&gpu_dir);
        let rim = zg_attestation::GpuCollateralSource::rim(&g, "NV_GPU_DRIVER_GH100_550.90.07", Timestamp(0))
            .await
            .unwrap();
        assert_eq!(rim.version, "550.90.07");
        assert!(
            ran.load(Ordering::SeqCst),
            "DirectoryGpuCollateral read the file on the runtime thread"
        );
        held.await.unwrap().unwrap();
    });
}
