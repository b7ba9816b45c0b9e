//! zg-client tour: verify a provider's TEE, then chat (plain and streamed) with every receipt checked, and show
//! what is owed. Against `just demo`'s devnet or any chain:
//! `ZG_RPC_URL=… ZG_PRIVATE_KEY=0x… ZG_PROVIDER=0x… cargo run -p zg-examples --example verified_chat`
//! (set `ZG_ALLOW_SIMULATED=1` for a provider on the simulated TEE). Paid requests go over the provider's gRPC API
//! when its service advertises one, HTTP otherwise; `ZG_TRANSPORT=http|grpc` forces one.

use zg_client::{Client, ClientConfig, StreamEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |k: &str| std::env::var(k).map_err(|_| format!("set {k}"));
    let key = var("ZG_PRIVATE_KEY")?;
    let provider: zg_chain::Address = var("ZG_PROVIDER")?.parse()?;
    let allow_simulated = std::env::var("ZG_ALLOW_SIMULATED").is_ok_and(|v| v == "1" || v == "true");

    let chain = zg_chain::Client::connect(
        &var("ZG_RPC_URL")?,
        zg_chain::ContractAddresses::DEVNET,
        Some(zg_chain::signer_from_hex(&key)?),
    )
    .await?;
    let mut cfg = ClientConfig::new(std::env::temp_dir().join("zg-example-client"))
        .dangerous_allow_simulated(allow_simulated);
    if let Ok(t) = std::env::var("ZG_TRANSPORT") {
        cfg.transport = t.parse()?;
    }
    let client = Client::new(chain, zg_billing::EthSigner::from_hex(&key)?, cfg)?;

    // Fresh nonce → quote → policy → bound signer == on-chain teeSignerAddress.
    let v = client.verify_provider(provider).await?;
    tracing::info!(simulated = v.simulated, signer = %v.signer, "provider verified");

    let body = r#"{"messages":[{"role":"user","content":"how are fees settled?"}],"max_tokens":32}"#;
    let answer = client.chat(provider, body).await?; // fails unless the receipt covers these exact bytes
    tracing::info!(text = answer.text().unwrap_or_default(), fee = %answer.receipt.fee, "plain answer, receipt verified");

    let body = r#"{"messages":[{"role":"user","content":"and streamed?"}],"max_tokens":32,"stream":true}"#;
    let mut stream = client.chat_stream(provider, body).await?;
    while let Some(event) = stream.next().await {
        match event? {
            StreamEvent::Data(_) => {}
            StreamEvent::Receipt(r) => {
                tracing::info!(fee = %r.fee, owed = %r.owed_after, "stream receipt verified")
            }
        }
    }
    let b = client.balance(provider).await?;
    tracing::info!(owed = %b.owed, paid = %b.paid, unsettled = %b.unsettled, "balance with the provider");
    Ok(())
}
