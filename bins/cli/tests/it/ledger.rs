//! Ledger verbs against a devnet: JSON output carries exact amounts; failures name the fix.

use crate::{stderr, stdout, zg};
use zg_chain::{Devnet, DevnetConfig};

fn neuron(v: &serde_json::Value) -> String {
    v["neuron"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn ledger_round_trip_with_exact_balances_and_actionable_errors() {
    let devnet = Devnet::start_with(DevnetConfig {
        anvil: Some(zg_test_utils::tools::anvil()),
        ..Default::default()
    })
    .await
    .unwrap();
    let rpc = devnet.rpc_url();
    let key = format!("0x{}", hex::encode(devnet.keys()[1].to_bytes()));
    let provider = devnet.keys()[2].address().to_string();
    let env = [("ZG_RPC_URL", rpc.as_str()), ("ZG_PRIVATE_KEY", key.as_str())];

    // No ledger yet: says how to create one.
    let o = zg(&["get-account"], &env);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("zg add-account"), "{}", stderr(&o));

    // Below the minimum: the revert is decoded into the shortfall.
    let o = zg(&["add-account", "--amount", "1"], &env);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("deposit at least 2 0G more"),
        "{}",
        stderr(&o)
    );

    let o = zg(&["add-account", "--amount", "10", "--json"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["action"], "add-account");
    assert_eq!(neuron(&v["ledger"]["available"]), "10000000000000000000");

    let o = zg(
        &[
            "transfer-fund",
            "--provider",
            &provider,
            "--amount",
            "2.5",
            "--json",
        ],
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = zg(&["get-account", "--json"], &env);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ledger"]["available"]["zg"], "7.5");
    assert_eq!(v["ledger"]["locked_in_sub_accounts"]["zg"], "2.5");
    assert_eq!(v["sub_accounts"][0]["service"], "inference");
    assert_eq!(v["sub_accounts"][0]["balance"]["zg"], "2.5");

    let o = zg(&["get-sub-account", "--provider", &provider, "--json"], &env);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["balance"]["neuron"], "2500000000000000000");

    // More than available: refused before sending, with the shortfall.
    let o = zg(&["refund", "--amount", "8"], &env);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("only 7.5 0G is available"), "{}", stderr(&o));

    let o = zg(&["refund", "--amount", "7.5 0G", "--json"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ledger"]["available"]["neuron"], "0");
    assert_eq!(v["ledger"]["total"]["zg"], "2.5");

    // The key never shows up in any output.
    for args in [&["get-account"][..], &["deposit", "--amount", "x"][..]] {
        let o = zg(args, &env);
        assert!(!stdout(&o).contains(&key[2..]) && !stderr(&o).contains(&key[2..]));
    }
}

#[test]
fn bad_input_is_named() {
    let o = zg(&["deposit", "--amount", "1.2.3"], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("invalid amount"), "{}", stderr(&o));
    let o = zg(
        &["deposit", "--amount", "1"],
        &[("ZG_RPC_URL", "http://127.0.0.1:1")],
    );
    assert!(stderr(&o).contains("ZG_PRIVATE_KEY"), "{}", stderr(&o));
    let o = zg(
        &[
            "get-account",
            "--user",
            "0x0000000000000000000000000000000000000001",
        ],
        &[("ZG_RPC_URL", "http://127.0.0.1:1")],
    );
    assert!(
        stderr(&o).contains("cannot reach the RPC endpoint http://127.0.0.1:1"),
        "{}",
        stderr(&o)
    );
    let o = zg(&["get-account", "--keystore", "/nonexistent/k.json"], &[]);
    assert!(stderr(&o).contains("zg key new"), "{}", stderr(&o));
}
