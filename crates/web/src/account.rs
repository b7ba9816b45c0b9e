//! The Account page's API: the session summary, the ledger with its sub-accounts and pending refunds, spend from
//! the verified-receipt log, and the four ledger transactions with a gas-priced preview before each.
//!
//! Who can call these: only the page holding the session token (see [`crate::guard`]). The worst a caller can do
//! is what the customer could do with `zg deposit|refund|transfer-fund|retrieve-fund`: move the customer's own
//! funds between wallet, ledger and sub-accounts, each only after the preview the page shows. Amounts are parsed
//! exactly (never floats); a malformed amount or address is a 400 naming the field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider as _;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zg_chain::{Amount, LedgerManagerContract, Revert, ServiceKind};

use crate::error::{Error, Result};
use crate::server::AppState;

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `GET /api/session`: who is signing, on which chain, and the dashboard's settings.
pub(crate) async fn session(State(s): State<AppState>) -> Result<Json<Value>> {
    let chain = s.client.chain();
    let wallet = chain.balance(s.client.address()).await?;
    Ok(Json(json!({
        "customer": s.client.address(),
        "chain_id": chain.chain_id(),
        "rpc": chain.url(),
        "contracts": chain.addresses(),
        "wallet": wallet,
        "allow_simulated": s.client.config().policy.dangerous_allow_simulated,
        "provider_metrics": s.view.lock().ok().and_then(|v| v.target.clone()),
        "broker": s.cfg.broker_url,
    })))
}

#[derive(Debug, Serialize)]
struct RefundRow {
    index: String,
    amount: Amount,
    created_at: u64,
    unlock_at: u64,
    unlocked: bool,
    processed: bool,
}

#[derive(Debug, Serialize)]
struct SubAccountRow {
    service: ServiceKind,
    provider: Address,
    balance: Amount,
    pending_refund: Amount,
    acknowledged: bool,
    refunds: Vec<RefundRow>,
}

/// `GET /api/account`: ledger, sub-accounts, pending refunds with unlock times, and spend charts.
pub(crate) async fn account(State(s): State<AppState>) -> Result<Json<Value>> {
    let chain = s.client.chain();
    let me = s.client.address();
    let (ledger_c, inference_c) = (chain.ledger(), chain.inference());
    let (ledger, wallet, lock_time) = tokio::try_join!(
        ledger_c.get_ledger(me),
        chain.balance(me),
        inference_c.lock_time(),
    )?;
    let mut subs = Vec::new();
    if ledger.is_some() {
        for kind in [ServiceKind::Inference, ServiceKind::FineTuning] {
            for provider in chain.ledger().providers(me, kind).await? {
                subs.push(sub_account(&s, kind, me, provider, lock_time).await?);
            }
        }
    }
    let providers: Vec<Address> = subs
        .iter()
        .filter(|r| r.service == ServiceKind::Inference)
        .map(|r| r.provider)
        .collect();
    let dir = s.client.config().data_dir.join(format!("{me:#x}"));
    let spend = tokio::task::spawn_blocking(move || spend(&dir, &providers, now_secs()))
        .await
        .map_err(|e| Error::BadRequest(format!("reading the receipt log: {e}")))?;
    Ok(Json(json!({
        "customer": me,
        "wallet": wallet,
        "ledger": ledger.map(|l| json!({
            "available": l.available,
            "total": l.total,
            "in_sub_accounts": Amount(l.total.0.saturating_sub(l.available.0)),
        })),
        "lock_time_secs": lock_time,
        "now": now_secs(),
        "sub_accounts": subs,
        "spend": spend,
    })))
}

async fn sub_account(
    s: &AppState,
    kind: ServiceKind,
    me: Address,
    provider: Address,
    lock_time: u64,
) -> Result<SubAccountRow> {
    let chain = s.client.chain();
    let now = now_secs();
    Ok(match kind {
        ServiceKind::Inference => {
            let a = chain.inference().get_account(me, provider).await?;
            let (balance, pending_refund, acknowledged, refunds) = a
                .map(|a| (a.balance, a.pending_refund, a.acknowledged, a.refunds))
                .unwrap_or_default();
            SubAccountRow {
                service: kind,
                provider,
                balance,
                pending_refund,
                acknowledged,
                refunds: refunds
                    .into_iter()
                    .filter(|r| !r.processed)
                    .map(|r| {
                        let unlock_at = r.created_at.saturating_add(lock_time);
                        RefundRow {
                            index: r.index.to_string(),
                            amount: r.amount,
                            created_at: r.created_at,
                            unlock_at,
                            unlocked: now >= unlock_at,
                            processed: r.processed,
                        }
                    })
                    .collect(),
            }
        }
        ServiceKind::FineTuning => {
            let a = chain.fine_tuning().get_account(me, provider).await?;
            let (balance, pending_refund, acknowledged) = a
                .map(|a| (a.balance, a.pending_refund, a.acknowledged))
                .unwrap_or_default();
            SubAccountRow {
                service: kind,
                provider,
                balance,
                pending_refund,
                acknowledged,
                refunds: Vec::new(),
            }
        }
    })
}

/// The tail of a receipt log read for charts: the newest receipts matter, and the file grows without bound.
const LOG_TAIL: u64 = 4 * 1024 * 1024;

/// One line of zg-client's receipt log (`<data_dir>/<customer>/<provider>.receipts.jsonl`), the fields charts use.
#[derive(Debug, Deserialize)]
struct LoggedReceipt {
    at_ms: u64,
    fee: String,
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// Spend per day (last 14 days, neuron) and tokens per provider, from the verified-receipt logs.
fn spend(dir: &std::path::Path, providers: &[Address], now: u64) -> Value {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let today = now / 86_400;
    let mut per_day: BTreeMap<u64, U256> = (0..14).map(|i| (today.saturating_sub(i), U256::ZERO)).collect();
    let mut per_provider = Vec::new();
    for p in providers {
        let path: PathBuf = dir.join(format!("{p:#x}.receipts.jsonl"));
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = len.saturating_sub(LOG_TAIL);
        if f.seek(SeekFrom::Start(start)).is_err() {
            continue;
        }
        let mut text = String::new();
        if f.read_to_string(&mut text).is_err() {
            continue;
        }
        let (mut tokens, mut fees, mut count) = (0u64, U256::ZERO, 0u64);
        // A cut first line (when only the tail was read) simply fails to parse and is skipped.
        for line in text.lines() {
            let Ok(r) = serde_json::from_str::<LoggedReceipt>(line) else {
                continue;
            };
            let fee: U256 = r.fee.parse().unwrap_or_default();
            tokens = tokens.saturating_add(r.prompt_tokens.saturating_add(r.completion_tokens));
            fees = fees.saturating_add(fee);
            count = count.saturating_add(1);
            if let Some(d) = per_day.get_mut(&(r.at_ms / 86_400_000)) {
                *d = d.saturating_add(fee);
            }
        }
        per_provider.push(json!({"provider": p, "tokens": tokens, "fees": Amount(fees), "receipts": count}));
    }
    json!({
        "per_day": per_day.into_iter().map(|(day, fee)| json!({"day": day * 86_400, "fees": Amount(fee)})).collect::<Vec<_>>(),
        "per_provider": per_provider,
    })
}

/// What the page asks to do with the ledger.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TxRequest {
    /// `deposit`, `refund`, `transfer` or `retrieve`.
    action: String,
    /// `1.5`, `1.5 0G` or `N neuron` (not used by `retrieve`).
    #[serde(default)]
    amount: Option<String>,
    /// The provider (`transfer`, `retrieve`; `retrieve` without one means every provider of the service).
    #[serde(default)]
    provider: Option<String>,
    /// `inference` (default) or `fine-tuning`.
    #[serde(default)]
    service: Option<String>,
}

/// A [`TxRequest`], checked.
#[derive(Debug, Clone)]
enum Tx {
    AddAccount(Amount),
    Deposit(Amount),
    Refund(Amount),
    Transfer(Address, ServiceKind, Amount),
    Retrieve(Vec<Address>, ServiceKind),
}

impl Tx {
    fn name(&self) -> &'static str {
        match self {
            Tx::AddAccount(_) => "add-account",
            Tx::Deposit(_) => "deposit",
            Tx::Refund(_) => "refund",
            Tx::Transfer(..) => "transfer-fund",
            Tx::Retrieve(..) => "retrieve-fund",
        }
    }

    fn amount(&self) -> Option<Amount> {
        match self {
            Tx::AddAccount(a) | Tx::Deposit(a) | Tx::Refund(a) | Tx::Transfer(_, _, a) => Some(*a),
            Tx::Retrieve(..) => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Tx::AddAccount(a) => format!("Create your ledger with a first deposit of {a} from your wallet"),
            Tx::Deposit(a) => format!("Deposit {a} from your wallet into your ledger"),
            Tx::Refund(a) => format!("Withdraw {a} from your ledger's available balance to your wallet"),
            Tx::Transfer(p, k, a) => format!("Move {a} from your ledger into your {k} sub-account with {p}"),
            Tx::Retrieve(ps, k) => format!(
                "Request refunds from {} {k} sub-account(s) and collect those already unlocked",
                ps.len()
            ),
        }
    }
}

pub(crate) fn parse_address(field: &str, v: &str) -> Result<Address> {
    v.trim()
        .parse::<Address>()
        .map_err(|e| Error::BadRequest(format!("{field} {v:?} is not an address: {e}")))
}

fn parse_service(v: Option<&str>) -> Result<ServiceKind> {
    match v.unwrap_or("inference") {
        "inference" | "inference-v1.0" => Ok(ServiceKind::Inference),
        "fine-tuning" | "fine-tuning-v1.0" => Ok(ServiceKind::FineTuning),
        other => Err(Error::BadRequest(format!(
            "service {other:?} is not one of inference, fine-tuning"
        ))),
    }
}

fn parse_amount(v: Option<&str>) -> Result<Amount> {
    let v =
        v.ok_or_else(|| Error::BadRequest("amount is missing (e.g. 1.5 or 1.5 0G or 5 neuron)".into()))?;
    let a: Amount = v
        .parse()
        .map_err(|e| Error::BadRequest(format!("amount {v:?}: {e}")))?;
    if a.0.is_zero() {
        return Err(Error::BadRequest("amount must be above zero".into()));
    }
    Ok(a)
}

/// Checks a request and what the chain says about it, with the fix in the message when it cannot work.
async fn check(s: &AppState, r: &TxRequest) -> Result<Tx> {
    let chain = s.client.chain();
    let me = s.client.address();
    let insufficient = |e: zg_chain::Error, hint: &str| match e {
        zg_chain::Error::InsufficientLedgerBalance { available, .. } => {
            Error::BadRequest(format!("your ledger has only {available} available: {hint}"))
        }
        other => other.into(),
    };
    Ok(match r.action.as_str() {
        "deposit" => {
            let a = parse_amount(r.amount.as_deref())?;
            let wallet = chain.balance(me).await?;
            if wallet.0 < a.0 {
                return Err(Error::BadRequest(format!(
                    "your wallet {me} holds {wallet}, less than {a} (plus gas): fund the wallet first"
                )));
            }
            if chain.ledger().get_ledger(me).await?.is_none() {
                Tx::AddAccount(a)
            } else {
                Tx::Deposit(a)
            }
        }
        "refund" => {
            let a = parse_amount(r.amount.as_deref())?;
            chain
                .ledger()
                .ensure_available(me, a)
                .await
                .map_err(|e| insufficient(e, "funds in sub-accounts come back with Retrieve first"))?;
            Tx::Refund(a)
        }
        "transfer" => {
            let a = parse_amount(r.amount.as_deref())?;
            let p = parse_address(
                "provider",
                r.provider
                    .as_deref()
                    .ok_or_else(|| Error::BadRequest("provider is missing".into()))?,
            )?;
            let k = parse_service(r.service.as_deref())?;
            chain
                .ledger()
                .ensure_available(me, a)
                .await
                .map_err(|e| insufficient(e, "deposit more first"))?;
            Tx::Transfer(p, k, a)
        }
        "retrieve" => {
            let k = parse_service(r.service.as_deref())?;
            let ps = match r.provider.as_deref().filter(|p| !p.trim().is_empty()) {
                Some(p) => vec![parse_address("provider", p)?],
                None => chain.ledger().providers(me, k).await?,
            };
            if ps.is_empty() {
                return Err(Error::BadRequest(format!(
                    "you have no {k} sub-accounts to retrieve from"
                )));
            }
            Tx::Retrieve(ps, k)
        }
        other => {
            return Err(Error::BadRequest(format!(
                "action {other:?} is not one of deposit, refund, transfer, retrieve"
            )));
        }
    })
}

/// The gas a transaction would use now, estimated by the node from the customer's address.
async fn estimate(s: &AppState, tx: &Tx) -> Result<u64> {
    let chain = s.client.chain();
    let me = s.client.address();
    let c = LedgerManagerContract::new(chain.addresses().ledger, chain.provider().clone());
    let r = match tx {
        Tx::AddAccount(a) => {
            c.addLedger(String::new())
                .value(a.0)
                .from(me)
                .estimate_gas()
                .await
        }
        Tx::Deposit(a) => c.depositFund().value(a.0).from(me).estimate_gas().await,
        Tx::Refund(a) => c.refund(a.0).from(me).estimate_gas().await,
        Tx::Transfer(p, k, a) => {
            c.transferFund(*p, k.full_name().to_owned(), a.0)
                .from(me)
                .estimate_gas()
                .await
        }
        Tx::Retrieve(ps, k) => {
            c.retrieveFund(ps.clone(), k.full_name().to_owned())
                .from(me)
                .estimate_gas()
                .await
        }
    };
    r.map_err(|e| match e.as_revert_data() {
        Some(data) => Error::BadRequest(format!("{} would revert: {}", tx.name(), Revert::decode(&data))),
        None => Error::Upstream {
            what: format!("estimating gas for {}", tx.name()),
            reason: e.to_string(),
        },
    })
}

/// `POST /api/tx/preview`: what would happen, the amount in 0G and neuron, the gas and its price. Sends nothing.
pub(crate) async fn preview(State(s): State<AppState>, Json(r): Json<TxRequest>) -> Result<Json<Value>> {
    let tx = check(&s, &r).await?;
    let gas = estimate(&s, &tx).await?;
    let price = s
        .client
        .chain()
        .provider()
        .get_gas_price()
        .await
        .map_err(|e| Error::Upstream {
            what: "reading the gas price".into(),
            reason: e.to_string(),
        })?;
    let fee = U256::from(gas).saturating_mul(U256::from(price));
    Ok(Json(json!({
        "action": tx.name(),
        "description": tx.describe(),
        "amount": tx.amount(),
        "gas": gas,
        "gas_price": Amount(U256::from(price)),
        "gas_fee": Amount(fee),
    })))
}

/// `POST /api/tx/send`: checks again, sends, waits for the receipt, returns it with the new ledger.
pub(crate) async fn send(State(s): State<AppState>, Json(r): Json<TxRequest>) -> Result<Json<Value>> {
    let tx = check(&s, &r).await?;
    let chain = s.client.chain();
    let ledger = chain.ledger();
    let outcome = match &tx {
        Tx::AddAccount(a) => ledger.add_ledger(*a, "").await?,
        Tx::Deposit(a) => ledger.deposit(*a).await?,
        Tx::Refund(a) => ledger.refund(*a).await?,
        Tx::Transfer(p, k, a) => ledger.transfer_fund(*p, *k, *a).await?,
        Tx::Retrieve(ps, k) => ledger.retrieve_fund(ps.clone(), *k).await?,
    };
    tracing::info!(action = tx.name(), tx = %outcome.tx, gas = outcome.gas_used, "dashboard transaction mined");
    Ok(Json(
        json!({"action": tx.name(), "description": tx.describe(), "tx": outcome}),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn spend_reads_the_log_tail_and_skips_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = Address::repeat_byte(7);
        let now: u64 = 20_000 * 86_400 + 3600;
        let today_ms: u64 = (20_000 * 86_400 + 60) * 1000;
        let log = format!(
            "{{\"at_ms\":{today_ms},\"fee\":\"100\",\"prompt_tokens\":3,\"completion_tokens\":4}}\nnot json\n\
             {{\"at_ms\":{},\"fee\":\"50\",\"prompt_tokens\":1,\"completion_tokens\":1}}\n",
            today_ms - 86_400_000
        );
        std::fs::write(dir.path().join(format!("{p:#x}.receipts.jsonl")), log).unwrap();
        let v = spend(dir.path(), &[p, Address::repeat_byte(8)], now);
        let pp = &v["per_provider"][0];
        assert_eq!(pp["tokens"], 9);
        assert_eq!(pp["receipts"], 2);
        assert_eq!(pp["fees"]["neuron"], "150");
        let days = v["per_day"].as_array().unwrap();
        assert_eq!(days.len(), 14);
        assert_eq!(days[13]["fees"]["neuron"], "100");
        assert_eq!(days[12]["fees"]["neuron"], "50");
    }

    #[test]
    fn amounts_are_exact_and_named() {
        assert_eq!(
            parse_amount(Some("1.5")).unwrap().0,
            U256::from(1_500_000_000_000_000_000u128)
        );
        assert_eq!(parse_amount(Some("7 neuron")).unwrap().0, U256::from(7));
        let e = parse_amount(Some("abc")).unwrap_err().to_string();
        assert!(e.contains("abc"), "{e}");
        assert!(parse_amount(Some("0")).is_err());
        assert!(parse_amount(None).unwrap_err().to_string().contains("missing"));
        assert!(parse_service(Some("storage")).is_err());
    }
}
