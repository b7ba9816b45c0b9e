//! The provider never broadcasts a key reveal it might not be paid for: `settle_fees` with a secret refuses
//! to send once the refund freeze started by the customer's acknowledgement is about to end (a refund
//! processed just before the settlement would make it revert with the key already public in its calldata).

use alloy::primitives::Bytes;
use alloy::providers::Provider as _;
use zg_chain::{Amount, Error, ServiceKind};

fn zg(s: &str) -> Amount {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_reveal_is_sent_only_inside_the_refund_freeze() {
    let devnet = crate::devnet().await;
    let keys = devnet.keys();
    let (customer_key, provider_key, tee) = (keys[1].clone(), keys[2].clone(), keys[3].clone());
    let (me, provider) = (customer_key.address(), provider_key.address());
    let customer = devnet.client(Some(customer_key.clone())).await.unwrap();
    let prov = devnet.client(Some(provider_key)).await.unwrap();
    let ft = devnet.addresses().fine_tuning;
    prov.fine_tuning()
        .add_or_update_service(&crate::fine_tuning::params(tee.address()), zg("1"))
        .await
        .unwrap();
    customer.ledger().add_ledger(zg("10"), "").await.unwrap();
    customer
        .ledger()
        .transfer_fund(provider, ServiceKind::FineTuning, zg("5"))
        .await
        .unwrap();
    devnet
        .acknowledge_tee_signer(
            ServiceKind::FineTuning,
            provider,
            std::slice::from_ref(&customer_key),
        )
        .await
        .unwrap();
    let lock = prov.fine_tuning().lock_time().await.unwrap();
    let root = Bytes::from(vec![0xaa; 32]);
    prov.fine_tuning()
        .add_deliverable(me, "task-a", root.clone())
        .await
        .unwrap();
    assert_eq!(
        prov.fine_tuning()
            .refund_freeze(me, provider)
            .await
            .unwrap()
            .acknowledged_unsettled,
        0,
        "nothing acknowledged yet"
    );
    // The customer asks for everything back, then acknowledges just before the refund matures.
    customer
        .ledger()
        .retrieve_fund(vec![provider], ServiceKind::FineTuning)
        .await
        .unwrap();
    devnet.advance_time(lock - 30).await.unwrap();
    customer
        .fine_tuning()
        .acknowledge_deliverable(provider, "task-a")
        .await
        .unwrap();
    let freeze = prov.fine_tuning().refund_freeze(me, provider).await.unwrap();
    assert_eq!(freeze.acknowledged_unsettled, 1);
    // The provider waits too long: close to the end of the freeze the reveal is refused before sending.
    devnet.advance_time(lock - 5).await.unwrap();
    let secret = Bytes::from(vec![0x5e; 129]);
    let s = crate::fine_tuning::settlement(&tee, ft, me, "task-a", &root, &secret, zg("2"), 1);
    let sent_before = prov.provider().get_transaction_count(provider).await.unwrap();
    let err = prov.fine_tuning().settle_fees(&s).await.unwrap_err();
    assert!(
        matches!(err, Error::RevealWindowClosed { user, .. } if user == me),
        "{err}"
    );
    assert!(err.to_string().contains("acknowledge"), "{err}");
    assert_eq!(
        prov.provider().get_transaction_count(provider).await.unwrap(),
        sent_before,
        "nothing was broadcast: the key stays secret"
    );
    // The customer acknowledges again (a new freeze): now the reveal goes out and pays, and the customer's
    // matured refund could not be taken in between.
    customer
        .fine_tuning()
        .acknowledge_deliverable(provider, "task-a")
        .await
        .unwrap();
    let before = customer.ledger().get_ledger(me).await.unwrap().unwrap().available;
    customer
        .ledger()
        .retrieve_fund(vec![provider], ServiceKind::FineTuning)
        .await
        .unwrap();
    assert_eq!(
        customer.ledger().get_ledger(me).await.unwrap().unwrap().available,
        before,
        "frozen: nothing refunded"
    );
    prov.fine_tuning().settle_fees(&s).await.unwrap();
    let d = customer
        .fine_tuning()
        .get_deliverable(me, provider, "task-a")
        .await
        .unwrap();
    assert_eq!((d.settled, &d.encrypted_secret), (true, &secret));
    assert_eq!(
        prov.fine_tuning()
            .refund_freeze(me, provider)
            .await
            .unwrap()
            .acknowledged_unsettled,
        0
    );
    // A second provider cannot get the owner to acknowledge this provider's signer.
    let mallory = devnet.client(Some(keys[4].clone())).await.unwrap();
    mallory
        .fine_tuning()
        .add_or_update_service(&crate::fine_tuning::params(tee.address()), zg("1"))
        .await
        .unwrap();
    assert_eq!(
        prov.fine_tuning()
            .tee_signer_provider(tee.address())
            .await
            .unwrap(),
        Some(provider)
    );
    let owner = devnet.client(Some(keys[0].clone())).await.unwrap();
    let err = owner
        .fine_tuning()
        .acknowledge_tee_signer_by_owner(keys[4].address())
        .await
        .unwrap_err();
    let r = err.revert().expect("decoded");
    assert_eq!(r.name, "TEESignerBoundToOtherProvider");
    assert!(r.to_string().contains("register its own"), "{r}");
}
