//! The bare TDX backend: quotes through configfs-tsm, the boot log from the ACPI CCEL table, RTMR3
//! extension through the TDX guest driver's sysfs measurement file.
//!
//! - Quote: `mkdir <tsm>/report/<entry>`, write 64 bytes to `inblob`, read `outblob`, check
//!   `generation` did not move (another writer raced us), `rmdir` (Linux `Documentation/ABI/testing/
//!   configfs-tsm`).
//! - Boot log: `/sys/firmware/acpi/tables/CCEL` (table) and `/sys/firmware/acpi/tables/data/CCEL`.
//! - RTMR3: write the 48-byte digest to `/sys/class/misc/tdx_guest/measurements/rtmr3:sha384`
//!   (Linux ≥ 6.16 TDX guest measurement ABI; no ioctl, so no unsafe code).

use crate::eventlog::EventLog;
use crate::evidence::{Backend, Evidence, EvidenceProducer};
use crate::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Filesystem locations the TDX backend uses (all overridable, e.g. for tests on recorded files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxPaths {
    /// configfs-tsm report directory (`/sys/kernel/config/tsm/report`).
    pub tsm_report: PathBuf,
    /// CCEL ACPI table.
    pub ccel_table: PathBuf,
    /// CCEL log data.
    pub ccel_data: PathBuf,
    /// RTMR3 extension file.
    pub rtmr3: PathBuf,
}

impl Default for TdxPaths {
    fn default() -> Self {
        TdxPaths {
            tsm_report: "/sys/kernel/config/tsm/report".into(),
            ccel_table: "/sys/firmware/acpi/tables/CCEL".into(),
            ccel_data: "/sys/firmware/acpi/tables/data/CCEL".into(),
            rtmr3: "/sys/class/misc/tdx_guest/measurements/rtmr3:sha384".into(),
        }
    }
}

/// Evidence from a bare TDX guest.
#[derive(Debug)]
pub struct TdxProducer {
    paths: TdxPaths,
    entry: String,
    runtime: Mutex<EventLog>,
}

fn backend_err(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Backend {
        backend: "tdx",
        reason: format!("{what} {}: {e}", path.display()),
    }
}

impl TdxProducer {
    /// The backend at the standard kernel paths.
    pub fn new() -> Self {
        Self::with_paths(TdxPaths::default())
    }

    /// The backend at custom paths.
    pub fn with_paths(paths: TdxPaths) -> Self {
        TdxProducer {
            paths,
            entry: format!("zg-{}", std::process::id()),
            runtime: Mutex::new(EventLog::default()),
        }
    }

    /// Uses a fixed configfs entry name (default `zg-<pid>`).
    pub fn with_entry_name(mut self, name: impl Into<String>) -> Self {
        self.entry = name.into();
        self
    }

    /// Reads and parses the CCEL boot log (RTMR0-2 events).
    pub fn boot_log(&self) -> Result<EventLog> {
        let table = std::fs::read(&self.paths.ccel_table)
            .map_err(|e| Error::io("read CCEL table", &self.paths.ccel_table, e))?;
        let data = std::fs::read(&self.paths.ccel_data)
            .map_err(|e| Error::io("read CCEL data", &self.paths.ccel_data, e))?;
        EventLog::from_ccel(&table, &data)
    }

    fn raw_quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>> {
        let dir = self.paths.tsm_report.join(&self.entry);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(backend_err("create configfs-tsm entry", &dir, e)),
        }
        let generation = |dir: &Path| {
            std::fs::read_to_string(dir.join("generation"))
                .ok()
                .map(|s| s.trim().to_owned())
        };
        let inblob = dir.join("inblob");
        std::fs::write(&inblob, report_data).map_err(|e| backend_err("write", &inblob, e))?;
        let before = generation(&dir);
        let outblob = dir.join("outblob");
        let quote = std::fs::read(&outblob).map_err(|e| backend_err("read", &outblob, e))?;
        let after = generation(&dir);
        // rmdir fails on ordinary directories with files (tests); the kernel entry goes away.
        let _ = std::fs::remove_dir(&dir);
        if before != after {
            return Err(Error::Backend {
                backend: "tdx",
                reason: format!(
                    "configfs-tsm generation changed during the request ({before:?} -> {after:?}): another writer raced; retry"
                ),
            });
        }
        if quote.is_empty() {
            return Err(backend_err("empty quote from", &outblob, "no data"));
        }
        Ok(quote)
    }
}

impl Default for TdxProducer {
    fn default() -> Self {
        Self::new()
    }
}

impl EvidenceProducer for TdxProducer {
    fn backend(&self) -> Backend {
        Backend::Tdx
    }

    fn quote(&self, report_data: &[u8; 64]) -> Result<Evidence> {
        let quote = self.raw_quote(report_data)?;
        let mut log = self.boot_log()?;
        let runtime = self
            .runtime
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        log.events.extend(runtime.events.iter().cloned());
        log.digest_checks.extend(runtime.digest_checks.iter().copied());
        Ok(Evidence {
            quote,
            event_log: Some(log.to_dstack_json()),
            gpu_evidence: None,
            binding: None,
        })
    }

    fn extend_runtime(&self, event: &str, payload: &[u8]) -> Result<()> {
        let mut runtime = self
            .runtime
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut scratch = EventLog::default();
        let digest = scratch.push_runtime(event, payload);
        let path = &self.paths.rtmr3;
        std::fs::write(path, digest).map_err(|e| backend_err("extend RTMR3 via", path, e))?;
        runtime.push_runtime(event, payload);
        Ok(())
    }
}
