//! The devnet deploys where the official 0G CLI expects and wires the services by name.

use zg_chain::{ContractAddresses, ServiceKind};

#[tokio::test]
async fn devnet_deploys_at_0g_cli_addresses_and_registers_services() {
    let devnet = crate::devnet().await;
    assert_eq!(devnet.chain_id(), 31337);
    assert_eq!(devnet.addresses(), ContractAddresses::DEVNET);
    let client = devnet.client(None).await.unwrap();
    let ledger = client.ledger();
    let inf = ledger.service_info(devnet.addresses().inference).await.unwrap();
    assert_eq!(inf.full_name, ServiceKind::Inference.full_name());
    let ft = ledger.service_info(devnet.addresses().fine_tuning).await.unwrap();
    assert_eq!(ft.full_name, "fine-tuning-v1.0");
}

#[tokio::test]
async fn clear_errors_for_bad_endpoints_and_addresses() {
    // Nothing listens on port 1.
    let err = zg_chain::Client::connect("http://127.0.0.1:1", ContractAddresses::DEVNET, None)
        .await
        .unwrap_err();
    assert!(matches!(err, zg_chain::Error::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("--rpc"), "{err}");

    let devnet = crate::devnet().await;
    let mut wrong = devnet.addresses();
    wrong.inference = zg_chain::Address::repeat_byte(0x42);
    let err = zg_chain::Client::connect(&devnet.rpc_url(), wrong, None)
        .await
        .unwrap_err();
    match &err {
        zg_chain::Error::NoCode { contract, flag, .. } => {
            assert_eq!(*contract, "InferenceServing");
            assert_eq!(*flag, "--inference-ca");
        }
        other => panic!("expected NoCode, got {other}"),
    }
    let err = zg_chain::Client::connect_checked(&devnet.rpc_url(), 16661, devnet.addresses(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            zg_chain::Error::WrongChain {
                expected: 16661,
                found: 31337,
                ..
            }
        ),
        "{err}"
    );
}
