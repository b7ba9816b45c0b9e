//! The verification report: every check with what was expected, what was found and the verdict.

use crate::Timestamp;
use crate::eventlog::AppInfo;
use crate::gpu::GpuSummary;
use crate::reportdata::KeyBinding;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The banner every report of simulated evidence carries.
pub const SIMULATED_BANNER: &str = "SIMULATED — NOT A REAL TEE";

/// Overall outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every required check passed.
    Pass,
    /// At least one required check failed or was not evaluated.
    Fail,
}

/// One decision of the verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable dotted name, e.g. `quote.signature`, `tcb.status`, `event_log.rtmr3`.
    pub name: String,
    /// What the policy or protocol requires.
    pub expected: String,
    /// What the evidence showed (or the error that stopped the check).
    pub found: String,
    /// Whether it passed.
    pub ok: bool,
    /// Whether it counts towards the verdict (informational checks do not).
    pub required: bool,
}

/// Everything the verifier decided about one piece of evidence. Serialises to JSON; `Display`
/// prints it for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationReport {
    /// `pass` only when every required check passed.
    pub verdict: Verdict,
    /// Whether the evidence came from the simulated backend (never a real TEE).
    pub simulated: bool,
    /// A loud notice (e.g. [`SIMULATED_BANNER`]) when something about the evidence is not real.
    pub notice: Option<String>,
    /// The time verification was performed for.
    pub verified_at: Timestamp,
    /// Intel TCB status after merging platform, TDX module and QE (None if never computed).
    pub tcb_status: Option<String>,
    /// Intel security advisories that apply.
    pub advisory_ids: Vec<String>,
    /// Quote version (4 or 5).
    pub quote_version: Option<u16>,
    /// Platform FMSPC.
    pub fmspc: Option<String>,
    /// MRTD (hex).
    pub mrtd: Option<String>,
    /// RTMR0 (hex).
    pub rtmr0: Option<String>,
    /// RTMR1 (hex).
    pub rtmr1: Option<String>,
    /// RTMR2 (hex).
    pub rtmr2: Option<String>,
    /// RTMR3 (hex).
    pub rtmr3: Option<String>,
    /// MRCONFIGID (hex).
    pub mr_config_id: Option<String>,
    /// REPORTDATA (hex).
    pub report_data: Option<String>,
    /// Earliest and latest instants at which the collateral (all of it, including CRLs and
    /// certificates) is valid.
    pub collateral_window: Option<(Timestamp, Timestamp)>,
    /// Named application events from the replayed log.
    pub app: Option<AppInfo>,
    /// The key binding the quote committed to (native layout).
    pub binding: Option<KeyBinding>,
    /// The signer address bound by REPORTDATA (any layout).
    pub signer_address: Option<String>,
    /// The GPUs the evidence covered (one entry per verified report).
    pub gpus: Vec<GpuSummary>,
    /// Which allow-list entries the evidence matched (`image <name>`, `compose hash <hex>`,
    /// `app id <hex>`), or `any image (dangerous_any_image)`.
    pub allowlist_matches: Vec<String>,
    /// Every check, in the order performed.
    pub checks: Vec<Check>,
    /// What this verification could not establish, in words.
    pub not_verified: Vec<String>,
}

impl VerificationReport {
    pub(crate) fn new(now: Timestamp) -> Self {
        VerificationReport {
            verdict: Verdict::Fail,
            simulated: false,
            notice: None,
            verified_at: now,
            tcb_status: None,
            advisory_ids: Vec::new(),
            quote_version: None,
            fmspc: None,
            mrtd: None,
            rtmr0: None,
            rtmr1: None,
            rtmr2: None,
            rtmr3: None,
            mr_config_id: None,
            report_data: None,
            collateral_window: None,
            app: None,
            binding: None,
            signer_address: None,
            gpus: Vec::new(),
            allowlist_matches: Vec::new(),
            checks: Vec::new(),
            not_verified: Vec::new(),
        }
    }

    /// Whether the verdict is pass.
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    /// The check called `name`, if performed.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Required checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.required && !c.ok)
    }

    /// The first failed required check (the reason for a `fail`).
    pub fn first_failure(&self) -> Option<&Check> {
        self.failures().next()
    }

    pub(crate) fn push(
        &mut self,
        name: &str,
        expected: impl Into<String>,
        found: impl Into<String>,
        ok: bool,
    ) {
        self.checks.push(Check {
            name: name.to_owned(),
            expected: expected.into(),
            found: found.into(),
            ok,
            required: true,
        });
    }

    pub(crate) fn info(
        &mut self,
        name: &str,
        expected: impl Into<String>,
        found: impl Into<String>,
        ok: bool,
    ) {
        self.checks.push(Check {
            name: name.to_owned(),
            expected: expected.into(),
            found: found.into(),
            ok,
            required: false,
        });
    }

    pub(crate) fn finish(mut self) -> Self {
        let all = !self.checks.is_empty() && self.checks.iter().all(|c| !c.required || c.ok);
        self.verdict = if all { Verdict::Pass } else { Verdict::Fail };
        self
    }
}

impl fmt::Display for VerificationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.notice {
            writeln!(f, "!!! {n} !!!")?;
        }
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        writeln!(f, "verdict:      {verdict} (at {})", self.verified_at)?;
        if let Some(s) = &self.tcb_status {
            let adv = if self.advisory_ids.is_empty() {
                "none".to_owned()
            } else {
                self.advisory_ids.join(", ")
            };
            writeln!(f, "tcb status:   {s} (advisories: {adv})")?;
        }
        for (label, v) in [
            ("quote:", self.quote_version.map(|v| format!("v{v}"))),
            ("fmspc:", self.fmspc.clone()),
            ("mrtd:", self.mrtd.clone()),
            ("rtmr0:", self.rtmr0.clone()),
            ("rtmr1:", self.rtmr1.clone()),
            ("rtmr2:", self.rtmr2.clone()),
            ("rtmr3:", self.rtmr3.clone()),
            ("report_data:", self.report_data.clone()),
            ("signer:", self.signer_address.clone()),
        ] {
            if let Some(v) = v {
                writeln!(f, "{label:<13} {v}")?;
            }
        }
        if let Some((a, b)) = self.collateral_window {
            writeln!(f, "collateral:   valid {a} .. {b}")?;
        }
        if let Some(app) = &self.app
            && let Some(c) = &app.compose_hash
        {
            writeln!(f, "compose hash: {c}")?;
        }
        if !self.allowlist_matches.is_empty() {
            writeln!(f, "allow-list:   {}", self.allowlist_matches.join("; "))?;
        }
        for g in &self.gpus {
            writeln!(
                f,
                "gpu {}:        {} driver {} vbios {}{}",
                g.index,
                g.device,
                g.driver_version.as_deref().unwrap_or("?"),
                g.vbios_version.as_deref().unwrap_or("?"),
                if g.simulated { " (SIMULATED)" } else { "" }
            )?;
        }
        writeln!(f, "checks:")?;
        for c in &self.checks {
            let mark = match (c.ok, c.required) {
                (true, _) => "ok  ",
                (false, true) => "FAIL",
                (false, false) => "note",
            };
            writeln!(
                f,
                "  [{mark}] {:<28} expected {} · found {}",
                c.name, c.expected, c.found
            )?;
        }
        for n in &self.not_verified {
            writeln!(f, "not verified: {n}")?;
        }
        Ok(())
    }
}
