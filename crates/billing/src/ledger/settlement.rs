//! Settlement bookkeeping: which customers owe what, the signed payloads stored before they are sent, and
//! their resolution from the chain. SQL reads run on the reader thread (never on the caller's runtime).

use std::sync::atomic::Ordering;

use alloy_primitives::{Address, B256, U256};

use super::Ledger;
use super::store::{self, Op};
use super::types::{PendingRequest, SettlementMode, SettlementRecord, SettlementState};
use crate::error::{Error, Result};

impl Ledger {
    /// Customers with unsettled fees, and how much each owes.
    pub fn users_with_unsettled(&self) -> Vec<(Address, U256)> {
        let Ok(map) = self.inner.users.lock() else {
            return Vec::new();
        };
        let mut out: Vec<_> = map
            .iter()
            .filter_map(|(a, s)| s.lock().ok().map(|s| (*a, s.unsettled())))
            .filter(|(_, u)| !u.is_zero())
            .collect();
        out.sort();
        out
    }

    /// A customer's session requests not in any open or finished settlement, oldest first.
    pub async fn pending_session_requests(&self, user: Address) -> Result<Vec<PendingRequest>> {
        self.read("select pending requests", move |c| {
            store::pending_session_requests(c, user)
        })
        .await
    }

    /// Settlements prepared or sent but not resolved (what a restart must reconcile).
    pub async fn open_settlements(&self) -> Result<Vec<SettlementRecord>> {
        self.read("select open settlements", store::open_settlements)
            .await
    }

    /// `true` while a TEE settlement of this customer is prepared or sent.
    pub fn has_open_settlement(&self, user: Address) -> bool {
        self.existing(user)
            .and_then(|u| u.lock().ok().map(|s| s.open_settlement))
            .unwrap_or(false)
    }

    /// The next TEE settlement nonce: above both the persistent counter and the on-chain nonce.
    /// Reserved only when [`Ledger::prepare_settlement`] commits.
    pub fn next_settlement_nonce(&self, chain_nonce: U256) -> U256 {
        let counter = self
            .inner
            .settlement_counter
            .lock()
            .map(|c| *c)
            .unwrap_or(U256::MAX);
        counter.max(chain_nonce).saturating_add(U256::from(1))
    }

    /// Durably stores a signed settlement (before it is sent) and assigns its requests to it.
    pub async fn prepare_settlement(
        &self,
        mut record: SettlementRecord,
        request_ids: Vec<u64>,
        now_ms: u64,
    ) -> Result<SettlementRecord> {
        record.id = self.inner.next_settlement.fetch_add(1, Ordering::Relaxed);
        record.state = SettlementState::Prepared;
        let rx = {
            let u = self.user(record.user)?;
            let mut s = u.lock().map_err(|_| self.poisoned_err())?;
            let mut counter = self
                .inner
                .settlement_counter
                .lock()
                .map_err(|_| self.poisoned_err())?;
            if record.mode == SettlementMode::Tee {
                if s.open_settlement {
                    return Err(Error::Config {
                        field: "settlement",
                        value: record.user.to_string(),
                        fix: "reconcile the open settlement of this customer first",
                    });
                }
                s.open_settlement = true;
                *counter = (*counter).max(record.nonce);
            }
            self.enqueue(vec![Op::PrepareSettlement {
                record: record.clone(),
                request_ids,
                counter: *counter,
                created_ms: now_ms,
            }])?
        };
        self.committed(rx).await?;
        Ok(record)
    }

    /// Records the transaction that carries these settlements.
    pub async fn mark_sent(&self, ids: &[u64], tx_hash: B256) -> Result<()> {
        let rx = self.enqueue(vec![Op::MarkSent {
            ids: ids.to_vec(),
            tx_hash,
        }])?;
        self.committed(rx).await
    }

    /// Resolves a TEE settlement: `paid = Some(amount)` when applied on chain (rows become settled,
    /// the cached balance drops by `amount`), `None` when rejected (rows are free again).
    ///
    /// A partial payment (`amount` below the settlement's total) frees its newest requests whose fees
    /// together fit in the unpaid part, so a later settlement claims them again; the customer never pays
    /// twice for a request, and the provider forgoes less than one request's fee.
    pub async fn finish_tee_settlement(&self, record: &SettlementRecord, paid: Option<U256>) -> Result<()> {
        // The settlement's rows belong to it alone until this resolves, so they can be read before the lock.
        let freed = match paid {
            Some(p) if p < record.amount => Some(
                self.unpaid_suffix(record, record.amount.saturating_sub(p))
                    .await?,
            ),
            _ => None,
        };
        let rx = {
            let u = self.user(record.user)?;
            let mut s = u.lock().map_err(|_| self.poisoned_err())?;
            let mut ops = Vec::new();
            let (state, paid) = match paid {
                Some(p) => {
                    let mut settled = record.amount;
                    if let Some((freed, freed_fees)) = freed {
                        settled = settled.saturating_sub(freed_fees);
                        if !freed.is_empty() {
                            tracing::warn!(user = %record.user, nonce = %record.nonce, %p, freed = freed.len(),
                                "partial TEE settlement: unpaid requests are pending again");
                            ops.push(Op::FreeRequests(freed));
                        }
                    }
                    s.session_unsettled = s.session_unsettled.saturating_sub(settled);
                    if let Some(c) = s.chain.as_mut() {
                        c.balance = c.balance.saturating_sub(p);
                        c.nonce = c.nonce.max(record.nonce);
                    }
                    (SettlementState::Done, p)
                }
                None => (SettlementState::Failed, U256::ZERO),
            };
            s.open_settlement = false;
            ops.insert(
                0,
                Op::FinishSettlement {
                    id: record.id,
                    state,
                    paid,
                },
            );
            self.enqueue(ops)?
        };
        self.committed(rx).await
    }

    /// The newest requests of a settlement whose fees together fit in `unpaid`, and their total.
    async fn unpaid_suffix(&self, record: &SettlementRecord, unpaid: U256) -> Result<(Vec<u64>, U256)> {
        let id = record.id;
        let rows = self
            .read("select settlement rows", move |c| store::settlement_rows(c, id))
            .await?;
        let mut freed = Vec::new();
        let mut total = U256::ZERO;
        for (id, fee) in rows {
            match total.checked_add(fee) {
                Some(t) if t <= unpaid => {
                    total = t;
                    freed.push(id);
                }
                _ => break,
            }
        }
        Ok((freed, total))
    }

    /// Resolves a voucher settlement with the customer's on-chain paid total (from
    /// `voucher_state`); `record` may be `None` when reconciling without a local record.
    pub async fn finish_voucher_settlement(
        &self,
        user: Address,
        record: Option<&SettlementRecord>,
        paid_total: U256,
    ) -> Result<()> {
        let rx = {
            let u = self.user(user)?;
            let mut s = u.lock().map_err(|_| self.poisoned_err())?;
            let delta = paid_total.saturating_sub(s.voucher_paid);
            if paid_total > s.voucher_paid {
                s.voucher_paid = paid_total;
                if let Some(c) = s.chain.as_mut() {
                    c.balance = c.balance.saturating_sub(delta);
                }
            }
            let mut ops = vec![Op::User(s.row(user))];
            if let Some(r) = record {
                let applied = paid_total >= r.amount;
                ops.push(Op::FinishSettlement {
                    id: r.id,
                    state: if applied {
                        SettlementState::Done
                    } else {
                        SettlementState::Failed
                    },
                    paid: delta,
                });
            }
            self.enqueue(ops)?
        };
        self.committed(rx).await
    }
}
