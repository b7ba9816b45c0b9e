//! Provider-side TEE backends.

pub(crate) mod dstack;
pub(crate) mod simulated;
pub(crate) mod tdx;
