//! Verify Intel TDX providers: DCAP quotes, collateral, RTMR replay, signer binding and policy.
