// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {Fixture} from "./utils/Fixture.sol";
import {InferenceServing, TEESettlementData, Voucher} from "../src/InferenceServing.sol";

/// @notice Gas of settlement batches in steady state (every customer was settled once before, so the
///         voucher/nonce slots are non-zero). The contracts' storage is made cold before measuring, as in
///         a fresh transaction. Run: `forge test --match-contract GasReport -vv`.
///         Logged per batch: execution gas (gasleft around the call), the transaction's intrinsic gas
///         (21,000 + calldata bytes at 4/16), and their sum.
contract GasReportTest is Fixture {
    /// @dev Forge prints calls to this address with `-vv` (the console.log convention). It has no code,
    ///      so call it with a low-level staticcall (a typed call would fail Solidity's code-size check).
    address internal constant CONSOLE = 0x000000000000000000636F6e736F6c652e6c6f67;
    uint256 internal constant VOUCHER_TARGET_PER_CUSTOMER = 45_000;

    function setUp() public override {
        super.setUp();
        addInferenceService(provider, tee);
        ownerAckInference(provider);
    }

    /// @dev `n` funded customers; with `ackSigner` each also acknowledges the TEE signer (TEE batches
    ///      refuse customers who did not: issue 9).
    function customers(uint256 n, bool ackSigner) internal {
        for (uint256 i; i < n; ++i) {
            if (ackSigner) teeCustomer(100 + i, 100 ether, 50 ether);
            else inferenceCustomer(100 + i, 100 ether, 50 ether);
        }
    }

    function log(string memory label, uint256 a, uint256 b, uint256 c) internal view {
        (bool ok,) = CONSOLE.staticcall(abi.encodeWithSignature("log(string,uint256,uint256,uint256)", label, a, b, c));
        ok; // printing is best effort
    }

    function intrinsic(bytes memory data) internal pure returns (uint256 gas) {
        gas = 21_000;
        for (uint256 i; i < data.length; ++i) {
            gas += data[i] == 0 ? 4 : 16;
        }
    }

    function vouchers(uint256 n, uint256 round) internal view returns (Voucher[] memory vs) {
        vs = new Voucher[](n);
        for (uint256 i; i < n; ++i) {
            // 500 requests at ~0.0001 0G each per round: the cumulative amount grows.
            vs[i] = voucher(userKey(100 + i), provider, round * 0.05 ether + i, round);
        }
    }

    function settlements(uint256 n, uint256 round) internal view returns (TEESettlementData[] memory ds) {
        ds = new TEESettlementData[](n);
        for (uint256 i; i < n; ++i) {
            ds[i] = teeSettlement(userAddr(100 + i), 0.05 ether + i, round);
        }
    }

    function cool() internal {
        vm.cool(address(inference));
        vm.cool(address(ledger));
    }

    function measureVouchers(uint256 n) internal returns (uint256 exec, uint256 total) {
        customers(n, false);
        settleVs(vouchers(n, 1)); // first settlement: slots become non-zero
        Voucher[] memory vs = vouchers(n, 2);
        bytes memory data = abi.encodeCall(InferenceServing.settleVouchers, (vs));
        cool();
        vm.prank(provider);
        uint256 g = gasleft();
        uint8[] memory st = inference.settleVouchers(vs);
        exec = g - gasleft();
        for (uint256 i; i < n; ++i) {
            assertEq(st[i], 0, "settled");
        }
        total = exec + intrinsic(data);
        log("settleVouchers customers / exec gas / tx gas", n, exec, total);
        log("settleVouchers customers / exec per customer / tx per customer", n, exec / n, total / n);
    }

    function measureTEE(uint256 n) internal returns (uint256 exec, uint256 total) {
        customers(n, true);
        settleTs(settlements(n, 1));
        TEESettlementData[] memory ds = settlements(n, 2);
        bytes memory data = abi.encodeCall(InferenceServing.settleFeesWithTEE, (ds));
        cool();
        vm.prank(provider);
        uint256 g = gasleft();
        uint8[] memory st = inference.settleFeesWithTEE(ds);
        exec = g - gasleft();
        for (uint256 i; i < n; ++i) {
            assertEq(st[i], 0, "settled");
        }
        total = exec + intrinsic(data);
        log("settleFeesWithTEE users / exec gas / tx gas", n, exec, total);
        log("settleFeesWithTEE users / exec per user / tx per user", n, exec / n, total / n);
    }

    function test_gas_vouchers_1() public {
        measureVouchers(1);
    }

    function test_gas_vouchers_10() public {
        measureVouchers(10);
    }

    /// @notice The target of issue 2: at most 45,000 gas per customer in a batch of 50.
    function test_gas_vouchers_50_meets_target() public {
        (, uint256 total) = measureVouchers(50);
        assertLe(total / 50, VOUCHER_TARGET_PER_CUSTOMER, "voucher gas per customer (tx total)");
    }

    function test_gas_tee_1() public {
        measureTEE(1);
    }

    function test_gas_tee_10() public {
        measureTEE(10);
    }

    function test_gas_tee_50() public {
        measureTEE(50);
    }
}
