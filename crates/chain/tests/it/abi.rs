//! The committed artifacts keep every entry of the official 0G ABI that the 0G SDK and CLI call.
//! (`contracts/scripts/check-abi.mjs` does the full comparison with its allow-list; this pins the client-facing
//! core from Rust so a binding change cannot drift silently.)

use std::collections::BTreeSet;

fn signatures(abi: &serde_json::Value) -> BTreeSet<String> {
    fn ty(p: &serde_json::Value) -> String {
        let t = p["type"].as_str().unwrap_or_default();
        match t.strip_prefix("tuple") {
            Some(suffix) => {
                let inner: Vec<String> = p["components"].as_array().unwrap().iter().map(ty).collect();
                format!("({}){suffix}", inner.join(","))
            }
            None => t.to_owned(),
        }
    }
    abi.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "function" || e["type"] == "event")
        .map(|e| {
            let list = |k: &str| -> String {
                e[k].as_array()
                    .map(|a| a.iter().map(ty).collect::<Vec<_>>().join(","))
                    .unwrap_or_default()
            };
            format!(
                "{} {}({}) -> ({})",
                e["type"].as_str().unwrap(),
                e["name"].as_str().unwrap(),
                list("inputs"),
                list("outputs")
            )
        })
        .collect()
}

#[test]
fn official_client_entries_are_identical() {
    // The entries the official CLI (C) and SDK (S) reach, per contracts/reference/0g-abi/README.md.
    let called: [(&str, &[&str]); 3] = [
        (
            "LedgerManager",
            &[
                "addLedger",
                "depositFund",
                "refund",
                "transferFund",
                "retrieveFund",
                "getLedger",
                "getLedgerProviders",
                "getServiceInfo",
                "deleteLedger",
                "depositFundFor",
                "getAllLedgers",
            ],
        ),
        (
            "InferenceServing",
            &[
                "getAllServices",
                "getService",
                "getAccount",
                "lockTime",
                "acknowledgeTEESigner",
                "revokeToken",
                "revokeAllTokens",
                "addOrUpdateService",
                "removeService",
                "acknowledgeTEESignerByOwner",
                "revokeTEESignerAcknowledgement",
                "revokeTokens",
                "getAllAccounts",
            ],
        ),
        (
            "FineTuningServing",
            &[
                "getAllServices",
                "getService",
                "getAccount",
                "lockTime",
                "getDeliverable",
                "acknowledgeDeliverable",
                "acknowledgeTEESigner",
                "removeService",
                "acknowledgeTEESignerByOwner",
                "revokeTEESignerAcknowledgement",
                "getAllAccounts",
            ],
        ),
    ];
    for ((name, artifact), (name2, functions)) in zg_chain::ARTIFACTS.iter().zip(called) {
        assert_eq!(*name, name2);
        let ours: serde_json::Value = serde_json::from_str(artifact).unwrap();
        let ours = signatures(&ours["abi"]);
        let reference_path = format!(
            "{}/../../contracts/reference/0g-abi/{name}.abi.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let reference: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&reference_path).unwrap()).unwrap();
        let reference = signatures(&reference);
        for f in functions {
            let wanted: Vec<&String> = reference
                .iter()
                .filter(|s| s.starts_with(&format!("function {f}(")))
                .collect();
            assert!(!wanted.is_empty(), "{name}.{f} is not in the reference ABI");
            for w in wanted {
                assert!(ours.contains(w), "{name}: our ABI lacks or changed `{w}`");
            }
        }
    }
}
