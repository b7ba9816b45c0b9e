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
