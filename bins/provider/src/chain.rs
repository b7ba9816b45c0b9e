//! Service registration on chain. The settlement adapter the settler sends through (and customers' accounts
//! are read through) is zg-chain's `SettlementAdapter`: a library, so zg-billing's own tests run it too.

use alloy_primitives::{Address, U256};
use zg_chain::{Amount, Client, InferenceService, ServiceParams};

/// Registers or updates `provider`'s service (`addOrUpdateService`), paying `stake` when it is new; the
/// client's signer must be the provider. Returns the service as the chain now holds it.
pub async fn register(
    client: &Client,
    provider: Address,
    params: &ServiceParams,
    stake: Amount,
) -> zg_chain::Result<InferenceService> {
    let inf = client.inference();
    let existing = inf.get_service(provider).await?;
    let unchanged = existing.as_ref().is_some_and(|s| {
        s.url == params.url
            && s.model == params.model
            && s.service_type == params.service_type
            && s.verifiability == params.verifiability
            && s.input_price == params.input_price
            && s.output_price == params.output_price
            && s.additional_info == params.additional_info
            && s.tee_signer == params.tee_signer
    });
    if unchanged {
        tracing::info!("service already registered with these settings");
    } else {
        let stake = if existing.is_some() {
            Amount(U256::ZERO)
        } else {
            stake
        };
        let tx = inf.add_or_update_service(params, stake).await?;
        tracing::info!(tx = %tx.tx, "addOrUpdateService");
    }
    inf.get_service(provider)
        .await?
        .ok_or_else(|| zg_chain::Error::Rpc {
            call: "InferenceServing.getService".into(),
            reason: "no service right after a successful addOrUpdateService".into(),
        })
}

/// Logs a warning (with the exact `zg owner acknowledge-tee-signer` command) while the contract owner has not
/// acknowledged `provider`'s TEE signer; returns whether it is acknowledged.
pub async fn warn_unless_owner_acknowledged(client: &Client, provider: Address) -> bool {
    match client.inference().get_service(provider).await {
        Ok(Some(s)) if s.tee_signer_acknowledged => true,
        Ok(Some(s)) => {
            let command = client.owner_acknowledge_command(zg_chain::ServiceKind::Inference, provider);
            tracing::warn!(signer = %s.tee_signer, %command, "the TEE signer waits for the contract owner's acknowledgement: TEE-signed settlements are refused and 0G clients refuse this provider until the owner runs the command");
            false
        }
        Ok(None) => {
            tracing::warn!(%provider, "no inference service registered for this provider");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read whether the owner acknowledged the TEE signer");
            false
        }
    }
}
