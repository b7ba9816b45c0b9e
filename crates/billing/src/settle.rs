//! The settler: builds, signs, previews, submits and reconciles settlement batches, exactly once.
//!
//! Every payload is stored (signed, byte for byte) before it is sent. After a crash at any point,
//! [`Settler::reconcile`] compares each open settlement's nonce with the chain: if the chain's nonce
//! has reached it, it was applied and is committed locally; otherwise the identical payload is sent
//! again. The contract's nonce check makes a second copy of the same payload a no-op, so a customer
//! is charged once whichever copy lands.

use std::future::Future;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};

use crate::error::{BoxError, Error, Result};
use crate::ledger::{
    ChainAccount, Ledger, PendingRequest, SettlementMode, SettlementRecord, SettlementState,
};
use crate::native::{SignedVoucher, TEESettlement, Voucher};
use crate::sig::{EthSigner, parse_signature_bytes};

/// Most customers per settlement transaction (the contract's batch limit).
pub const MAX_USERS_PER_TX: usize = 50;

/// One `TEESettlementData` item, exactly as passed to `settleFeesWithTEE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeeItem {
    /// The customer.
    pub user: Address,
    /// The provider.
    pub provider: Address,
    /// Sum of the settled requests' fees.
    pub total_fee: U256,
    /// [`requests_hash`] of the settled requests.
    pub requests_hash: B256,
    /// Settlement nonce (> the account's on-chain nonce).
    pub nonce: U256,
    /// The TEE signer's 65-byte EIP-712 signature.
    pub signature: Bytes,
}

/// Per-item outcome of `settleFeesWithTEE` / `previewSettlementResults`
/// (status 0 ok, 1 partial, 2 provider mismatch, 3 no TEE signer, 4 invalid nonce, 5 invalid signature,
/// 7 signer not acknowledged by the contract owner, 8 signer not acknowledged by the customer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeeItemResult {
    /// The status code.
    pub status: u8,
    /// The part of `totalFee` that was not paid (partial settlement).
    pub unsettled: U256,
}

/// On-chain voucher state of a (customer, provider) pair: `voucherState(user, provider)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VoucherState {
    /// Cumulative amount already paid through vouchers.
    pub paid: U256,
    /// Highest voucher nonce applied.
    pub nonce: U256,
}

/// A mined settlement transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxResult {
    /// Receipt status.
    pub success: bool,
    /// `TEESettlementResult(user, status, unsettledAmount)` events, in log order.
    pub tee_results: Vec<(Address, TeeItemResult)>,
}

/// What the settler needs from the chain. The provider implements it over `zg-chain`; tests use
/// an in-memory double. Errors are boxed so adapters keep their own error types.
pub trait SettlementChain: Send + Sync {
    /// `getAccount(user, provider)`: balance, pending refund, nonce, token state.
    fn account(&self, user: Address) -> impl Future<Output = Result<ChainAccount, BoxError>> + Send;
    /// The voucher state of `(user, provider)`.
    fn voucher_state(&self, user: Address) -> impl Future<Output = Result<VoucherState, BoxError>> + Send;
    /// `previewSettlementResults(items)` (a view call): per-item status as it would be now.
    fn preview_tee(
        &self,
        items: &[TeeItem],
    ) -> impl Future<Output = Result<Vec<TeeItemResult>, BoxError>> + Send;
    /// Sends `settleFeesWithTEE(items)`; returns the tx hash without waiting.
    fn submit_tee(&self, items: &[TeeItem]) -> impl Future<Output = Result<B256, BoxError>> + Send;
    /// Sends `settleVouchers(vouchers)`; returns the tx hash without waiting.
    fn submit_vouchers(
        &self,
        vouchers: &[SignedVoucher],
    ) -> impl Future<Output = Result<B256, BoxError>> + Send;
    /// Waits until the transaction is mined.
    fn wait_receipt(&self, tx_hash: B256) -> impl Future<Output = Result<TxResult, BoxError>> + Send;
    /// Finds the applied TEE settlement of `user` with `nonce` (from events), for reconciliation. The search
    /// starts at `from_block`, the chain's block when the settlement was prepared (it cannot have landed
    /// earlier), so it stays within the log ranges public RPC nodes serve.
    fn find_tee_result(
        &self,
        user: Address,
        nonce: U256,
        from_block: u64,
    ) -> impl Future<Output = Result<Option<TeeItemResult>, BoxError>> + Send;
    /// The chain's latest block number (recorded with each prepared settlement).
    fn block_number(&self) -> impl Future<Output = Result<u64, BoxError>> + Send;
}

/// Tag that starts the requests-hash preimage.
pub const REQUESTS_HASH_TAG: &[u8] = b"zg-compute/requests/v1\0";

/// `requestsHash` of a settlement: keccak256 of the tag, the `u64` count, then per request its
/// request hash, response hash, fee (32 bytes), prompt and completion tokens and time (`u64` each).
/// Every field has a fixed width after the count prefix, so two different lists never collide
/// (0G's concatenation without delimiters could).
pub fn requests_hash(requests: &[PendingRequest]) -> B256 {
    let mut buf = Vec::with_capacity(requests.len().saturating_mul(120).saturating_add(40));
    buf.extend_from_slice(REQUESTS_HASH_TAG);
    buf.extend_from_slice(&(requests.len() as u64).to_be_bytes());
    for r in requests {
        buf.extend_from_slice(r.request_hash.as_slice());
        buf.extend_from_slice(r.response_hash.as_slice());
        buf.extend_from_slice(&r.fee.to_be_bytes::<32>());
        buf.extend_from_slice(&r.usage.prompt_tokens.to_be_bytes());
        buf.extend_from_slice(&r.usage.completion_tokens.to_be_bytes());
        buf.extend_from_slice(&r.created_ms.to_be_bytes());
    }
    keccak256(&buf)
}

/// Settler policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlerConfig {
    /// Customers per transaction (≤ [`MAX_USERS_PER_TX`]).
    pub max_users_per_tx: usize,
    /// Settle a customer once its unsettled fees reach this.
    pub unsettled_threshold: U256,
}

impl Default for SettlerConfig {
    fn default() -> Self {
        Self {
            max_users_per_tx: MAX_USERS_PER_TX,
            unsettled_threshold: U256::from(1_000_000_000_000_000u64),
        }
    }
}

/// One settled (or refused) customer in a [`SettleReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledItem {
    /// The customer.
    pub user: Address,
    /// The mode.
    pub mode: SettlementMode,
    /// Amount actually paid to the provider by this settlement.
    pub paid: U256,
    /// Final state.
    pub state: SettlementState,
}

/// What a settlement round did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SettleReport {
    /// Items resolved.
    pub items: Vec<SettledItem>,
    /// Transactions sent.
    pub tx_hashes: Vec<B256>,
    /// Customers skipped, with the reason.
    pub skipped: Vec<(Address, String)>,
}

impl SettleReport {
    /// Total paid to the provider in this round.
    pub fn total_paid(&self) -> U256 {
        self.items
            .iter()
            .fold(U256::ZERO, |a, i| a.saturating_add(i.paid))
    }
}

/// A TEE-mode item built and signed, with the rows it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeeBatchItem {
    /// The signed payload.
    pub item: TeeItem,
    /// Ledger row ids covered.
    pub request_ids: Vec<u64>,
}

/// Builds and signs one TEE settlement item over the longest prefix of `rows` whose fees fit in
/// `budget` (`None` if not even the first fits).
pub fn build_tee_item(
    ledger: &Ledger,
    tee: &EthSigner,
    user: Address,
    rows: &[PendingRequest],
    budget: U256,
    nonce: U256,
) -> Result<Option<TeeBatchItem>> {
    let mut total = U256::ZERO;
    let mut n = 0usize;
    for r in rows {
        match total.checked_add(r.fee) {
            Some(t) if t <= budget => {
                total = t;
                n = n.saturating_add(1);
            }
            _ => break,
        }
    }
    let chosen = rows.get(..n).unwrap_or_default();
    if chosen.is_empty() {
        return Ok(None);
    }
    let rh = requests_hash(chosen);
    let msg = TEESettlement {
        requestsHash: rh,
        nonce,
        provider: ledger.provider(),
        user,
        totalFee: total,
    };
    let sig = tee.sign_hash(&ledger.domains().settlement_hash(&msg))?;
    Ok(Some(TeeBatchItem {
        item: TeeItem {
            user,
            provider: ledger.provider(),
            total_fee: total,
            requests_hash: rh,
            nonce,
            signature: Bytes::from(sig.as_bytes().to_vec()),
        },
        request_ids: chosen.iter().map(|r| r.id).collect(),
    }))
}

/// `user`'s item in a mined settlement transaction (one item per customer per transaction).
fn receipt_result(result: &TxResult, user: Address) -> Option<TeeItemResult> {
    if !result.success {
        return None;
    }
    result
        .tee_results
        .iter()
        .find(|(u, _)| *u == user)
        .map(|(_, r)| *r)
}

/// Settles the ledger's fees on chain through a [`SettlementChain`].
#[derive(Debug)]
pub struct Settler<C> {
    ledger: Ledger,
    chain: C,
    tee: EthSigner,
    config: SettlerConfig,
}

fn chain_err(op: &'static str) -> impl FnOnce(BoxError) -> Error {
    move |e| Error::chain(op, e)
}

impl<C: SettlementChain> Settler<C> {
    /// A settler signing TEE settlements with `tee` (the registered `teeSignerAddress`).
    pub fn new(ledger: Ledger, chain: C, tee: EthSigner, config: SettlerConfig) -> Result<Self> {
        if config.max_users_per_tx == 0 || config.max_users_per_tx > MAX_USERS_PER_TX {
            return Err(Error::Config {
                field: "max_users_per_tx",
                value: config.max_users_per_tx.to_string(),
                fix: "use 1..=50 (the contract's batch limit)",
            });
        }
        Ok(Self {
            ledger,
            chain,
            tee,
            config,
        })
    }

    /// The chain adapter.
    pub fn chain(&self) -> &C {
        &self.chain
    }

    /// Finishes every settlement a previous run left open. Call at start-up, before settling.
    pub async fn reconcile(&self, now_ms: u64) -> Result<SettleReport> {
        let _ = now_ms;
        let mut report = SettleReport::default();
        for rec in self.ledger.open_settlements().await? {
            let item = match rec.mode {
                SettlementMode::Tee => self.reconcile_tee(&rec, &mut report).await,
                SettlementMode::Voucher => self.reconcile_voucher(&rec, &mut report).await,
            };
            match item {
                Ok(item) => report.items.push(item),
                Err(e @ Error::SettlementUnresolved { .. }) => {
                    tracing::warn!(user = %rec.user, nonce = %rec.nonce, "{e}");
                    report.skipped.push((rec.user, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    async fn reconcile_tee(&self, rec: &SettlementRecord, report: &mut SettleReport) -> Result<SettledItem> {
        let acct = self
            .chain
            .account(rec.user)
            .await
            .map_err(chain_err("getAccount"))?;
        if acct.nonce < rec.nonce {
            // Not applied (yet): send the identical payload again. If an earlier copy is still in
            // flight, whichever lands second fails the nonce check and pays nothing.
            let item = TeeItem {
                user: rec.user,
                provider: self.ledger.provider(),
                total_fee: rec.amount,
                requests_hash: rec.requests_hash,
                nonce: rec.nonce,
                signature: Bytes::from(rec.signature.clone()),
            };
            let tx = self
                .chain
                .submit_tee(std::slice::from_ref(&item))
                .await
                .map_err(chain_err("settleFeesWithTEE"))?;
            report.tx_hashes.push(tx);
            self.ledger.mark_sent(&[rec.id], tx).await?;
            let result = self
                .chain
                .wait_receipt(tx)
                .await
                .map_err(chain_err("wait receipt"))?;
            return self.resolve_tee(rec, receipt_result(&result, rec.user)).await;
        }
        self.resolve_tee(rec, None).await
    }

    /// Decides a TEE settlement from the chain: applied iff the account nonce reached its nonce.
    async fn resolve_tee(
        &self,
        rec: &SettlementRecord,
        from_receipt: Option<TeeItemResult>,
    ) -> Result<SettledItem> {
        let acct = self
            .chain
            .account(rec.user)
            .await
            .map_err(chain_err("getAccount"))?;
        let paid = if acct.nonce >= rec.nonce {
            let mut res = from_receipt.filter(|r| r.status <= 1);
            // After a crash: the receipt of the transaction recorded as carrying it, if any...
            if res.is_none()
                && let Some(tx) = rec.tx_hash
            {
                let result = self
                    .chain
                    .wait_receipt(tx)
                    .await
                    .map_err(chain_err("wait receipt"))?;
                res = receipt_result(&result, rec.user).filter(|r| r.status <= 1);
            }
            // ...else the chain's events (the hash was lost, or another copy of the payload applied).
            if res.is_none() {
                res = self
                    .chain
                    .find_tee_result(rec.user, rec.nonce, rec.from_block)
                    .await
                    .map_err(chain_err("find settlement"))?;
            }
            // Without the item's result the amount paid is unknown (a partial pays less than
            // `totalFee`): leave the settlement open rather than book a guess.
            let res = res.ok_or(Error::SettlementUnresolved {
                user: rec.user,
                nonce: rec.nonce,
            })?;
            Some(rec.amount.saturating_sub(res.unsettled))
        } else {
            None
        };
        self.ledger.finish_tee_settlement(rec, paid).await?;
        self.ledger.set_chain_account(rec.user, acct)?;
        Ok(SettledItem {
            user: rec.user,
            mode: SettlementMode::Tee,
            paid: paid.unwrap_or_default(),
            state: if paid.is_some() {
                SettlementState::Done
            } else {
                SettlementState::Failed
            },
        })
    }

    async fn reconcile_voucher(
        &self,
        rec: &SettlementRecord,
        report: &mut SettleReport,
    ) -> Result<SettledItem> {
        let vs = self
            .chain
            .voucher_state(rec.user)
            .await
            .map_err(chain_err("voucherState"))?;
        if vs.nonce < rec.nonce {
            let signature = parse_signature_bytes(&rec.signature)?;
            let v = SignedVoucher {
                voucher: Voucher {
                    user: rec.user,
                    provider: self.ledger.provider(),
                    cumulativeAmount: rec.amount,
                    nonce: rec.nonce,
                },
                signature,
            };
            let tx = self
                .chain
                .submit_vouchers(std::slice::from_ref(&v))
                .await
                .map_err(chain_err("settleVouchers"))?;
            report.tx_hashes.push(tx);
            self.ledger.mark_sent(&[rec.id], tx).await?;
            self.chain
                .wait_receipt(tx)
                .await
                .map_err(chain_err("wait receipt"))?;
        }
        self.resolve_voucher(rec.user, Some(rec)).await
    }

    async fn resolve_voucher(&self, user: Address, rec: Option<&SettlementRecord>) -> Result<SettledItem> {
        let vs = self
            .chain
            .voucher_state(user)
            .await
            .map_err(chain_err("voucherState"))?;
        let (_, before) = self.ledger.native_totals(user);
        self.ledger.finish_voucher_settlement(user, rec, vs.paid).await?;
        let applied = rec.map(|r| vs.nonce >= r.nonce).unwrap_or(true);
        Ok(SettledItem {
            user,
            mode: SettlementMode::Voucher,
            paid: vs.paid.saturating_sub(before),
            state: if applied {
                SettlementState::Done
            } else {
                SettlementState::Failed
            },
        })
    }

    /// Records `tx` on the prepared settlement rows before waiting (so a crash from here on is reconciled from
    /// the chain), then waits for its receipt. A reverted transaction applied nothing: the rows stay open and
    /// the next reconcile re-sends them.
    async fn record_and_wait(
        &self,
        records: &[SettlementRecord],
        tx: B256,
        report: &mut SettleReport,
    ) -> Result<TxResult> {
        report.tx_hashes.push(tx);
        let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
        self.ledger.mark_sent(&ids, tx).await?;
        let result = self
            .chain
            .wait_receipt(tx)
            .await
            .map_err(chain_err("wait receipt"))?;
        if !result.success {
            return Err(Error::TxReverted { tx_hash: tx });
        }
        Ok(result)
    }

    /// Settles every customer whose unsettled fees reach the threshold or who has a refund pending
    /// (the refund lock would otherwise let them withdraw before paying); `force` settles all.
    ///
    /// A refund request shows only on chain, and a customer who asks for one need not send another request,
    /// so the account of every customer below the threshold is read from the chain here (not from the cache
    /// that admissions refresh).
    pub async fn settle_due(&self, now_ms: u64, force: bool) -> Result<SettleReport> {
        let mut due = Vec::new();
        for (u, amount) in self.ledger.users_with_unsettled() {
            if force || amount >= self.config.unsettled_threshold || self.refund_pending(u).await {
                due.push(u);
            }
        }
        self.settle_users(&due, now_ms).await
    }

    /// Whether `user` has asked for a refund, read from chain now: the cached account is only refreshed when
    /// the customer sends traffic, and a customer who stops sending and calls `retrieveFund` would otherwise
    /// collect the whole sub-account when the lock expires, unpaid fees included (found by running the
    /// official 0G CLI's `retrieve-fund`). One `getAccount` per customer with unsettled fees per round; if the
    /// chain cannot be read, the cached account decides.
    async fn refund_pending(&self, user: Address) -> bool {
        match self.chain.account(user).await {
            Ok(acct) => {
                let pending = !acct.pending_refund.is_zero();
                if let Err(e) = self.ledger.set_chain_account(user, acct) {
                    tracing::warn!(%user, error = %e, "cannot record the account read for settlement");
                }
                pending
            }
            Err(e) => {
                tracing::warn!(%user, error = %e, "getAccount failed; using the cached account to decide settlement");
                self.ledger
                    .chain_account(user)
                    .is_some_and(|c| !c.pending_refund.is_zero())
            }
        }
    }

    /// Settles the given customers in both modes.
    pub async fn settle_users(&self, users: &[Address], now_ms: u64) -> Result<SettleReport> {
        let mut report = SettleReport::default();
        let mut tee_users = Vec::new();
        let mut voucher_users = Vec::new();
        for &u in users {
            let (metered, paid) = self.ledger.native_totals(u);
            if metered > paid && self.ledger.latest_voucher(u).is_some() {
                voucher_users.push(u);
            }
            if !self.ledger.pending_session_requests(u).await?.is_empty() {
                tee_users.push(u);
            }
        }
        for chunk in tee_users.chunks(self.config.max_users_per_tx) {
            self.settle_tee_batch(chunk, now_ms, &mut report).await?;
        }
        for chunk in voucher_users.chunks(self.config.max_users_per_tx) {
            self.settle_voucher_batch(chunk, now_ms, &mut report).await?;
        }
        Ok(report)
    }

    /// Builds and signs (without storing or sending) TEE items for `users`, reading each account.
    pub async fn build_tee_batch(
        &self,
        users: &[Address],
    ) -> Result<(Vec<TeeBatchItem>, Vec<(Address, String)>)> {
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        for &user in users {
            if self.ledger.has_open_settlement(user) {
                skipped.push((user, "a settlement is still open; reconcile first".to_owned()));
                continue;
            }
            let acct = self.chain.account(user).await.map_err(chain_err("getAccount"))?;
            self.ledger.set_chain_account(user, acct)?;
            let rows = self.ledger.pending_session_requests(user).await?;
            // The ledger's counter is advanced when each item is prepared; items built in one batch
            // take consecutive nonces.
            let nonce = self
                .ledger
                .next_settlement_nonce(acct.nonce)
                .saturating_add(U256::from(items.len()));
            match build_tee_item(&self.ledger, &self.tee, user, &rows, acct.balance, nonce)? {
                Some(i) => items.push(i),
                None => skipped.push((user, "balance covers none of the pending requests".to_owned())),
            }
        }
        Ok((items, skipped))
    }

    async fn settle_tee_batch(
        &self,
        users: &[Address],
        now_ms: u64,
        report: &mut SettleReport,
    ) -> Result<()> {
        let (mut items, skipped) = self.build_tee_batch(users).await?;
        report.skipped.extend(skipped);
        if items.is_empty() {
            return Ok(());
        }
        // Preview; a partial item is re-signed over the subset that fits (same nonce: nothing was sent).
        let payload: Vec<TeeItem> = items.iter().map(|i| i.item.clone()).collect();
        let preview = self
            .chain
            .preview_tee(&payload)
            .await
            .map_err(chain_err("previewSettlementResults"))?;
        let mut kept = Vec::new();
        for (i, res) in items.drain(..).zip(preview) {
            match res.status {
                0 => kept.push(i),
                1 => {
                    let rows = self.ledger.pending_session_requests(i.item.user).await?;
                    let budget = i.item.total_fee.saturating_sub(res.unsettled);
                    match build_tee_item(&self.ledger, &self.tee, i.item.user, &rows, budget, i.item.nonce)? {
                        Some(smaller) => kept.push(smaller),
                        None => report
                            .skipped
                            .push((i.item.user, "balance covers none of the requests".into())),
                    }
                }
                s => {
                    tracing::warn!(user = %i.item.user, status = s, "settlement preview refused");
                    report.skipped.push((i.item.user, format!("preview status {s}")));
                }
            }
        }
        if kept.is_empty() {
            return Ok(());
        }
        let from_block = self
            .chain
            .block_number()
            .await
            .map_err(chain_err("eth_blockNumber"))?;
        let mut records = Vec::new();
        for i in &kept {
            let rec = SettlementRecord {
                id: 0,
                mode: SettlementMode::Tee,
                user: i.item.user,
                nonce: i.item.nonce,
                amount: i.item.total_fee,
                requests_hash: i.item.requests_hash,
                signature: i.item.signature.to_vec(),
                state: SettlementState::Prepared,
                tx_hash: None,
                from_block,
            };
            records.push(
                self.ledger
                    .prepare_settlement(rec, i.request_ids.clone(), now_ms)
                    .await?,
            );
        }
        let payload: Vec<TeeItem> = kept.iter().map(|i| i.item.clone()).collect();
        let tx = self
            .chain
            .submit_tee(&payload)
            .await
            .map_err(chain_err("settleFeesWithTEE"))?;
        let result = self.record_and_wait(&records, tx, report).await?;
        for rec in &records {
            let from_receipt = receipt_result(&result, rec.user);
            match self.resolve_tee(rec, from_receipt).await {
                Ok(item) => report.items.push(item),
                Err(e @ Error::SettlementUnresolved { .. }) => {
                    tracing::warn!(user = %rec.user, nonce = %rec.nonce, "{e}");
                    report.skipped.push((rec.user, e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn settle_voucher_batch(
        &self,
        users: &[Address],
        now_ms: u64,
        report: &mut SettleReport,
    ) -> Result<()> {
        let mut vouchers = Vec::new();
        let mut records = Vec::new();
        let mut from_block = None;
        for &user in users {
            let Some(v) = self.ledger.latest_voucher(user) else {
                continue;
            };
            let vs = self
                .chain
                .voucher_state(user)
                .await
                .map_err(chain_err("voucherState"))?;
            if vs.nonce >= v.voucher.nonce || v.voucher.cumulativeAmount <= vs.paid {
                // Already applied (or nothing new): just catch the local state up.
                report.items.push(self.resolve_voucher(user, None).await?);
                continue;
            }
            let from_block = match from_block {
                Some(b) => b,
                None => {
                    let b = self
                        .chain
                        .block_number()
                        .await
                        .map_err(chain_err("eth_blockNumber"))?;
                    *from_block.insert(b)
                }
            };
            let rec = SettlementRecord {
                id: 0,
                mode: SettlementMode::Voucher,
                user,
                nonce: v.voucher.nonce,
                amount: v.voucher.cumulativeAmount,
                requests_hash: B256::ZERO,
                signature: v.signature.as_bytes().to_vec(),
                state: SettlementState::Prepared,
                tx_hash: None,
                from_block,
            };
            records.push(self.ledger.prepare_settlement(rec, Vec::new(), now_ms).await?);
            vouchers.push(v);
        }
        if vouchers.is_empty() {
            return Ok(());
        }
        let tx = self
            .chain
            .submit_vouchers(&vouchers)
            .await
            .map_err(chain_err("settleVouchers"))?;
        self.record_and_wait(&records, tx, report).await?;
        for rec in &records {
            report
                .items
                .push(self.resolve_voucher(rec.user, Some(rec)).await?);
        }
        Ok(())
    }
}
