//! Fuzz the event-log parsers: TCG2/CCEL binary logs and dstack JSON logs (no panics allowed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zg_attestation::{CcelTable, EventLog};

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = EventLog::from_tcg2(data) {
        let _ = log.replay();
    }
    if data.len() > 56 {
        let (table, rest) = data.split_at(56);
        let _ = CcelTable::parse(table);
        let _ = EventLog::from_ccel(table, rest);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(log) = EventLog::from_dstack_json(text)
    {
        let _ = log.replay();
        let _ = log.app_info();
    }
});
