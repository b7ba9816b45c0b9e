// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

/// @title ReentrancyGuard
/// @notice One lock per contract, kept in transient storage (EIP-1153, Cancun): it costs about
///         200 gas per guarded call and is cleared automatically at the end of the transaction.
abstract contract ReentrancyGuard {
    /// @notice A guarded function was entered again before it returned.
    error ReentrantCall();

    bool private transient _locked;

    modifier nonReentrant() {
        if (_locked) revert ReentrantCall();
        _locked = true;
        _;
        _locked = false;
    }
}
