//! Issue 9 item 2 on a real anvil: a TEE signer charges a customer only while the contract owner acknowledges it
//! and the customer acknowledged that same address. Signer swaps, owner revocation and missing customer
//! acknowledgements are refused with a status (TEE batches) or a decoded revert with a fix (fine-tuning), and the
//! owner's calls say who the owner is when someone else signs them.

use alloy::primitives::{Bytes, U256};
use zg_chain::{Amount, ServiceKind, ServiceParams, SettlementStatus, TeeSignerAcknowledgements};

use crate::{fine_tuning, money_flow::tee_settlement};

fn zg(s: &str) -> Amount {
    s.parse().unwrap()
}

fn inference_params(tee: alloy::primitives::Address) -> ServiceParams {
    ServiceParams {
        service_type: "chatbot".into(),
        url: "http://127.0.0.1:9".into(),
        model: "zg-demo".into(),
        verifiability: "TeeML".into(),
        input_price: U256::from(1),
        output_price: U256::from(2),
        additional_info: "{}".into(),
        tee_signer: tee,
    }
}

/// Regression for issue 9 item 2: the provider swaps in a key of its choosing after the customer acknowledged
/// the attested one. Nothing the new key signs is paid until the owner and then the customer acknowledge it;
/// the owner's revocation stops payment again.
#[tokio::test]
async fn issue9_swapped_signer_is_refused_until_owner_and_customer_acknowledge_it() {
    let devnet = crate::devnet().await;
    let keys = devnet.keys();
    let (customer_key, provider_key, tee, rogue) =
        (keys[1].clone(), keys[2].clone(), keys[3].clone(), keys[4].clone());
    let (me, provider) = (customer_key.address(), provider_key.address());
    let customer = devnet.client(Some(customer_key.clone())).await.unwrap();
    let prov = devnet.client(Some(provider_key)).await.unwrap();
    let owner = devnet.client(Some(keys[0].clone())).await.unwrap();
    let contract = devnet.addresses().inference;

    prov.inference()
        .add_or_update_service(&inference_params(tee.address()), zg("1"))
        .await
        .unwrap();
    customer.ledger().add_ledger(zg("10"), "").await.unwrap();
    customer
        .ledger()
        .transfer_fund(provider, ServiceKind::Inference, zg("4"))
        .await
        .unwrap();
    devnet
        .acknowledge_tee_signer(
            ServiceKind::Inference,
            provider,
            std::slice::from_ref(&customer_key),
        )
        .await
        .unwrap();
    assert_eq!(
        customer
            .inference()
            .tee_signer_acknowledgements(me, provider)
            .await
            .unwrap(),
        TeeSignerAcknowledgements {
            signer: tee.address(),
            owner_acknowledged: true,
            user_acknowledged_signer: tee.address(),
            settleable: true,
        }
    );
    let out = prov
        .inference()
        .settle_fees_with_tee(&[tee_settlement(&tee, contract, me, provider, zg("1"), 1)])
        .await
        .unwrap();
    assert_eq!(out.results[0].status, SettlementStatus::Success);

    // The swap.
    prov.inference()
        .add_or_update_service(&inference_params(rogue.address()), Amount::ZERO)
        .await
        .unwrap();
    let trust = customer
        .inference()
        .tee_signer_acknowledgements(me, provider)
        .await
        .unwrap();
    assert_eq!(
        trust,
        TeeSignerAcknowledgements {
            signer: rogue.address(),
            owner_acknowledged: false,
            user_acknowledged_signer: tee.address(),
            settleable: false,
        }
    );
    assert!(!trust.user_acknowledged());
    let acct = customer
        .inference()
        .get_account(me, provider)
        .await
        .unwrap()
        .unwrap();
    assert!(!acct.acknowledged, "0G's `acknowledged` reads false after a swap");

    let drain = tee_settlement(&rogue, contract, me, provider, zg("3"), 2);
    let out = prov
        .inference()
        .settle_fees_with_tee(std::slice::from_ref(&drain))
        .await
        .unwrap();
    assert_eq!(
        out.results[0].status,
        SettlementStatus::SignerNotAcknowledgedByOwner
    );
    owner
        .inference()
        .acknowledge_tee_signer_by_owner(provider)
        .await
        .unwrap();
    let out = prov
        .inference()
        .settle_fees_with_tee(std::slice::from_ref(&drain))
        .await
        .unwrap();
    assert_eq!(
        out.results[0].status,
        SettlementStatus::SignerNotAcknowledgedByUser
    );
    assert_eq!(
        out.results[0].status.describe(),
        "the customer has not acknowledged the provider's current TEE signer"
    );
    let acct = customer
        .inference()
        .get_account(me, provider)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((acct.balance, acct.nonce), (zg("3"), U256::from(1)), "untouched");

    // A customer that verified the old signer cannot acknowledge it any more (pinned acknowledgement)...
    let err = customer
        .inference()
        .acknowledge_tee_signer_address(provider, tee.address())
        .await
        .unwrap_err();
    assert_eq!(err.revert().expect("decoded").name, "TEESignerChanged");
    // ...it verifies and acknowledges the new signer: now it pays.
    customer
        .inference()
        .acknowledge_tee_signer_address(provider, rogue.address())
        .await
        .unwrap();
    // A live acknowledgement cannot be withdrawn while the sub-account holds funds.
    let err = customer
        .inference()
        .acknowledge_tee_signer(provider, false)
        .await
        .unwrap_err();
    let r = err.revert().expect("decoded");
    assert_eq!(r.name, "CannotRevokeWithNonZeroBalance");
    assert!(
        err.to_string().contains("still holds 3 0G") && err.to_string().contains("zg retrieve-fund"),
        "{err}"
    );
    let out = prov
        .inference()
        .settle_fees_with_tee(std::slice::from_ref(&drain))
        .await
        .unwrap();
    assert_eq!(out.results[0].status, SettlementStatus::Success);
    let acct = customer
        .inference()
        .get_account(me, provider)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acct.balance, Amount::ZERO);

    // The owner's revocation stops TEE settlement.
    owner
        .inference()
        .revoke_tee_signer_acknowledgement(provider)
        .await
        .unwrap();
    let trust = customer
        .inference()
        .tee_signer_acknowledgements(me, provider)
        .await
        .unwrap();
    assert_eq!((trust.owner_acknowledged, trust.settleable), (false, false));
    let out = prov
        .inference()
        .settle_fees_with_tee(&[tee_settlement(&rogue, contract, me, provider, zg("0"), 3)])
        .await
        .unwrap();
    assert_eq!(
        out.results[0].status,
        SettlementStatus::SignerNotAcknowledgedByOwner
    );
}

/// The owner's calls: who the owner is, a decoded `NotOwner` that names the owner, and the hints for a provider
/// without a service or without a signer.
#[tokio::test]
async fn issue9_owner_calls_name_the_owner_and_explain_refusals() {
    let devnet = crate::devnet().await;
    let keys = devnet.keys();
    let (stranger, provider_key) = (keys[1].clone(), keys[2].clone());
    let provider = provider_key.address();
    let owner_addr = keys[0].address();
    let c = devnet.client(Some(stranger.clone())).await.unwrap();
    assert_eq!(c.inference().owner().await.unwrap(), owner_addr);
    assert_eq!(c.fine_tuning().owner().await.unwrap(), owner_addr);

    let err = c
        .inference()
        .acknowledge_tee_signer_by_owner(provider)
        .await
        .unwrap_err();
    let r = err.revert().expect("decoded");
    assert_eq!(r.name, "NotOwner");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "only the contract owner {}",
            owner_addr.to_checksum(None)
        )) && text.contains(&format!("signed by {}", stranger.address().to_checksum(None))),
        "{text}"
    );
    let err = c
        .fine_tuning()
        .revoke_tee_signer_acknowledgement(provider)
        .await
        .unwrap_err();
    assert_eq!(err.revert().expect("decoded").name, "NotOwner");

    // No service: the hint names the provider.
    let owner = devnet.client(Some(keys[0].clone())).await.unwrap();
    let err = owner
        .inference()
        .acknowledge_tee_signer_by_owner(provider)
        .await
        .unwrap_err();
    assert_eq!(err.revert().expect("decoded").name, "ServiceNotExist");
    assert!(
        err.to_string()
            .contains(&format!("provider {} has no service", provider.to_checksum(None))),
        "{err}"
    );
    // A service without a signer: nothing to acknowledge.
    let prov = devnet.client(Some(provider_key)).await.unwrap();
    prov.fine_tuning()
        .add_or_update_service(&fine_tuning::params(alloy::primitives::Address::ZERO), zg("1"))
        .await
        .unwrap();
    let err = owner
        .fine_tuning()
        .acknowledge_tee_signer_by_owner(provider)
        .await
        .unwrap_err();
    assert_eq!(err.revert().expect("decoded").name, "NoTEESigner");
    assert!(err.to_string().contains("registered no TEE signer"), "{err}");

    // Pinned acknowledgements refuse a signer that changed since it was checked (a front-run swap).
    let (tee, rogue) = (keys[3].address(), keys[4].address());
    prov.fine_tuning()
        .add_or_update_service(&fine_tuning::params(rogue), Amount::ZERO)
        .await
        .unwrap();
    let err = owner
        .fine_tuning()
        .acknowledge_tee_signer_address_by_owner(provider, tee)
        .await
        .unwrap_err();
    assert_eq!(err.revert().expect("decoded").name, "TEESignerChanged");
    assert!(
        err.to_string().contains(&format!(
            "TEE signer is now {}, not {}",
            rogue.to_checksum(None),
            tee.to_checksum(None)
        )),
        "{err}"
    );
    owner
        .fine_tuning()
        .acknowledge_tee_signer_address_by_owner(provider, rogue)
        .await
        .unwrap();
    let trust = owner
        .fine_tuning()
        .tee_signer_acknowledgements(stranger.address(), provider)
        .await
        .unwrap();
    assert_eq!((trust.signer, trust.owner_acknowledged), (rogue, true));

    // The exact command the provider's log prints.
    assert_eq!(
        owner.owner_acknowledge_command(ServiceKind::FineTuning, provider),
        format!(
            "zg owner acknowledge-tee-signer --provider {provider} --service fine-tuning --rpc {} --fine-tuning-ca {} \
             --keystore <owner keystore>",
            devnet.rpc_url(),
            devnet.addresses().fine_tuning
        )
    );
}

/// Fine-tuning `settleFees` is refused, with a decoded error and a fix, until the owner and the customer
/// acknowledge the provider's current signer, even for the penalty of an unacknowledged deliverable.
#[tokio::test]
async fn issue9_fine_tuning_settlement_needs_both_acknowledgements() {
    let devnet = crate::devnet().await;
    let keys = devnet.keys();
    let (customer_key, provider_key, tee) = (keys[1].clone(), keys[2].clone(), keys[3].clone());
    let (me, provider) = (customer_key.address(), provider_key.address());
    let customer = devnet.client(Some(customer_key.clone())).await.unwrap();
    let prov = devnet.client(Some(provider_key)).await.unwrap();
    let ft = devnet.addresses().fine_tuning;
    prov.fine_tuning()
        .add_or_update_service(&fine_tuning::params(tee.address()), zg("1"))
        .await
        .unwrap();
    customer.ledger().add_ledger(zg("10"), "").await.unwrap();
    customer
        .ledger()
        .transfer_fund(provider, ServiceKind::FineTuning, zg("5"))
        .await
        .unwrap();
    let root = Bytes::from(vec![0xcc; 32]);
    prov.fine_tuning()
        .add_deliverable(me, "task-x", root.clone())
        .await
        .unwrap();
    let s = fine_tuning::settlement(&tee, ft, me, "task-x", &root, &Bytes::new(), zg("1"), 1);

    let err = prov.fine_tuning().settle_fees(&s).await.unwrap_err();
    let r = err.revert().expect("decoded");
    assert_eq!(r.name, "TEESignerNotAcknowledgedByOwner");
    assert!(
        err.to_string().contains(&format!(
            "zg owner acknowledge-tee-signer --provider {} --service fine-tuning",
            provider.to_checksum(None)
        )),
        "{err}"
    );
    devnet
        .acknowledge_tee_signer(ServiceKind::FineTuning, provider, &[])
        .await
        .unwrap();
    let err = prov.fine_tuning().settle_fees(&s).await.unwrap_err();
    assert_eq!(
        err.revert().expect("decoded").name,
        "TEESignerNotAcknowledgedByUser"
    );
    assert!(err.to_string().contains("never acknowledged"), "{err}");
    let acct = customer
        .fine_tuning()
        .get_account(me, provider)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((acct.balance, acct.acknowledged), (zg("5"), false));

    customer
        .fine_tuning()
        .acknowledge_tee_signer(provider, true)
        .await
        .unwrap();
    let trust = customer
        .fine_tuning()
        .tee_signer_acknowledgements(me, provider)
        .await
        .unwrap();
    assert!(trust.settleable && trust.user_acknowledged(), "{trust:?}");
    prov.fine_tuning().settle_fees(&s).await.unwrap();
    let acct = customer
        .fine_tuning()
        .get_account(me, provider)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (acct.balance, acct.acknowledged),
        (zg("4.7"), true),
        "30% penalty of 1 0G once both acknowledged"
    );
}
