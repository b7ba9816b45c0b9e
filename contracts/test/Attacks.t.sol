// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {Fixture} from "./utils/Fixture.sol";
import {FineTuningServing, VerifierInput} from "../src/FineTuningServing.sol";
import {ServingBase} from "../src/ServingBase.sol";

/// @notice Attacks found by reading the contracts as a customer, a provider and an owner would (red-team
///         pass after issue 9). Each test is the attack; it failed before the fix named in its comment.
contract AttacksTest is Fixture {
    address internal alice;
    bytes internal constant ROOT = hex"1234";
    bytes internal constant SECRET = hex"0405060708";

    function setUp() public override {
        super.setUp();
        alice = userAddr(1);
        addFtService(provider, tee);
        fundLedger(alice, 20 ether);
        transfer(alice, provider, FINE_TUNING, 10 ether);
        ownerAckFt(provider);
        userAckFt(alice, provider);
    }

    function providers1(address p) internal pure returns (address[] memory ps) {
        ps = new address[](1);
        ps[0] = p;
    }

    function retrieve(address user, address p) internal {
        vm.prank(user);
        ledger.retrieveFund(providers1(p), FINE_TUNING);
    }

    // ------------------------------------------------------------------ customer: key without paying

    /// Attack (customer): request a refund of everything, wait until just before it matures, acknowledge
    /// the deliverable, then, when the provider broadcasts `settleFees` (its calldata carries the
    /// ECIES-wrapped key), process the matured refund first. Before the fix the settlement reverted
    /// `InsufficientBalance` with the key already public: the customer had the model and paid nothing.
    /// Fix: an acknowledgement keeps matured refunds in the sub-account for `lockTime`.
    function test_attack_refund_front_runs_the_key_reveal() public {
        vm.prank(provider);
        ft.addDeliverable(alice, "task-1", ROOT);
        retrieve(alice, provider); // refund of all 10 ether requested now, matures at now + LOCK
        vm.warp(block.timestamp + LOCK - 10);
        vm.prank(alice);
        ft.acknowledgeDeliverable(provider, "task-1");
        (uint256 until, uint256 pending) = ft.getRefundFreeze(alice, provider);
        assertEq(until, block.timestamp + LOCK, "frozen until lockTime after the acknowledgement");
        assertEq(pending, 1, "one acknowledged deliverable to settle");
        VerifierInput memory v = verifierInput(alice, "task-1", SECRET, ROOT, 1, 4 ether);
        // The provider's transaction is in the mempool; the refund matures; the customer goes first.
        vm.warp(block.timestamp + 20);
        uint256 before = ledger.getLedger(alice).availableBalance;
        retrieve(alice, provider);
        assertEq(ledger.getLedger(alice).availableBalance, before, "nothing left the sub-account");
        assertEq(ft.getAccount(alice, provider).balance, 10 ether, "balance kept for the settlement");
        uint256 paid = provider.balance;
        vm.prank(provider);
        ft.settleFees(v);
        assertEq(provider.balance - paid, 4 ether, "provider paid when the key became public");
        assertEq(ft.getDeliverable(alice, provider, "task-1").encryptedSecret, SECRET, "revealed");
        // Settled: nothing is frozen any more, the rest of the refund comes back at once.
        (, pending) = ft.getRefundFreeze(alice, provider);
        assertEq(pending, 0, "nothing left to settle");
        retrieve(alice, provider);
        assertEq(ledger.getLedger(alice).availableBalance, before + 6 ether, "rest refunded after settlement");
    }

    /// The freeze cannot hold a customer's money hostage: a provider that never settles an acknowledged
    /// deliverable only delays the refund by `lockTime` after the acknowledgement.
    function test_refund_freeze_ends_lockTime_after_the_acknowledgement() public {
        vm.prank(provider);
        ft.addDeliverable(alice, "task-1", ROOT);
        vm.prank(alice);
        ft.acknowledgeDeliverable(provider, "task-1");
        retrieve(alice, provider);
        vm.warp(block.timestamp + LOCK - 1);
        uint256 before = ledger.getLedger(alice).availableBalance;
        retrieve(alice, provider);
        assertEq(ledger.getLedger(alice).availableBalance, before, "still frozen");
        vm.warp(block.timestamp + 1);
        retrieve(alice, provider);
        assertEq(ledger.getLedger(alice).availableBalance, before + 10 ether, "refunded after lockTime");
        // An unacknowledged deliverable freezes nothing (the penalty path reveals nothing).
        address bob = userAddr(2);
        fundLedger(bob, 10 ether);
        transfer(bob, provider, FINE_TUNING, 5 ether);
        vm.prank(provider);
        ft.addDeliverable(bob, "task-b", ROOT);
        retrieve(bob, provider);
        vm.warp(block.timestamp + LOCK);
        before = ledger.getLedger(bob).availableBalance;
        retrieve(bob, provider);
        assertEq(ledger.getLedger(bob).availableBalance, before + 5 ether, "not frozen");
    }

    // ------------------------------------------------------------------ provider: pay twice for one signature

    /// Attack (provider): fine-tuning's `VerifierMessage` (0G's format) does not name the provider. A second
    /// provider registers the first one's TEE signer (its URL proxies the first one's attestation, which
    /// binds only the signer), gets the owner's and the customer's acknowledgement of that address, and
    /// replays the first provider's settlement against a deliverable it recorded with the same id and root:
    /// the customer pays the penalty (or the fee) twice for one task. Fix: a TEE signer is bound for good
    /// to the first provider the owner acknowledged it for.
    function test_attack_second_provider_replays_a_settlement_signed_for_the_first() public {
        address mallory = address(0xB2);
        addFtService(mallory, tee);
        transfer(alice, mallory, FINE_TUNING, 5 ether);
        // The genuine task at `provider`, settled at the penalty (never acknowledged).
        vm.prank(provider);
        ft.addDeliverable(alice, "task-1", ROOT);
        VerifierInput memory v = verifierInput(alice, "task-1", "", ROOT, 1, 10 ether);
        vm.prank(provider);
        ft.settleFees(v);
        assertEq(ft.getAccount(alice, provider).balance, 7 ether, "penalty paid once");
        // The owner checks mallory's (proxied) attestation and acknowledges the signer: refused.
        assertEq(ft.teeSignerProvider(tee), provider, "signer bound to the first provider");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.TEESignerBoundToOtherProvider.selector, tee, provider));
        ft.acknowledgeTEESignerByOwner(mallory);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.TEESignerBoundToOtherProvider.selector, tee, provider));
        ft.acknowledgeTEESignerAddressByOwner(mallory, tee);
        // So the replay is refused even though the customer acknowledged the signer at mallory.
        userAckFt(alice, mallory);
        vm.prank(mallory);
        ft.addDeliverable(alice, "task-1", ROOT);
        vm.prank(mallory);
        vm.expectRevert(
            abi.encodeWithSelector(FineTuningServing.TEESignerNotAcknowledgedByOwner.selector, mallory, tee)
        );
        ft.settleFees(v);
        assertEq(ft.getAccount(alice, mallory).balance, 5 ether, "nothing taken at mallory");
        // The binding outlives the first provider's swap and removal: old signatures stay unusable.
        vm.prank(provider);
        ft.removeService();
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.TEESignerBoundToOtherProvider.selector, tee, provider));
        ft.acknowledgeTEESignerByOwner(mallory);
        // The first provider can get its own signer acknowledged again.
        addFtService(provider, tee);
        ownerAckFt(provider);
        assertTrue(ft.getService(provider).teeSignerAcknowledged, "re-acknowledged for its provider");
    }

    /// The same rule on the inference contract (where `TEESettlement` names the provider, so it is
    /// defence in depth: a signer address vouched for by the owner identifies one provider).
    function test_inference_signer_serves_one_provider() public {
        address mallory = address(0xB2);
        addInferenceService(provider, tee);
        addInferenceService(mallory, tee);
        ownerAckInference(provider);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.TEESignerBoundToOtherProvider.selector, tee, provider));
        inference.acknowledgeTEESignerByOwner(mallory);
        assertEq(inference.teeSignerProvider(tee), provider, "bound");
        assertEq(inference.teeSignerProvider(mallory), address(0), "unbound");
        assertTrue(!inference.getService(mallory).teeSignerAcknowledged, "mallory not acknowledged");
    }
}
