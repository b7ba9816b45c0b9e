//! Typed client for LedgerManager: the customer's ledger, transfers to providers, refunds.

use crate::{
    Amount, Client, Error, LedgerInfo, Result, ServiceInfo, ServiceKind, TxOutcome,
    bindings::LedgerManager::{self, LedgerManagerInstance},
};
use alloy::{primitives::Address, providers::DynProvider};

/// LedgerManager, bound to a [`Client`].
#[derive(Debug, Clone)]
pub struct Ledger<'a> {
    client: &'a Client,
    contract: LedgerManagerInstance<DynProvider>,
}

impl<'a> Ledger<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Self {
            client,
            contract: LedgerManager::new(client.addresses().ledger, client.provider().clone()),
        }
    }

    /// A customer's ledger, or `None` when they have none yet.
    pub async fn get_ledger(&self, user: Address) -> Result<Option<LedgerInfo>> {
        let r = self.contract.getLedger(user).call().await;
        Ok(self
            .client
            .none_if_absent("LedgerManager.getLedger", r, |e| e == "LedgerNotExists")?
            .map(|l| LedgerInfo {
                user: l.user,
                available: Amount(l.availableBalance),
                total: Amount(l.totalBalance),
                additional_info: l.additionalInfo,
            }))
    }

    /// Creates the sender's ledger with a first deposit.
    pub async fn add_ledger(&self, amount: Amount, additional_info: &str) -> Result<TxOutcome> {
        let call = self
            .contract
            .addLedger(additional_info.to_owned())
            .value(amount.0);
        self.client.send_outcome(call, "LedgerManager.addLedger").await
    }

    /// Adds funds to the sender's ledger.
    pub async fn deposit(&self, amount: Amount) -> Result<TxOutcome> {
        let call = self.contract.depositFund().value(amount.0);
        self.client.send_outcome(call, "LedgerManager.depositFund").await
    }

    /// Adds funds to someone else's ledger (creating it if needed).
    pub async fn deposit_for(&self, recipient: Address, amount: Amount) -> Result<TxOutcome> {
        let call = self.contract.depositFundFor(recipient).value(amount.0);
        self.client
            .send_outcome(call, "LedgerManager.depositFundFor")
            .await
    }

    /// Withdraws available funds to the sender's wallet.
    pub async fn refund(&self, amount: Amount) -> Result<TxOutcome> {
        self.client
            .send_outcome(self.contract.refund(amount.0), "LedgerManager.refund")
            .await
    }

    /// Moves funds from the sender's ledger into a provider sub-account of `service`.
    pub async fn transfer_fund(
        &self,
        provider: Address,
        service: ServiceKind,
        amount: Amount,
    ) -> Result<TxOutcome> {
        let call = self
            .contract
            .transferFund(provider, service.full_name().to_owned(), amount.0);
        self.client.send_outcome(call, "LedgerManager.transferFund").await
    }

    /// Requests refunds from providers' sub-accounts and collects the matured ones back into the ledger.
    pub async fn retrieve_fund(&self, providers: Vec<Address>, service: ServiceKind) -> Result<TxOutcome> {
        let call = self
            .contract
            .retrieveFund(providers, service.full_name().to_owned());
        self.client.send_outcome(call, "LedgerManager.retrieveFund").await
    }

    /// The LedgerManager's owner (who registers serving contracts).
    pub async fn owner(&self) -> Result<Address> {
        self.contract
            .owner()
            .call()
            .await
            .map_err(|e| self.client.contract_error("LedgerManager.owner", e))
    }

    /// Owner: registers a serving contract as `<service_type>-<version>` (e.g. `fine-tuning`, `v1.0`).
    pub async fn register_service(
        &self,
        service_type: &str,
        version: &str,
        service: Address,
        description: &str,
    ) -> Result<TxOutcome> {
        let call = self.contract.registerService(
            service_type.to_owned(),
            version.to_owned(),
            service,
            description.to_owned(),
        );
        self.client
            .send_outcome(call, "LedgerManager.registerService")
            .await
    }

    /// Closes the sender's ledger, returning what is left.
    pub async fn delete_ledger(&self) -> Result<TxOutcome> {
        self.client
            .send_outcome(self.contract.deleteLedger(), "LedgerManager.deleteLedger")
            .await
    }

    /// Providers the customer has sub-accounts with, for one service.
    pub async fn providers(&self, user: Address, service: ServiceKind) -> Result<Vec<Address>> {
        self.contract
            .getLedgerProviders(user, service.full_name().to_owned())
            .call()
            .await
            .map_err(|e| self.client.contract_error("LedgerManager.getLedgerProviders", e))
    }

    /// The registration of a serving contract.
    pub async fn service_info(&self, service: Address) -> Result<ServiceInfo> {
        let s = self
            .contract
            .getServiceInfo(service)
            .call()
            .await
            .map_err(|e| self.client.contract_error("LedgerManager.getServiceInfo", e))?;
        Ok(ServiceInfo {
            address: s.serviceAddress,
            service_type: s.serviceType,
            version: s.version,
            full_name: s.fullName,
            description: s.description,
            recommended: s.isRecommended,
        })
    }

    /// Fails with [`Error::InsufficientLedgerBalance`] unless `user` has `needed` available.
    pub async fn ensure_available(&self, user: Address, needed: Amount) -> Result<()> {
        let available = self
            .get_ledger(user)
            .await?
            .map(|l| l.available)
            .unwrap_or(Amount::ZERO);
        if available < needed {
            return Err(Error::InsufficientLedgerBalance { available, needed });
        }
        Ok(())
    }
}
