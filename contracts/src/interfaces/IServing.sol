// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

/// @title IServing
/// @notice What LedgerManager calls on a serving contract (inference or fine-tuning) to move a
///         customer's funds into and out of the per-provider sub-account. Every mutating function is
///         callable by the ledger only. Value flows: `addAccount`/`depositFund` carry value in;
///         `processRefund` sends matured refunds back to the ledger.
interface IServing {
    /// @notice Whether the sub-account of `user` with `provider` exists.
    function accountExists(address user, address provider) external view returns (bool);

    /// @notice The part of the sub-account's balance that is waiting for its refund lock time.
    function getPendingRefund(address user, address provider) external view returns (uint256);

    /// @notice Opens the sub-account with `msg.value` as its balance.
    function addAccount(address user, address provider, string calldata additionalInfo) external payable;

    /// @notice Adds `msg.value` to the balance and cancels up to `cancelRetrievingAmount` of pending
    ///         refunds (newest first), so those funds stay with the provider.
    function depositFund(address user, address provider, uint256 cancelRetrievingAmount) external payable;

    /// @notice Starts the lock-time clock on everything not already pending.
    function requestRefundAll(address user, address provider) external;

    /// @notice Pays every matured refund back to the ledger.
    function processRefund(address user, address provider)
        external
        returns (uint256 totalAmount, uint256 balance, uint256 pendingRefund);

    /// @notice Deletes an empty sub-account.
    function deleteAccount(address user, address provider) external;
}

/// @title ILedger
/// @notice What a serving contract calls on LedgerManager when it settles fees.
interface ILedger {
    /// @notice Records that `amount` of `user`'s funds (held by the calling service) was paid out.
    function spendFund(address user, uint256 amount) external;
}
