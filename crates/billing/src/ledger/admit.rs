//! Admission (native signed requests and 0G session tokens), release, and completion of served requests.
//!
//! A native request is checked in two steps so a provider can refuse strangers before it reads their body or
//! asks the chain about them: [`Ledger::verify_native`] (signatures only, no state, no I/O), then
//! [`Ledger::admit_verified`] (body hash, fee cap against the request's worst-case bound, nonce window, voucher,
//! balance; one durable commit).

use std::sync::atomic::Ordering;

use alloy_primitives::U256;

use super::Ledger;
use super::store::{Op, RequestRow};
use super::types::{Admission, Completion, RequestKind};
use crate::error::{Error, Result};
use crate::native::{Request, SignedRequest};
use crate::token::SessionToken;

/// The largest voucher nonce the contract accepts (`settleVouchers` refuses `nonce > type(uint128).max`).
const MAX_VOUCHER_NONCE: u128 = u128::MAX;

/// A native request whose signature (and voucher) verified for this provider, with its voucher in the low-s
/// form the contract accepts. Admit it with [`Ledger::admit_verified`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest(SignedRequest);

impl VerifiedRequest {
    /// The signed request.
    pub fn request(&self) -> &Request {
        &self.0.request
    }

    /// The whole envelope (request, signature, voucher).
    pub fn signed(&self) -> &SignedRequest {
        &self.0
    }
}

impl Ledger {
    /// Checks a native request without touching any state: provider, the customer's signature (cached keys),
    /// and the voucher (same user and provider, a nonce the contract accepts, the customer's signature).
    /// A voucher's signature is kept in its low-s form: the contract refuses high-s signatures, so a voucher
    /// stored as received could never be settled.
    pub fn verify_native(&self, req: &SignedRequest) -> Result<VerifiedRequest> {
        let provider = self.provider();
        let r = &req.request;
        if r.provider != provider {
            return Err(Error::WrongProvider {
                expected: provider,
                got: r.provider,
            });
        }
        let domains = &self.inner.config.domains;
        domains.verify_request(&self.inner.keys, req)?;
        let mut verified = req.clone();
        if let Some(v) = verified.voucher.as_mut() {
            if v.voucher.user != r.user {
                return Err(Error::VoucherUserMismatch {
                    request_user: r.user,
                    voucher_user: v.voucher.user,
                });
            }
            if v.voucher.provider != provider {
                return Err(Error::WrongProvider {
                    expected: provider,
                    got: v.voucher.provider,
                });
            }
            if v.voucher.nonce > U256::from(MAX_VOUCHER_NONCE) {
                return Err(Error::VoucherNonceTooLarge {
                    user: r.user,
                    nonce: v.voucher.nonce,
                });
            }
            domains.verify_voucher(&self.inner.keys, v)?;
            v.signature = v.signature.normalized_s();
        }
        Ok(VerifiedRequest(verified))
    }

    /// Admits a native signed request: [`Ledger::verify_native`], then [`Ledger::admit_verified`].
    pub async fn admit_native(
        &self,
        req: &SignedRequest,
        body: &[u8],
        bound: U256,
        now_ms: u64,
    ) -> Result<Admission> {
        let verified = self.verify_native(req)?;
        self.admit_verified(&verified, body, bound, now_ms).await
    }

    /// Admits a verified native request: the body must hash to the signed `bodyHash`, the signed fee cap must
    /// cover `bound` (the provider's worst-case fee for this body, [`crate::worst_case_fee`]: a smaller cap is
    /// free inference, since nothing above the cap can be billed), then nonce window, voucher and balance.
    /// Durably records the nonce and voucher (one group commit) and reserves the fee cap in memory. Any
    /// rejection leaves the ledger untouched. `now_ms` is unused today (kept for time-bound checks).
    pub async fn admit_verified(
        &self,
        req: &VerifiedRequest,
        body: &[u8],
        bound: U256,
        now_ms: u64,
    ) -> Result<Admission> {
        let _ = now_ms;
        let signed = &req.0;
        let r = &signed.request;
        signed.check_body(body)?;
        let user = r.user;
        if r.feeCap < bound {
            return Err(Error::FeeCapBelowBound {
                user,
                fee_cap: r.feeCap,
                bound,
            });
        }
        let id = self.inner.next_reservation.fetch_add(1, Ordering::Relaxed);
        let rx = {
            let u = self.existing(user).ok_or(Error::UnknownAccount { user })?;
            let mut s = u.lock().map_err(|_| self.poisoned_err())?;
            s.check_nonce(user, r.nonce)?;
            let new_voucher = match (&signed.voucher, &s.voucher) {
                (Some(v), Some(old)) if v.voucher.nonce > old.voucher.nonce => {
                    if v.voucher.cumulativeAmount < old.voucher.cumulativeAmount {
                        return Err(Error::VoucherRegressed {
                            user,
                            previous: old.voucher.cumulativeAmount,
                            offered: v.voucher.cumulativeAmount,
                        });
                    }
                    Some(v.clone())
                }
                (Some(v), None) => Some(v.clone()),
                _ => None, // no voucher, or a stale one that arrived out of order
            };
            let vouched = new_voucher
                .as_ref()
                .or(s.voucher.as_ref())
                .map(|v| v.voucher.cumulativeAmount)
                .unwrap_or_default();
            if s.metered_native.saturating_sub(vouched) > self.inner.config.max_unvouchered {
                return Err(Error::VoucherBehind {
                    user,
                    owed: s.metered_native,
                    vouched,
                });
            }
            let available = s.available().ok_or(Error::UnknownAccount { user })?;
            if r.feeCap > available {
                return Err(Error::InsufficientBalance {
                    user,
                    needed: r.feeCap,
                    available,
                });
            }
            // All checks passed: mutate, then enqueue under the lock.
            s.record_nonce(r.nonce);
            if let Some(v) = new_voucher {
                s.voucher = Some(v);
            }
            s.reserved = s.reserved.saturating_add(r.feeCap);
            s.reservations.insert(id, r.feeCap);
            // Only the nonce window and voucher are durable; the reservation lives in memory (a
            // restart ends every in-flight request, so its reservation would be dropped anyway).
            self.enqueue(vec![Op::User(s.row(user))])?
        };
        self.committed(rx).await?;
        Ok(Admission {
            id,
            user,
            fee_cap: r.feeCap,
            kind: RequestKind::Native,
            nonce: Some(r.nonce),
        })
    }

    /// Admits a request authenticated by a (verified) 0G session token, reserving `fee_cap`
    /// (the provider's worst-case bound of this request, [`crate::worst_case_fee`]: also the most it can be
    /// billed). The reservation is in memory only, so this never waits for a disk commit.
    pub async fn admit_session(&self, token: &SessionToken, fee_cap: U256, now_ms: u64) -> Result<Admission> {
        let user = token.user();
        let id = self.inner.next_reservation.fetch_add(1, Ordering::Relaxed);
        {
            let u = self.existing(user).ok_or(Error::UnknownAccount { user })?;
            let mut s = u.lock().map_err(|_| self.poisoned_err())?;
            let chain = s.chain.ok_or(Error::UnknownAccount { user })?;
            // Session requests settle only through `settleFeesWithTEE`, which pays nothing for a customer who
            // has not acknowledged the current signer: refuse before anything is served.
            if !chain.tee_signer_acknowledged {
                return Err(Error::TeeSignerNotAcknowledged { user });
            }
            let available = s.available().ok_or(Error::UnknownAccount { user })?;
            if fee_cap > available {
                return Err(Error::InsufficientBalance {
                    user,
                    needed: fee_cap,
                    available,
                });
            }
            if self.inner.poisoned.load(Ordering::SeqCst) {
                return Err(self.poisoned_err());
            }
            // Nothing durable: a session admission is only an in-memory reservation (a restart ends
            // every in-flight request, so it would be dropped anyway). No commit, no fsync wait.
            s.reserved = s.reserved.saturating_add(fee_cap);
            s.reservations.insert(id, fee_cap);
        }
        let _ = now_ms;
        Ok(Admission {
            id,
            user,
            fee_cap,
            kind: RequestKind::Session,
            nonce: None,
        })
    }

    /// Releases an admission whose request was not served (upstream failure): nothing is billed.
    pub async fn release(&self, admission: Admission) -> Result<()> {
        let u = self
            .existing(admission.user)
            .ok_or(Error::ReservationUnknown(admission.id))?;
        let mut s = u.lock().map_err(|_| self.poisoned_err())?;
        let amount = s
            .reservations
            .remove(&admission.id)
            .ok_or(Error::ReservationUnknown(admission.id))?;
        s.reserved = s.reserved.saturating_sub(amount);
        Ok(())
    }

    /// Records a served request, its receipts and the release of its reservation in one commit. Returns the
    /// ledger row id, or `None` when the upstream reported no usage (not billed; its receipts are still stored).
    /// A request is billed at most its admission's cap (the signed fee cap, or the session bound), as a second
    /// line behind [`crate::billed_fee`].
    pub async fn complete(
        &self,
        admission: Admission,
        mut done: Completion,
        now_ms: u64,
    ) -> Result<Option<u64>> {
        let user = admission.user;
        let (rx, row_id) = {
            let u = self
                .existing(user)
                .ok_or(Error::ReservationUnknown(admission.id))?;
            let mut s = u.lock().map_err(|_| self.poisoned_err())?;
            let amount = s
                .reservations
                .remove(&admission.id)
                .ok_or(Error::ReservationUnknown(admission.id))?;
            s.reserved = s.reserved.saturating_sub(amount);
            let mut ops = Vec::new();
            let mut row_id = None;
            if let Some(record) = done.receipt.take() {
                ops.push(Op::InsertReceipt {
                    record,
                    created_ms: now_ms,
                });
            }
            if let Some(usage) = done.usage {
                if done.fee > admission.fee_cap {
                    tracing::warn!(%user, fee = %done.fee, cap = %admission.fee_cap, "fee above the admitted cap; billing the cap");
                    done.fee = admission.fee_cap;
                }
                match admission.kind {
                    RequestKind::Session => {
                        s.session_unsettled = s.session_unsettled.saturating_add(done.fee)
                    }
                    RequestKind::Native => {
                        s.metered_native = s.metered_native.saturating_add(done.fee);
                        ops.push(Op::User(s.row(user)));
                    }
                }
                let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
                row_id = Some(id);
                ops.push(Op::InsertRequest(Box::new(RequestRow {
                    id,
                    user,
                    kind: admission.kind,
                    nonce: admission.nonce,
                    completion: done,
                    usage,
                    created_ms: now_ms,
                })));
            }
            // Not billed and nothing to store: the reservation was only in memory.
            let rx = if ops.is_empty() {
                None
            } else {
                Some(self.enqueue(ops)?)
            };
            (rx, row_id)
        };
        if let Some(rx) = rx {
            self.committed(rx).await?;
        }
        Ok(row_id)
    }
}
