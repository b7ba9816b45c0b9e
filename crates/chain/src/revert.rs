//! Decoding revert data of our contracts: custom errors (by the compiled ABIs), `Error(string)` and `Panic(uint256)`,
//! with a hint that says what to do for the errors a customer or operator can fix.

use crate::Amount;
use alloy::{
    dyn_abi::{DynSolValue, JsonAbiExt},
    json_abi::{Error as AbiError, JsonAbi},
    primitives::{Bytes, Selector, U256},
};
use std::{collections::HashMap, fmt, sync::LazyLock};

/// A decoded revert reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revert {
    /// Custom error name (`InsufficientBalance`), `Error` for `require` strings, `Panic`, or `unknown`.
    pub name: String,
    /// `(parameter name, value)` pairs as text; amounts stay in neuron here.
    pub args: Vec<(String, String)>,
    /// What the caller can do about it, when we know.
    pub hint: Option<String>,
    /// The raw revert data.
    pub data: Bytes,
}

impl fmt::Display for Revert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(hint) = &self.hint {
            return write!(f, "{hint} [{}]", self.name);
        }
        write!(f, "{}", self.name)?;
        if !self.args.is_empty() {
            let args: Vec<String> = self.args.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            write!(f, "({})", args.join(", "))?;
        }
        Ok(())
    }
}

/// Every custom error of the three contracts, by selector.
static ERRORS: LazyLock<HashMap<Selector, AbiError>> = LazyLock::new(|| {
    let mut map = HashMap::new();
    for (_, json) in crate::bindings::ARTIFACTS {
        // The artifacts are compiled in and checked by tests: a parse failure here cannot happen at run time,
        // and if it ever did we would only lose the pretty names (the raw data is still shown).
        let abi = serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| serde_json::from_value::<JsonAbi>(v.get("abi")?.clone()).ok());
        if let Some(abi) = abi {
            for err in abi.errors() {
                map.insert(err.selector(), err.clone());
            }
        }
    }
    map
});

impl Revert {
    /// Decodes revert data returned by one of our contracts.
    pub fn decode(data: &[u8]) -> Self {
        let raw = Bytes::copy_from_slice(data);
        let Some((selector, body)) = data.split_first_chunk::<4>() else {
            return Self {
                name: "unknown".into(),
                args: vec![],
                hint: None,
                data: raw,
            };
        };
        let selector = Selector::from(*selector);
        // Error(string)
        if selector == Selector::from([0x08, 0xc3, 0x79, 0xa0]) {
            let msg = alloy::sol_types::decode_revert_reason(data).unwrap_or_default();
            return Self {
                name: "Error".into(),
                args: vec![("message".into(), msg)],
                hint: None,
                data: raw,
            };
        }
        // Panic(uint256)
        if selector == Selector::from([0x4e, 0x48, 0x7b, 0x71]) {
            let code = body.get(..32).map(U256::from_be_slice).unwrap_or_default();
            return Self {
                name: "Panic".into(),
                args: vec![("code".into(), format!("{code:#x}"))],
                hint: Some(format!(
                    "the contract hit an internal error (panic {code:#x}); this is a bug: please report it"
                )),
                data: raw,
            };
        }
        let Some(err) = ERRORS.get(&selector) else {
            return Self {
                name: format!("unknown error {selector}"),
                args: vec![],
                hint: None,
                data: raw,
            };
        };
        let values = err.abi_decode_input(body).unwrap_or_default();
        let args: Vec<(String, String)> = err
            .inputs
            .iter()
            .zip(values.iter())
            .map(|(param, value)| (param.name.clone(), show(value)))
            .collect();
        let hint = hint(&err.name, &values);
        Self {
            name: err.name.clone(),
            args,
            hint,
            data: raw,
        }
    }
}

fn show(v: &DynSolValue) -> String {
    match v {
        DynSolValue::Address(a) => a.to_checksum(None),
        DynSolValue::Uint(u, _) => u.to_string(),
        DynSolValue::Int(i, _) => i.to_string(),
        DynSolValue::Bool(b) => b.to_string(),
        DynSolValue::String(s) => format!("{s:?}"),
        DynSolValue::FixedBytes(w, size) => format!("0x{}", alloy::hex::encode(&w[..*size])),
        DynSolValue::Bytes(b) => format!("0x{}", alloy::hex::encode(b)),
        other => format!("{other:?}"),
    }
}

fn amount(v: Option<&DynSolValue>) -> Amount {
    match v {
        Some(DynSolValue::Uint(u, _)) => Amount(*u),
        _ => Amount::ZERO,
    }
}

fn address(v: Option<&DynSolValue>) -> String {
    match v {
        Some(DynSolValue::Address(a)) => a.to_checksum(None),
        _ => "?".into(),
    }
}

/// Advice for the errors a caller can fix, by custom error name (see contracts/README.md).
fn hint(name: &str, v: &[DynSolValue]) -> Option<String> {
    let h = match name {
        "MinimumDepositRequired" => {
            let (provided, required) = (amount(v.first()), amount(v.get(1)));
            format!(
                "{provided} is below the {required} minimum: deposit at least {} more",
                Amount(required.0.saturating_sub(provided.0))
            )
        }
        "LedgerNotExists" => "you have no ledger yet: create one with `zg add-account --amount 3`".into(),
        "LedgerExists" => "you already have a ledger: add funds with `zg deposit --amount ...`".into(),
        "InsufficientBalance" => {
            if let (Some(DynSolValue::Uint(..)), Some(DynSolValue::Uint(..))) = (v.get(1), v.get(2)) {
                let (available, needed) = (amount(v.get(1)), amount(v.get(2)));
                format!(
                    "balance {available} is below the {needed} needed: deposit at least {} more",
                    Amount(needed.0.saturating_sub(available.0))
                )
            } else {
                "the available balance is too low: deposit more with `zg deposit --amount ...`".into()
            }
        }
        "NotOwner" => format!(
            "only the contract owner {} can do this, but the transaction was signed by {}: use the owner's key \
             (--keystore FILE / ZG_KEYSTORE, or ZG_PRIVATE_KEY)",
            address(v.get(1)),
            address(v.first())
        ),
        "NoTEESigner" => format!(
            "provider {} registered no TEE signer: there is nothing to acknowledge until it registers one",
            address(v.first())
        ),
        "TEESignerNotAcknowledgedByOwner" => format!(
            "the contract owner has not acknowledged provider {p}'s TEE signer {}: the owner checks its attestation, \
             then runs `zg owner acknowledge-tee-signer --provider {p} --service fine-tuning`",
            address(v.get(1)),
            p = address(v.first()),
        ),
        "TEESignerNotAcknowledgedByUser" => {
            let (user, provider, signer) = (address(v.first()), address(v.get(1)), address(v.get(2)));
            match v.get(3) {
                Some(DynSolValue::Address(a)) if !a.is_zero() => format!(
                    "customer {user} acknowledged {}, but provider {provider}'s TEE signer is now {signer}: \
                     the customer must verify the provider again and acknowledge the new signer",
                    a.to_checksum(None)
                ),
                _ => format!(
                    "customer {user} never acknowledged provider {provider}'s TEE signer {signer}: the customer \
                     must verify the provider and acknowledge its signer (acknowledgeTEESigner) before it can be charged"
                ),
            }
        }
        "TEESignerBoundToOtherProvider" => format!(
            "TEE signer {} already serves provider {}: one signer key serves one provider for good (a settlement              it signed for one provider must not be replayable by another); this provider must register its own              TEE signer",
            address(v.first()),
            address(v.get(1))
        ),
        "TEESignerChanged" => format!(
            "provider {}'s TEE signer is now {}, not {}: verify the attestation of the current signer before \
             acknowledging it",
            address(v.first()),
            address(v.get(2)),
            address(v.get(1))
        ),
        "CannotRevokeWithNonZeroBalance" => format!(
            "the sub-account with provider {p} still holds {}: move the funds out first (`zg retrieve-fund \
             --provider {p}`, then again after the lock time)",
            amount(v.get(2)),
            p = address(v.get(1)),
        ),
        "ServiceNotExist" | "ServiceNotExists" | "ServiceNotFound" => match v.first() {
            Some(DynSolValue::Address(a)) => format!(
                "provider {} has no service on this contract: list them with `zg inference list-providers`",
                a.to_checksum(None)
            ),
            _ => "no such provider service on this contract: list them with `zg inference list-providers`".into(),
        },
        "AccountNotExists" => {
            "you have no sub-account with this provider: fund one with `zg transfer-fund --provider ... --amount ...`"
                .into()
        }
        "RefundLocked" | "RefundNotReady" => "the refund is still locked: try again after the lock time".into(),
        "TooManyProviders" => "too many providers for one call or one user: retrieve funds from fewer at a time".into(),
        "UnknownService" | "InvalidServiceName" => {
            "unknown service name: use inference-v1.0 or fine-tuning-v1.0 (--service inference|fine-tuning)".into()
        }
        _ => return None,
    };
    Some(h)
}
