// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {Fixture} from "./utils/Fixture.sol";
import {
    FineTuningServing,
    Service as FtService,
    Deliverable,
    AccountDetails,
    AccountSummary,
    VerifierInput
} from "../src/FineTuningServing.sol";
import {ServingBase} from "../src/ServingBase.sol";
import {Ownable} from "../src/lib/Ownable.sol";

contract FineTuningServingTest is Fixture {
    address internal alice;
    bytes internal constant ROOT = hex"1234";
    bytes internal constant SECRET = hex"0405060708";

    function setUp() public override {
        super.setUp();
        alice = userAddr(1);
        addFtService(provider, tee);
        fundLedger(alice, 20 ether);
        transfer(alice, provider, FINE_TUNING, 10 ether);
        // Settlement needs the provider's TEE signer acknowledged by the owner and by the customer.
        ownerAckFt(provider);
        userAckFt(alice, provider);
    }

    function addDeliverable(string memory id) internal {
        vm.prank(provider);
        ft.addDeliverable(alice, id, ROOT);
    }

    function ack(string memory id) internal {
        vm.prank(alice);
        ft.acknowledgeDeliverable(provider, id);
    }

    function settle(VerifierInput memory input) internal {
        vm.prank(provider);
        ft.settleFees(input);
    }

    // ------------------------------------------------------------------ deployment and service

    function test_constructor_config() public {
        assertEq(ft.penaltyPercentage(), PENALTY, "penalty");
        assertEq(ft.MAX_DELIVERABLES_PER_ACCOUNT(), MAX_DELIVERABLES, "max deliverables");
        assertEq(ft.lockTime(), LOCK, "lock");
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.PenaltyPercentageTooHigh.selector, 101));
        new FineTuningServing(LOCK, address(ledger), owner, 101, STAKE, 3);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.InvalidConfig.selector, "maxDeliverablesPerAccount", 0));
        new FineTuningServing(LOCK, address(ledger), owner, 10, STAKE, 0);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.InvalidConfig.selector, "maxDeliverablesPerAccount", 65));
        new FineTuningServing(LOCK, address(ledger), owner, 10, STAKE, 65);
        vm.expectRevert(ServingBase.AlreadyInitialized.selector);
        ft.initialize(LOCK, address(ledger), owner, 10);
    }

    function test_updatePenaltyPercentage() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.NotOwner.selector, address(this), owner));
        ft.updatePenaltyPercentage(50);
        vm.startPrank(owner);
        ft.updatePenaltyPercentage(50);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.PenaltyPercentageTooHigh.selector, 101));
        ft.updatePenaltyPercentage(101);
        vm.stopPrank();
        assertEq(ft.penaltyPercentage(), 50, "updated");
    }

    function test_service_lifecycle() public {
        FtService memory s = ft.getService(provider);
        assertEq(s.url, "https://ft.example", "url");
        assertEq(s.quota.gpuType, "H100", "gpu");
        assertEq(s.quota.cpuCount, 8, "cpu");
        assertEq(s.pricePerToken, 1e9, "price");
        assertEq(s.models.length, 1, "models");
        assertEq(s.models[0], "qwen-0.5b", "model");
        assertEq(s.teeSignerAddress, tee, "signer");
        assertEq(ft.getAllServices().length, 1, "all");
        vm.prank(owner);
        ft.acknowledgeTEESignerByOwner(provider);
        assertTrue(ft.getService(provider).teeSignerAcknowledged, "acked");

        // Update: no stake, models replaced, same signer keeps the ack.
        string[] memory models = new string[](2);
        models[0] = "a";
        models[1] = "b";
        vm.prank(provider);
        ft.addOrUpdateService("https://ft2.example", quota(), 2e9, true, models, tee);
        s = ft.getService(provider);
        assertEq(s.models.length, 2, "models replaced");
        assertTrue(s.occupied, "occupied");
        assertTrue(s.teeSignerAcknowledged, "ack kept");
        vm.prank(owner);
        ft.revokeTEESignerAcknowledgement(provider);
        assertTrue(!ft.getService(provider).teeSignerAcknowledged, "revoked");

        vm.deal(provider, 1);
        vm.prank(provider);
        vm.expectRevert(ServingBase.CannotAddStakeWhenUpdating.selector);
        ft.addOrUpdateService{value: 1}("u", quota(), 1, false, models, tee);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.TooManyModels.selector, 33, 32));
        ft.addOrUpdateService("u", quota(), 1, false, new string[](33), tee);

        uint256 before = provider.balance;
        vm.prank(provider);
        ft.removeService();
        assertEq(provider.balance, before + STAKE, "stake back");
        assertEq(ft.getAllServices().length, 0, "gone");
        vm.expectRevert(abi.encodeWithSelector(ServingBase.ServiceNotExist.selector, provider));
        ft.getService(provider);
    }

    function test_service_errors() public {
        address p2 = address(0xC0C);
        vm.deal(p2, 10 ether);
        vm.prank(p2);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.InsufficientStake.selector, 1, STAKE));
        ft.addOrUpdateService{value: 1}("u", quota(), 1, false, new string[](0), tee);
        vm.prank(p2);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.ServiceNotExist.selector, p2));
        ft.removeService();
        addFtService(p2, address(0));
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.NoTEESigner.selector, p2));
        ft.acknowledgeTEESignerByOwner(p2);
    }

    // ------------------------------------------------------------------ deliverables

    function test_add_and_get_deliverables() public {
        addDeliverable("task-1");
        addDeliverable("task-2");
        Deliverable memory d = ft.getDeliverable(alice, provider, "task-1");
        assertEq(d.id, "task-1", "id");
        assertEq(d.modelRootHash, ROOT, "root");
        assertEq(d.encryptedSecret.length, 0, "no secret");
        assertTrue(!d.acknowledged && !d.settled, "fresh");
        assertEq(d.timestamp, block.timestamp, "ts");
        Deliverable[] memory all = ft.getDeliverables(alice, provider);
        assertEq(all.length, 2, "two in flight");
        assertEq(all[1].id, "task-2", "order");
        AccountDetails memory a = ft.getAccount(alice, provider);
        assertEq(a.deliverablesCount, 2, "count");
        assertEq(a.deliverablesHead, 0, "head");
        assertEq(a.deliverables.length, 2, "in account");
        assertEq(a.balance, 10 ether, "balance");
    }

    function test_addDeliverable_errors() public {
        vm.startPrank(provider);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.AccountNotExists.selector, userAddr(5), provider));
        ft.addDeliverable(userAddr(5), "x", ROOT);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.DeliverableIdInvalidLength.selector, 0));
        ft.addDeliverable(alice, "", ROOT);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.DeliverableIdInvalidLength.selector, 129));
        ft.addDeliverable(alice, string(new bytes(129)), ROOT);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.InvalidModelRootHash.selector, 0));
        ft.addDeliverable(alice, "x", "");
        ft.addDeliverable(alice, "x", ROOT);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.DeliverableAlreadyExists.selector, "x"));
        ft.addDeliverable(alice, "x", ROOT);
        vm.stopPrank();
        vm.prank(address(0xC0C));
        vm.expectRevert(abi.encodeWithSelector(ServingBase.ServiceNotExist.selector, address(0xC0C)));
        ft.addDeliverable(alice, "y", ROOT);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.DeliverableNotExists.selector, "nope"));
        ft.getDeliverable(alice, provider, "nope");
    }

    function test_capacity_evicts_only_settled() public {
        addDeliverable("a");
        addDeliverable("b");
        addDeliverable("c");
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.CannotEvictUnsettledDeliverable.selector, "a"));
        ft.addDeliverable(alice, "d", ROOT);
        // Settle "b" (unacknowledged: penalty); then "d" evicts "b", not the older unsettled "a".
        settle(verifierInput(alice, "b", "", ROOT, 1, 1 ether));
        vm.expectEmit(true, true, false, true, address(ft));
        emit FineTuningServing.DeliverableEvicted(provider, alice, "b", "d", block.timestamp);
        addDeliverable("d");
        Deliverable[] memory all = ft.getDeliverables(alice, provider);
        assertEq(all.length, 3, "still full");
        assertEq(all[0].id, "a", "a kept");
        assertEq(all[1].id, "c", "c kept");
        assertEq(all[2].id, "d", "d added");
        // An evicted id can never be reused.
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.DeliverableAlreadyExists.selector, "b"));
        ft.addDeliverable(alice, "b", ROOT);
    }

    function test_acknowledge() public {
        addDeliverable("t");
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.DeliverableNotExists.selector, "x"));
        ft.acknowledgeDeliverable(provider, "x");
        vm.prank(userAddr(5));
        vm.expectRevert(abi.encodeWithSelector(ServingBase.AccountNotExists.selector, userAddr(5), provider));
        ft.acknowledgeDeliverable(provider, "t");
        ack("t");
        assertTrue(ft.getDeliverable(alice, provider, "t").acknowledged, "acked");
        settle(verifierInput(alice, "t", SECRET, ROOT, 1, 1 ether));
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.CannotAcknowledgeSettledDeliverable.selector, "t"));
        ft.acknowledgeDeliverable(provider, "t");
    }

    function test_abandon() public {
        addDeliverable("a");
        addDeliverable("b");
        addDeliverable("c");
        vm.expectEmit(true, true, false, true, address(ft));
        emit FineTuningServing.DeliverableAbandoned(alice, provider, "b", block.timestamp);
        vm.prank(provider);
        ft.abandonDeliverable(alice, "b");
        Deliverable[] memory all = ft.getDeliverables(alice, provider);
        assertEq(all.length, 2, "removed");
        assertEq(all[0].id, "a", "order a");
        assertEq(all[1].id, "c", "order c");
        assertEq(ft.getAccount(alice, provider).balance, 10 ether, "no fee");
        // Room again without eviction.
        addDeliverable("d");

        ack("a");
        vm.startPrank(provider);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.DeliverableAlreadyAcknowledged.selector, "a"));
        ft.abandonDeliverable(alice, "a");
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.DeliverableNotExists.selector, "b"));
        ft.abandonDeliverable(alice, "b");
        vm.stopPrank();
        settle(verifierInput(alice, "c", "", ROOT, 1, 1 ether));
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.DeliverableAlreadySettled.selector, "c"));
        ft.abandonDeliverable(alice, "c");
        // Only the provider of the sub-account can abandon.
        vm.prank(address(0xC0C));
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.DeliverableNotExists.selector, "d"));
        ft.abandonDeliverable(alice, "d");
    }

    // ------------------------------------------------------------------ settlement

    function test_settle_acknowledged_reveals_secret_and_pays_full() public {
        addDeliverable("t");
        ack("t");
        uint256 before = provider.balance;
        settle(verifierInput(alice, "t", SECRET, ROOT, 5, 2 ether));
        Deliverable memory d = ft.getDeliverable(alice, provider, "t");
        assertTrue(d.settled, "settled");
        assertEq(d.encryptedSecret, SECRET, "revealed");
        assertEq(provider.balance, before + 2 ether, "full fee");
        assertEq(ft.getAccount(alice, provider).balance, 8 ether, "balance");
        assertEq(ft.getAccount(alice, provider).nonce, 5, "nonce");
        assertEq(ledger.getLedger(alice).totalBalance, 18 ether, "ledger total");
    }

    function test_settle_unacknowledged_charges_penalty_without_secret() public {
        addDeliverable("t");
        uint256 before = provider.balance;
        settle(verifierInput(alice, "t", "", ROOT, 1, 2 ether));
        Deliverable memory d = ft.getDeliverable(alice, provider, "t");
        assertTrue(d.settled, "settled");
        assertEq(d.encryptedSecret.length, 0, "not revealed");
        assertEq(provider.balance, before + 0.6 ether, "30% penalty");
    }

    function test_settle_errors() public {
        addDeliverable("t");
        addDeliverable("u");
        ack("u");
        VerifierInput memory v;

        v = verifierInput(alice, "t", SECRET, ROOT, 1, 1 ether);
        vm.prank(provider);
        vm.expectRevert(FineTuningServing.SecretShouldBeEmpty.selector);
        ft.settleFees(v);

        v = verifierInput(alice, "u", "", ROOT, 1, 1 ether);
        vm.prank(provider);
        vm.expectRevert(FineTuningServing.SecretShouldNotBeEmpty.selector);
        ft.settleFees(v);

        v = verifierInput(alice, "t", "", hex"9999", 1, 1 ether);
        vm.prank(provider);
        vm.expectRevert(
            abi.encodeWithSelector(
                FineTuningServing.InvalidVerifierInput.selector, "modelRootHash does not match the deliverable"
            )
        );
        ft.settleFees(v);

        v = verifierInput(alice, "t", "", ROOT, 1, 1 ether);
        v.taskFee = 0.1 ether;
        vm.prank(provider);
        vm.expectRevert(
            abi.encodeWithSelector(
                FineTuningServing.InvalidVerifierInput.selector, "signature does not recover to the TEE signer"
            )
        );
        ft.settleFees(v);

        v = verifierInput(alice, "u", SECRET, ROOT, 1, 100 ether);
        vm.prank(provider);
        vm.expectRevert(
            abi.encodeWithSelector(FineTuningServing.InsufficientBalance.selector, alice, provider, 10 ether, 100 ether)
        );
        ft.settleFees(v);

        v = verifierInput(alice, "nope", "", ROOT, 1, 1 ether);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.DeliverableNotExists.selector, "nope"));
        ft.settleFees(v);

        v = verifierInput(userAddr(6), "t", "", ROOT, 1, 1 ether);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.AccountNotExists.selector, userAddr(6), provider));
        ft.settleFees(v);

        // Settle once, then: same deliverable again, and a stale nonce on another deliverable.
        settle(verifierInput(alice, "t", "", ROOT, 7, 1 ether));
        v = verifierInput(alice, "t", "", ROOT, 8, 1 ether);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.DeliverableAlreadySettled.selector, "t"));
        ft.settleFees(v);
        v = verifierInput(alice, "u", SECRET, ROOT, 7, 1 ether);
        vm.prank(provider);
        vm.expectRevert(
            abi.encodeWithSelector(
                FineTuningServing.InvalidVerifierInput.selector, "nonce must be greater than the account nonce"
            )
        );
        ft.settleFees(v);
    }

    // ------------------------------------------------------------------ issue 9: whose signer may charge

    /// @notice Issue 9 item 2 (regression): after the provider swaps in a key of its choosing, a settlement
    ///         signed by that key neither pays nor reveals anything until the owner and the customer
    ///         acknowledge the new address; then it pays.
    function test_issue9_signer_swap_refused_until_both_acknowledge() public {
        addDeliverable("t");
        ack("t");
        uint256 rogueKey = 0xBAD;
        address rogue = vm.addr(rogueKey);
        string[] memory models = new string[](0);
        vm.prank(provider);
        ft.addOrUpdateService("https://ft.example", quota(), 1e9, false, models, rogue);
        assertTrue(!ft.getService(provider).teeSignerAcknowledged, "swap clears the owner's ack");
        assertTrue(!ft.getAccount(alice, provider).acknowledged, "the ABI's ack reads false after a swap");

        VerifierInput memory v;
        v.id = "t";
        v.encryptedSecret = SECRET;
        v.modelRootHash = ROOT;
        v.nonce = 1;
        v.taskFee = 5 ether;
        v.user = alice;
        v.signature = sig(rogueKey, ft.verifierMessageDigest("t", SECRET, ROOT, 1, 5 ether, alice));
        vm.prank(provider);
        vm.expectRevert(
            abi.encodeWithSelector(FineTuningServing.TEESignerNotAcknowledgedByOwner.selector, provider, rogue)
        );
        ft.settleFees(v);
        ownerAckFt(provider);
        vm.prank(provider);
        vm.expectRevert(
            abi.encodeWithSelector(
                FineTuningServing.TEESignerNotAcknowledgedByUser.selector, alice, provider, rogue, tee
            )
        );
        ft.settleFees(v);
        Deliverable memory d = ft.getDeliverable(alice, provider, "t");
        assertTrue(!d.settled && d.encryptedSecret.length == 0, "not settled, nothing revealed");
        assertEq(ft.getAccount(alice, provider).balance, 10 ether, "untouched");

        userAckFt(alice, provider);
        uint256 before = provider.balance;
        settle(v);
        assertEq(provider.balance, before + 5 ether, "pays once both acknowledge the current signer");
        assertEq(ft.getDeliverable(alice, provider, "t").encryptedSecret, SECRET, "revealed");
    }

    /// @notice Issue 9: the owner's revocation refuses fine-tuning settlement (the penalty path too).
    function test_issue9_owner_revocation_refuses_settlement() public {
        addDeliverable("t");
        vm.prank(owner);
        ft.revokeTEESignerAcknowledgement(provider);
        VerifierInput memory v = verifierInput(alice, "t", "", ROOT, 1, 1 ether);
        vm.prank(provider);
        vm.expectRevert(
            abi.encodeWithSelector(FineTuningServing.TEESignerNotAcknowledgedByOwner.selector, provider, tee)
        );
        ft.settleFees(v);
        ownerAckFt(provider);
        settle(v);
        assertEq(ft.getAccount(alice, provider).balance, 10 ether - 0.3 ether, "penalty charged once allowed");
    }

    /// @notice Issue 9: a customer who never acknowledged the TEE signer cannot be charged, not even the
    ///         penalty for an unacknowledged deliverable.
    function test_issue9_customer_without_signer_ack_cannot_be_charged() public {
        address bob = userAddr(2);
        fundLedger(bob, 10 ether);
        transfer(bob, provider, FINE_TUNING, 5 ether);
        vm.prank(provider);
        ft.addDeliverable(bob, "b", ROOT);
        VerifierInput memory v = verifierInput(bob, "b", "", ROOT, 1, 1 ether);
        vm.prank(provider);
        vm.expectRevert(
            abi.encodeWithSelector(
                FineTuningServing.TEESignerNotAcknowledgedByUser.selector, bob, provider, tee, address(0)
            )
        );
        ft.settleFees(v);
        userAckFt(bob, provider);
        settle(v);
        assertEq(ft.getAccount(bob, provider).balance, 5 ether - 0.3 ether, "penalty after the customer's ack");
    }

    /// @notice Issue 9: the pinned acknowledgements work on fine-tuning too.
    function test_issue9_pinned_acknowledgements() public {
        address rogue = vm.addr(0xBAD);
        vm.prank(provider);
        ft.addOrUpdateService("https://ft.example", quota(), 1e9, false, new string[](0), rogue);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.TEESignerChanged.selector, provider, tee, rogue));
        ft.acknowledgeTEESignerAddressByOwner(provider, tee);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.TEESignerChanged.selector, provider, tee, rogue));
        ft.acknowledgeTEESignerAddress(provider, tee);
        vm.prank(owner);
        ft.acknowledgeTEESignerAddressByOwner(provider, rogue);
        vm.prank(alice);
        ft.acknowledgeTEESignerAddress(provider, rogue);
        (,,, bool settleable) = ft.getTEESignerAcknowledgements(alice, provider);
        assertTrue(settleable, "settleable");
        assertTrue(ft.getAccount(alice, provider).acknowledged, "acknowledged");
    }

    function test_settle_needs_tee_signer() public {
        address p2 = vm.addr(0xC0C);
        addFtService(p2, address(0));
        transfer(alice, p2, FINE_TUNING, 1 ether);
        vm.prank(p2);
        ft.addDeliverable(alice, "t", ROOT);
        VerifierInput memory v = verifierInput(alice, "t", "", ROOT, 1, 1 ether);
        vm.prank(p2);
        vm.expectRevert(
            abi.encodeWithSelector(
                FineTuningServing.InvalidVerifierInput.selector, "provider has no service or no TEE signer"
            )
        );
        ft.settleFees(v);
    }

    function test_verifier_digest_matches_spec() public view {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("0G Fine-Tuning Serving"),
                keccak256("1"),
                block.chainid,
                address(ft)
            )
        );
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256(
                    "VerifierMessage(string id,bytes encryptedSecret,bytes modelRootHash,uint256 nonce,uint256 taskFee,address user)"
                ),
                keccak256("t"),
                keccak256(SECRET),
                keccak256(ROOT),
                3,
                4,
                alice
            )
        );
        assertEq(
            ft.verifierMessageDigest("t", SECRET, ROOT, 3, 4, alice),
            keccak256(abi.encodePacked(hex"1901", domain, structHash)),
            "digest"
        );
    }

    function testFuzz_penalty(uint96 fee, uint8 pct) public {
        uint256 p = bound(pct, 0, 100);
        uint256 f = bound(fee, 0, 10 ether);
        vm.prank(owner);
        ft.updatePenaltyPercentage(p);
        addDeliverable("t");
        uint256 before = provider.balance;
        settle(verifierInput(alice, "t", "", ROOT, 1, f));
        assertEq(provider.balance - before, f * p / 100, "penalty fee");
        assertEq(ft.getAccount(alice, provider).balance, 10 ether - f * p / 100, "balance");
    }

    // ------------------------------------------------------------------ accounts

    function test_account_views_and_deletion() public {
        address bob = userAddr(2);
        fundLedger(bob, 5 ether);
        transfer(bob, provider, FINE_TUNING, 1 ether);
        (AccountSummary[] memory page, uint256 total) = ft.getAllAccounts(0, 10);
        assertEq(total, 2, "all");
        assertEq(page[1].user, bob, "bob");
        (page, total) = ft.getAccountsByProvider(provider, 0, 10);
        assertEq(total, 2, "by provider");
        (page, total) = ft.getAccountsByUser(bob, 0, 10);
        assertEq(total, 1, "by user");
        assertEq(page[0].balance, 1 ether, "bob balance");
        address[] memory users = new address[](3);
        users[0] = alice;
        users[1] = userAddr(9);
        users[2] = bob;
        vm.prank(provider);
        AccountSummary[] memory batch = ft.getBatchAccountsByUsers(users);
        assertEq(batch[0].balance, 10 ether, "alice");
        assertEq(batch[1].user, address(0), "none");
        assertEq(batch[2].user, bob, "bob");

        // Deleting alice's ledger drops her deliverables with her sub-account.
        vm.prank(provider);
        ft.addDeliverable(alice, "t", ROOT);
        address[] memory ps = new address[](1);
        ps[0] = provider;
        vm.prank(alice);
        ledger.retrieveFund(ps, FINE_TUNING);
        vm.warp(block.timestamp + LOCK);
        vm.prank(alice);
        ledger.retrieveFund(ps, FINE_TUNING);
        vm.prank(alice);
        ledger.deleteLedger();
        assertEq(ft.getDeliverables(alice, provider).length, 0, "deliverables dropped");
        (, total) = ft.getAllAccounts(0, 10);
        assertEq(total, 1, "one left");
        // Ids stay used across deletion.
        fundLedger(alice, 5 ether);
        transfer(alice, provider, FINE_TUNING, 1 ether);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(FineTuningServing.DeliverableAlreadyExists.selector, "t"));
        ft.addDeliverable(alice, "t", ROOT);
    }
}
