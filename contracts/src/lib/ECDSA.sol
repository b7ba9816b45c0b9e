// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

/// @title ECDSA
/// @notice secp256k1 signature recovery that accepts only canonical signatures:
///         65 bytes `r ‖ s ‖ v`, `v` in {27, 28} (0/1 are normalised), `s` in the lower half of the
///         curve order (EIP-2), and never the zero address. Returns `address(0)` instead of reverting,
///         so batch settlement can report a per-item status.
library ECDSA {
    /// @dev secp256k1n / 2: any `s` above it is the malleable twin of a canonical signature.
    uint256 internal constant HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @notice Recovers the signer of `digest` from a 65-byte calldata signature, or `address(0)`
    ///         if the signature is malformed, high-s, or does not recover.
    function tryRecoverCalldata(bytes32 digest, bytes calldata signature) internal view returns (address signer) {
        if (signature.length != 65) return address(0);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := calldataload(signature.offset)
            s := calldataload(add(signature.offset, 32))
            v := byte(0, calldataload(add(signature.offset, 64)))
        }
        return _recover(digest, r, s, v);
    }

    /// @notice Same as {tryRecoverCalldata} for a signature held in memory.
    function tryRecover(bytes32 digest, bytes memory signature) internal view returns (address signer) {
        if (signature.length != 65) return address(0);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(signature, 32))
            s := mload(add(signature, 64))
            v := byte(0, mload(add(signature, 96)))
        }
        return _recover(digest, r, s, v);
    }

    function _recover(bytes32 digest, bytes32 r, bytes32 s, uint8 v) private view returns (address signer) {
        if (v < 27) v += 27;
        if (v != 27 && v != 28) return address(0);
        if (uint256(s) > HALF_ORDER || uint256(s) == 0 || uint256(r) == 0) return address(0);
        // Call the precompile directly: `ecrecover` in Solidity cannot fail cleanly on every node.
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, digest)
            mstore(add(ptr, 0x20), v)
            mstore(add(ptr, 0x40), r)
            mstore(add(ptr, 0x60), s)
            mstore(0x00, 0)
            let ok := staticcall(gas(), 0x01, ptr, 0x80, 0x00, 0x20)
            signer := mul(ok, mload(0x00))
        }
    }
}
