//! Request signing, metering, the provider's durable fee ledger and settlement batches.
