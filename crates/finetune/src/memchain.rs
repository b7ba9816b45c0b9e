//! An in-memory FineTuningServing with the contract's settlement rules, and fault injection: a call can fail
//! before it takes effect, or take effect and still report a failure (the "sent, then crashed before the
//! receipt was recorded" case that idempotency must survive).

use std::collections::HashMap;
use std::sync::Mutex;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};

use crate::chain::{DeliverableState, FineTuningChain, Settlement, SettlementDomain, SubAccount};
use crate::error::ChainFailure;

/// A fault to inject into the next call of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Fail without any effect.
    Before(ChainFailure),
    /// Apply the effect, then report this failure (the response was lost).
    After(ChainFailure),
}

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<Address, SubAccount>,
    deliverables: HashMap<(Address, String), DeliverableState>,
    secrets: HashMap<(Address, String), Bytes>,
    faults: HashMap<&'static str, Vec<Fault>>,
    calls: HashMap<&'static str, u64>,
    paid: U256,
    payments: Vec<(Address, String, U256)>,
    tx: u64,
}

/// In-memory FineTuningServing for one provider.
#[derive(Debug)]
pub struct MemChain {
    provider: Address,
    tee_signer: Address,
    domain: SettlementDomain,
    penalty: u64,
    state: Mutex<State>,
}

fn reverted(name: &str) -> ChainFailure {
    ChainFailure::Reverted {
        name: name.into(),
        message: name.into(),
    }
}

impl MemChain {
    /// A chain where `provider` has a service whose TEE signer is `tee_signer`, with `penalty` percent.
    pub fn new(provider: Address, tee_signer: Address, penalty: u64) -> Self {
        Self {
            provider,
            tee_signer,
            domain: SettlementDomain {
                chain_id: 31337,
                contract: Address::repeat_byte(0xf7),
            },
            penalty,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates or replaces a customer's sub-account.
    pub fn set_account(&self, user: Address, balance: U256, acknowledged: bool) {
        let mut s = self.lock();
        let a = s.accounts.entry(user).or_default();
        a.balance = balance;
        a.acknowledged = acknowledged;
    }

    /// The customer acknowledges a deliverable (as `acknowledgeDeliverable` does).
    pub fn acknowledge(&self, user: Address, id: &str) -> Result<(), ChainFailure> {
        let mut s = self.lock();
        let d = s
            .deliverables
            .get_mut(&(user, id.to_owned()))
            .ok_or_else(|| reverted("DeliverableNotExists"))?;
        if d.settled {
            return Err(reverted("CannotAcknowledgeSettledDeliverable"));
        }
        d.acknowledged = true;
        Ok(())
    }

    /// Queues a fault for the next call of `op` (`account`, `deliverable`, `add_deliverable`, `settle`).
    pub fn inject(&self, op: &'static str, fault: Fault) {
        self.lock().faults.entry(op).or_default().push(fault);
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: &'static str) -> u64 {
        self.lock().calls.get(op).copied().unwrap_or(0)
    }

    /// Payments made by settlements: (customer, task id, amount).
    pub fn payments(&self) -> Vec<(Address, String, U256)> {
        self.lock().payments.clone()
    }

    /// The revealed secret of a deliverable (empty when none).
    pub fn secret(&self, user: Address, id: &str) -> Bytes {
        self.lock()
            .secrets
            .get(&(user, id.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Deliverables recorded for `user`.
    pub fn deliverable_count(&self, user: Address) -> usize {
        self.lock()
            .deliverables
            .keys()
            .filter(|(u, _)| *u == user)
            .count()
    }

    fn enter(&self, op: &'static str) -> (Option<Fault>, std::sync::MutexGuard<'_, State>) {
        let mut s = self.lock();
        *s.calls.entry(op).or_default() += 1;
        let f = s
            .faults
            .get_mut(op)
            .and_then(|v| (!v.is_empty()).then(|| v.remove(0)));
        (f, s)
    }

    fn next_tx(s: &mut State) -> B256 {
        s.tx += 1;
        keccak256(s.tx.to_be_bytes())
    }
}

fn recover(digest: &B256, sig: &[u8]) -> Option<Address> {
    let (rs, v) = (sig.get(..64)?, *sig.get(64)?);
    let rec = RecoveryId::from_byte(v.checked_sub(27).unwrap_or(v))?;
    let sig = Signature::from_slice(rs).ok()?;
    let key = VerifyingKey::recover_from_prehash(digest.as_slice(), &sig, rec).ok()?;
    let p = key.to_encoded_point(false);
    Some(Address::from_raw_public_key(p.as_bytes().get(1..)?))
}

impl FineTuningChain for MemChain {
    fn provider(&self) -> Address {
        self.provider
    }

    fn domain(&self) -> SettlementDomain {
        self.domain
    }

    async fn account(&self, user: Address) -> Result<Option<SubAccount>, ChainFailure> {
        let (f, s) = self.enter("account");
        if let Some(Fault::Before(e) | Fault::After(e)) = f {
            return Err(e);
        }
        Ok(s.accounts.get(&user).copied())
    }

    async fn deliverable(&self, user: Address, id: &str) -> Result<Option<DeliverableState>, ChainFailure> {
        let (f, s) = self.enter("deliverable");
        if let Some(Fault::Before(e) | Fault::After(e)) = f {
            return Err(e);
        }
        Ok(s.deliverables.get(&(user, id.to_owned())).cloned())
    }

    async fn add_deliverable(&self, user: Address, id: &str, root: &Bytes) -> Result<B256, ChainFailure> {
        let (f, mut s) = self.enter("add_deliverable");
        if let Some(Fault::Before(e)) = f {
            return Err(e);
        }
        if !s.accounts.contains_key(&user) {
            return Err(reverted("AccountNotExists"));
        }
        let key = (user, id.to_owned());
        if s.deliverables.contains_key(&key) {
            return Err(reverted("DeliverableAlreadyExists"));
        }
        s.deliverables.insert(
            key,
            DeliverableState {
                model_root_hash: root.clone(),
                ..DeliverableState::default()
            },
        );
        let tx = Self::next_tx(&mut s);
        match f {
            Some(Fault::After(e)) => Err(e),
            _ => Ok(tx),
        }
    }

    async fn settle(&self, v: &Settlement) -> Result<B256, ChainFailure> {
        let (f, mut s) = self.enter("settle");
        if let Some(Fault::Before(e)) = f {
            return Err(e);
        }
        let key = (v.user, v.id.clone());
        let acc = *s
            .accounts
            .get(&v.user)
            .ok_or_else(|| reverted("AccountNotExists"))?;
        let d = s
            .deliverables
            .get(&key)
            .cloned()
            .ok_or_else(|| reverted("DeliverableNotExists"))?;
        if d.settled {
            return Err(reverted("DeliverableAlreadySettled"));
        }
        if v.nonce <= acc.nonce {
            return Err(reverted("InvalidVerifierInput"));
        }
        if v.model_root_hash != d.model_root_hash {
            return Err(reverted("InvalidVerifierInput"));
        }
        if d.acknowledged && v.encrypted_secret.is_empty() {
            return Err(reverted("SecretShouldNotBeEmpty"));
        }
        if !d.acknowledged && !v.encrypted_secret.is_empty() {
            return Err(reverted("SecretShouldBeEmpty"));
        }
        if recover(&self.domain.digest(v), &v.signature) != Some(self.tee_signer) {
            return Err(reverted("InvalidVerifierInput"));
        }
        let fee = if d.acknowledged {
            v.task_fee
        } else {
            v.task_fee * U256::from(self.penalty) / U256::from(100)
        };
        if fee > acc.balance {
            return Err(reverted("InsufficientBalance"));
        }
        if let Some(a) = s.accounts.get_mut(&v.user) {
            a.balance -= fee;
            a.nonce = v.nonce;
        }
        if let Some(d) = s.deliverables.get_mut(&key) {
            d.settled = true;
            d.secret_revealed = !v.encrypted_secret.is_empty();
        }
        if d.acknowledged {
            s.secrets.insert(key.clone(), v.encrypted_secret.clone());
        }
        s.paid += fee;
        s.payments.push((v.user, v.id.clone(), fee));
        let tx = Self::next_tx(&mut s);
        match f {
            Some(Fault::After(e)) => Err(e),
            _ => Ok(tx),
        }
    }

    async fn penalty_percentage(&self) -> Result<u64, ChainFailure> {
        Ok(self.penalty)
    }
}
