// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

/// @title Ownable
/// @notice Single-owner access control with the conventional `owner()` / `transferOwnership` /
///         `renounceOwnership` interface and `OwnershipTransferred` event (ABI-compatible with 0G's
///         upgradeable contracts, which use OpenZeppelin's).
abstract contract Ownable {
    /// @notice The caller is not the owner.
    error NotOwner(address caller, address owner);
    /// @notice The new owner must not be the zero address (use `renounceOwnership`).
    error InvalidOwner(address newOwner);

    /// @notice Emitted whenever the owner changes, including at deployment.
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    address private _owner;

    constructor(address initialOwner) {
        if (initialOwner == address(0)) revert InvalidOwner(initialOwner);
        _transferOwnership(initialOwner);
    }

    modifier onlyOwner() {
        if (msg.sender != _owner) revert NotOwner(msg.sender, _owner);
        _;
    }

    /// @notice The current owner.
    function owner() public view returns (address) {
        return _owner;
    }

    /// @notice Hands ownership to `newOwner`.
    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert InvalidOwner(newOwner);
        _transferOwnership(newOwner);
    }

    /// @notice Gives up ownership for good: owner-only functions become unreachable.
    function renounceOwnership() external onlyOwner {
        _transferOwnership(address(0));
    }

    function _transferOwnership(address newOwner) private {
        address previous = _owner;
        _owner = newOwner;
        emit OwnershipTransferred(previous, newOwner);
    }
}
