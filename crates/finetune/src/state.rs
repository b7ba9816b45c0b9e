//! Task ids and the task lifecycle as an explicit state machine.
//!
//! ```text
//! Init → SettingUp → Training → Trained → Delivering → Delivered → UserAcknowledged → Finished
//!   └──────┴───────────┴──────────┴───────────┴─→ Cancelled      (customer, before delivery is sent)
//!   └──────┴───────────┴──────────┴───────────┴─→ Failed(reason)
//!                                               Delivered ─(ack timeout)→ PenaltySettled (fee × penalty %, no key)
//! ```

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A task id: a random (version 4) UUID in its canonical lower-case form, as 0G's broker issues.
///
/// The official client signs the id with its dashes removed (`signTaskID`, the `lora` download), so the
/// id must be hex: [`TaskId::parse`] refuses anything else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(String);

impl TaskId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut b: [u8; 16] = rand::random();
        b[6] = (b[6] & 0x0f) | 0x40; // version 4
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
        let h = hex::encode(b);
        Self(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        ))
    }

    /// Parses a canonical UUID (8-4-4-4-12 hex digits; upper case is folded).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidField {
            field: "task id",
            reason: format!("{s:?} {reason}"),
        };
        if s.len() != 36 {
            return Err(bad("is not a UUID (36 characters)"));
        }
        for (i, c) in s.chars().enumerate() {
            let dash = matches!(i, 8 | 13 | 18 | 23);
            if dash != (c == '-') || (!dash && !c.is_ascii_hexdigit()) {
                return Err(bad("is not a UUID (8-4-4-4-12 hex digits)"));
            }
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id without dashes: what 0G's client signs (`signTaskID`, the `lora` download signature).
    pub fn dashless(&self) -> String {
        self.0.replace('-', "")
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TaskId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Where a task is. The names are 0G's `progress` strings (plus `Cancelled` and `PenaltySettled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum TaskState {
    /// Accepted and durable; waiting for a setup slot.
    Init,
    /// Fetching and checking the dataset, counting tokens, computing and checking the fee.
    SettingUp,
    /// The executor is training.
    Training,
    /// Training finished; the output is on disk.
    Trained,
    /// Packaging, sealing, storing; then `addDeliverable`.
    Delivering,
    /// `addDeliverable` is on chain: waiting for the customer's acknowledgement.
    Delivered,
    /// The customer acknowledged on chain: settlement will reveal the key.
    UserAcknowledged,
    /// Settled with the key revealed: done.
    Finished,
    /// Cancelled by the customer before delivery: nothing charged.
    Cancelled,
    /// Failed with a named reason: nothing charged.
    Failed,
    /// Never acknowledged within the timeout: settled at the penalty fee, key never revealed.
    PenaltySettled,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 11] = [
        Self::Init,
        Self::SettingUp,
        Self::Training,
        Self::Trained,
        Self::Delivering,
        Self::Delivered,
        Self::UserAcknowledged,
        Self::Finished,
        Self::Cancelled,
        Self::Failed,
        Self::PenaltySettled,
    ];

    /// The stored / wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "Init",
            Self::SettingUp => "SettingUp",
            Self::Training => "Training",
            Self::Trained => "Trained",
            Self::Delivering => "Delivering",
            Self::Delivered => "Delivered",
            Self::UserAcknowledged => "UserAcknowledged",
            Self::Finished => "Finished",
            Self::Cancelled => "Cancelled",
            Self::Failed => "Failed",
            Self::PenaltySettled => "PenaltySettled",
        }
    }

    /// No transition leaves this state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Finished | Self::Cancelled | Self::Failed | Self::PenaltySettled
        )
    }

    /// Before `addDeliverable` may have been sent: the customer can still cancel (the broker additionally
    /// refuses once the `addDeliverable` transaction is recorded as being sent).
    pub fn is_cancellable(self) -> bool {
        matches!(
            self,
            Self::Init | Self::SettingUp | Self::Training | Self::Trained | Self::Delivering
        )
    }

    /// Whether `self → next` is a transition of the lifecycle.
    pub fn can_move_to(self, next: TaskState) -> bool {
        use TaskState::*;
        match (self, next) {
            (Init, SettingUp)
            | (SettingUp, Training)
            | (Training, Trained)
            | (Trained, Delivering)
            | (Delivering, Delivered)
            | (Delivered, UserAcknowledged)
            | (UserAcknowledged, Finished)
            | (Delivered, PenaltySettled) => true,
            (s, Cancelled) => s.is_cancellable(),
            // A task fails before its deliverable is on chain; afterwards only settlement ends it.
            (s, Failed) => s.is_cancellable(),
            _ => false,
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| Error::InvalidField {
                field: "state",
                reason: format!("{s:?} is not a task state"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuids_and_parse_back() {
        let id = TaskId::random();
        assert_eq!(id.as_str().len(), 36);
        assert_eq!(id.as_str().chars().nth(14), Some('4'));
        assert_eq!(TaskId::parse(id.as_str()).unwrap(), id);
        assert_eq!(id.dashless().len(), 32);
        let upper = TaskId::parse("3F1C2B7A-9D4E-4A61-8C2F-0123456789AB").unwrap();
        assert_eq!(upper.as_str(), "3f1c2b7a-9d4e-4a61-8c2f-0123456789ab");
        for bad in [
            "",
            "x",
            "3f1c2b7a-9d4e-4a61-8c2f-0123456789ag",
            "3f1c2b7a9d4e-4a61-8c2f-0123456789ab-",
            "../../etc/passwd/aaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(TaskId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_lifecycle_is_exactly_the_documented_one() {
        use TaskState::*;
        let happy = [
            Init,
            SettingUp,
            Training,
            Trained,
            Delivering,
            Delivered,
            UserAcknowledged,
            Finished,
        ];
        for w in happy.windows(2) {
            assert!(w[0].can_move_to(w[1]), "{} → {}", w[0], w[1]);
            assert!(!w[1].can_move_to(w[0]), "{} → {}", w[1], w[0]);
        }
        assert!(Delivered.can_move_to(PenaltySettled));
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
            assert_eq!(s.can_move_to(Cancelled), s.is_cancellable());
            if s.is_terminal() {
                assert!(TaskState::ALL.iter().all(|n| !s.can_move_to(*n)), "{s}");
            }
        }
        for s in [Delivered, UserAcknowledged] {
            assert!(!s.can_move_to(Cancelled) && !s.can_move_to(Failed));
        }
    }
}
