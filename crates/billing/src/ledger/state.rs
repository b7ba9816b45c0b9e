//! Per-customer state in memory: the serialisation point of nonces, vouchers and fee-cap reservations.
//! Every admission of one customer takes this state's lock, so concurrent requests never race on a nonce
//! or reserve the same balance twice.

use std::collections::HashMap;

use alloy_primitives::aliases::U1024;
use alloy_primitives::{Address, U256};

use super::store::UserRow;
use super::types::{ChainAccount, NONCE_WINDOW};
use crate::error::{Error, Result};
use crate::native::SignedVoucher;

#[derive(Debug, Default)]
pub(super) struct UserState {
    pub(super) chain: Option<ChainAccount>,
    pub(super) nonce_high: Option<U256>,
    /// Bit i set = nonce `nonce_high - i` used.
    pub(super) window: U1024,
    pub(super) reserved: U256,
    pub(super) reservations: HashMap<u64, U256>,
    pub(super) session_unsettled: U256,
    pub(super) metered_native: U256,
    pub(super) voucher: Option<SignedVoucher>,
    pub(super) voucher_paid: U256,
    /// A TEE settlement for this customer is prepared or sent: no second one until it resolves.
    pub(super) open_settlement: bool,
}

impl UserState {
    pub(super) fn unsettled(&self) -> U256 {
        self.session_unsettled
            .saturating_add(self.metered_native.saturating_sub(self.voucher_paid))
    }

    pub(super) fn available(&self) -> Option<U256> {
        let c = self.chain?;
        Some(
            c.balance
                .saturating_sub(c.pending_refund)
                .saturating_sub(self.unsettled())
                .saturating_sub(self.reserved),
        )
    }

    /// Checks a nonce against the window without recording it.
    pub(super) fn check_nonce(&self, user: Address, nonce: U256) -> Result<()> {
        let Some(high) = self.nonce_high else {
            return Ok(());
        };
        if nonce > high {
            return Ok(());
        }
        let d = high.saturating_sub(nonce);
        let window = U256::from(NONCE_WINDOW);
        if d >= window {
            let lowest = high.saturating_sub(window).saturating_add(U256::from(1));
            return Err(Error::NonceTooOld { user, nonce, lowest });
        }
        // d < 1024 here, so the conversion is exact.
        let d = d.to::<usize>();
        if self.window.bit(d) {
            return Err(Error::NonceReplayed { user, nonce });
        }
        Ok(())
    }

    /// Records a nonce that passed [`UserState::check_nonce`].
    pub(super) fn record_nonce(&mut self, nonce: U256) {
        match self.nonce_high {
            Some(high) if nonce <= high => {
                let d = high.saturating_sub(nonce).to::<usize>();
                self.window.set_bit(d, true);
            }
            Some(high) => {
                let shift = nonce.saturating_sub(high);
                self.window = if shift >= U256::from(NONCE_WINDOW) {
                    U1024::ZERO
                } else {
                    self.window.wrapping_shl(shift.to::<usize>())
                };
                self.window.set_bit(0, true);
                self.nonce_high = Some(nonce);
            }
            None => {
                self.window = U1024::from(1u8);
                self.nonce_high = Some(nonce);
            }
        }
    }

    pub(super) fn row(&self, user: Address) -> UserRow {
        UserRow {
            user,
            nonce_high: self.nonce_high,
            window: self.window,
            metered_native: self.metered_native,
            voucher_paid: self.voucher_paid,
            voucher: self.voucher.clone(),
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Model check of the nonce window against a set of every nonce ever accepted: a nonce is
        /// accepted iff it was never accepted before and lies within `NONCE_WINDOW` of the highest one.
        #[test]
        fn nonce_window_matches_a_model(nonces in proptest::collection::vec(0u64..3000, 1..400)) {
            let user = Address::repeat_byte(1);
            let mut s = UserState::default();
            let mut seen = std::collections::HashSet::new();
            let mut high: Option<u64> = None;
            for x in nonces {
                let fresh = !seen.contains(&x);
                let in_window = high.is_none_or(|h| x + u64::from(NONCE_WINDOW) > h);
                let got = s.check_nonce(user, U256::from(x));
                proptest::prop_assert_eq!(got.is_ok(), fresh && in_window, "nonce {} high {:?}", x, high);
                if got.is_ok() {
                    s.record_nonce(U256::from(x));
                    seen.insert(x);
                    high = Some(high.map_or(x, |h| h.max(x)));
                }
            }
        }
    }

    #[test]
    fn nonce_window_accepts_reordering_and_rejects_replays_forever() {
        let user = Address::repeat_byte(1);
        let mut s = UserState::default();
        let n = |x: u64| U256::from(x);
        for x in [10, 12, 11, 5] {
            s.check_nonce(user, n(x)).unwrap();
            s.record_nonce(n(x));
        }
        for x in [10, 12, 11, 5] {
            assert!(matches!(
                s.check_nonce(user, n(x)),
                Err(Error::NonceReplayed { .. })
            ));
        }
        s.check_nonce(user, n(9)).unwrap();
        s.record_nonce(n(2000));
        assert!(matches!(
            s.check_nonce(user, n(12)),
            Err(Error::NonceTooOld { .. })
        ));
        assert!(matches!(
            s.check_nonce(user, n(976)),
            Err(Error::NonceTooOld { .. })
        ));
        s.check_nonce(user, n(977)).unwrap();
        assert!(matches!(
            s.check_nonce(user, n(2000)),
            Err(Error::NonceReplayed { .. })
        ));
        // Shift by less than the window keeps old bits at their new distance.
        s.record_nonce(n(1990));
        s.record_nonce(n(2010));
        assert!(matches!(
            s.check_nonce(user, n(1990)),
            Err(Error::NonceReplayed { .. })
        ));
        s.check_nonce(user, n(1991)).unwrap();
    }
}
