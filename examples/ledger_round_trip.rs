//! A customer's first program with zg-chain: start a devnet, open a ledger, fund a provider, read it back.
//!
//! Run with `cargo run -p zg-examples --example ledger_round_trip` (needs `anvil` on PATH or `ZG_ANVIL`;
//! `just setup` installs a pinned one under node_modules/@foundry-rs/anvil-linux-amd64/bin).

use zg_chain::{Amount, Devnet, ServiceKind};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), zg_chain::Error> {
    let devnet = Devnet::start().await?;
    let customer = devnet.keys()[1].clone();
    let provider = devnet.keys()[2].address();
    let me = customer.address();
    let client = devnet.client(Some(customer)).await?;

    client.ledger().add_ledger("5".parse::<Amount>()?, "").await?;
    client
        .ledger()
        .transfer_fund(provider, ServiceKind::Inference, "1.5".parse()?)
        .await?;

    let ledger = client
        .ledger()
        .get_ledger(me)
        .await?
        .ok_or(zg_chain::Error::Devnet("ledger missing".into()))?;
    let account = client.inference().get_account(me, provider).await?;
    tracing::info!(available = %ledger.available, total = %ledger.total, "ledger");
    assert_eq!(ledger.available, "3.5".parse()?);
    assert_eq!(account.map(|a| a.balance), Some("1.5".parse()?));
    Ok(())
}
