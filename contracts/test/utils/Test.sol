// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {Vm} from "./Vm.sol";

/// @notice Minimal assertions (forge-std is not available offline): a failed assertion reverts with a
///         custom error carrying both sides, which forge reports as a failing test.
abstract contract Test {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    error AssertEqUint(string what, uint256 left, uint256 right);
    error AssertEqAddress(string what, address left, address right);
    error AssertEqBytes32(string what, bytes32 left, bytes32 right);
    error AssertEqBytes(string what, bytes left, bytes right);
    error AssertTrue(string what);

    function assertEq(uint256 a, uint256 b, string memory what) internal pure {
        if (a != b) revert AssertEqUint(what, a, b);
    }

    function assertEq(address a, address b, string memory what) internal pure {
        if (a != b) revert AssertEqAddress(what, a, b);
    }

    function assertEq(bytes32 a, bytes32 b, string memory what) internal pure {
        if (a != b) revert AssertEqBytes32(what, a, b);
    }

    function assertEq(bytes memory a, bytes memory b, string memory what) internal pure {
        if (keccak256(a) != keccak256(b)) revert AssertEqBytes(what, a, b);
    }

    function assertEq(string memory a, string memory b, string memory what) internal pure {
        if (keccak256(bytes(a)) != keccak256(bytes(b))) revert AssertEqBytes(what, bytes(a), bytes(b));
    }

    function assertTrue(bool c, string memory what) internal pure {
        if (!c) revert AssertTrue(what);
    }

    function assertLe(uint256 a, uint256 b, string memory what) internal pure {
        if (a > b) revert AssertEqUint(string.concat(what, " (expected left <= right)"), a, b);
    }

    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        if (max <= min) return min;
        return min + (x % (max - min + 1));
    }
}
