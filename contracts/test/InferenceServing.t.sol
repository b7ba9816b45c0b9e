// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {Fixture} from "./utils/Fixture.sol";
import {LedgerManager} from "../src/LedgerManager.sol";
import {
    InferenceServing,
    Service,
    Account,
    ServiceParams,
    TEESettlementData,
    Voucher
} from "../src/InferenceServing.sol";
import {ServingBase} from "../src/ServingBase.sol";
import {Ownable} from "../src/lib/Ownable.sol";

contract InferenceServingTest is Fixture {
    address internal alice;
    uint256 internal aliceKey;

    function setUp() public override {
        super.setUp();
        aliceKey = userKey(1);
        alice = userAddr(1);
        addInferenceService(provider, tee);
    }

    // ------------------------------------------------------------------ deployment

    function test_constructor_config() public {
        assertEq(inference.lockTime(), LOCK, "lock");
        assertEq(inference.ledgerAddress(), address(ledger), "ledger");
        assertEq(inference.MIN_PROVIDER_STAKE(), STAKE, "stake");
        assertTrue(inference.initialized(), "initialized");
        assertTrue(inference.supportsInterface(0x01ffc9a7), "erc165");
        assertTrue(!inference.supportsInterface(0xffffffff), "not ffffffff");
        vm.expectRevert(abi.encodeWithSelector(ServingBase.LockTimeOutOfRange.selector, 59, 60, 30 days));
        new InferenceServing(59, address(ledger), owner, STAKE);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.InvalidAddress.selector, address(0)));
        new InferenceServing(LOCK, address(0), owner, STAKE);
        vm.expectRevert(ServingBase.AlreadyInitialized.selector);
        inference.initialize(LOCK, address(ledger), owner);
    }

    function test_receive_refuses() public {
        vm.deal(alice, 1 ether);
        vm.prank(alice);
        (bool ok,) = address(inference).call{value: 1 ether}("");
        assertTrue(!ok, "accepted");
    }

    function test_updateLockTime() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.NotOwner.selector, address(this), owner));
        inference.updateLockTime(2 hours);
        vm.startPrank(owner);
        inference.updateLockTime(2 hours);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.LockTimeOutOfRange.selector, 31 days, 60, 30 days));
        inference.updateLockTime(31 days);
        vm.stopPrank();
        assertEq(inference.lockTime(), 2 hours, "updated");
    }

    // ------------------------------------------------------------------ services

    function test_addOrUpdateService() public {
        Service memory s = inference.getService(provider);
        assertEq(s.provider, provider, "provider");
        assertEq(s.url, "https://provider.example", "url");
        assertEq(s.model, "demo-model", "model");
        assertEq(s.verifiability, "TeeML", "verifiability");
        assertEq(s.inputPrice, 1e9, "input");
        assertEq(s.outputPrice, 2e9, "output");
        assertEq(s.teeSignerAddress, tee, "signer");
        assertTrue(!s.teeSignerAcknowledged, "not acked");
        assertEq(s.updatedAt, block.timestamp, "updated");
        assertEq(address(inference).balance, STAKE, "stake held");
        assertTrue(inference.serviceExists(provider), "exists");

        vm.prank(owner);
        inference.acknowledgeTEESignerByOwner(provider);
        assertTrue(inference.getService(provider).teeSignerAcknowledged, "acked");

        // Update with the same signer keeps the acknowledgement; a new signer clears it.
        ServiceParams memory p = serviceParams(tee);
        p.url = "https://new.example";
        vm.prank(provider);
        inference.addOrUpdateService(p);
        assertEq(inference.getService(provider).url, "https://new.example", "url updated");
        assertTrue(inference.getService(provider).teeSignerAcknowledged, "still acked");
        p.teeSignerAddress = address(0xBEEF);
        vm.prank(provider);
        inference.addOrUpdateService(p);
        assertTrue(!inference.getService(provider).teeSignerAcknowledged, "ack cleared");
    }

    function test_addOrUpdateService_errors() public {
        address p2 = address(0xC0C);
        vm.deal(p2, 10 ether);
        vm.prank(p2);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.InsufficientStake.selector, STAKE - 1, STAKE));
        inference.addOrUpdateService{value: STAKE - 1}(serviceParams(tee));
        vm.deal(provider, 1 ether);
        vm.prank(provider);
        vm.expectRevert(ServingBase.CannotAddStakeWhenUpdating.selector);
        inference.addOrUpdateService{value: 1}(serviceParams(tee));
        ServiceParams memory p = serviceParams(tee);
        p.additionalInfo = string(new bytes(4097));
        vm.prank(provider);
        vm.expectRevert(ServingBase.AdditionalInfoTooLong.selector);
        inference.addOrUpdateService(p);
    }

    function test_removeService_returns_stake() public {
        uint256 before = provider.balance;
        vm.prank(provider);
        inference.removeService();
        assertEq(provider.balance, before + STAKE, "stake back");
        assertTrue(!inference.serviceExists(provider), "gone");
        vm.expectRevert(abi.encodeWithSelector(ServingBase.ServiceNotExist.selector, provider));
        inference.getService(provider);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.ServiceNotExist.selector, provider));
        inference.removeService();
    }

    function test_getAllServices_pagination() public {
        for (uint256 i; i < 4; ++i) {
            addInferenceService(address(uint160(0x7000 + i)), tee);
        }
        (Service[] memory page, uint256 total) = inference.getAllServices(0, 50);
        assertEq(total, 5, "total");
        assertEq(page.length, 5, "all");
        (page,) = inference.getAllServices(3, 50);
        assertEq(page.length, 2, "tail");
        assertEq(page[1].provider, address(0x7003), "last");
        vm.expectRevert(abi.encodeWithSelector(ServingBase.LimitTooLarge.selector, 101, 100));
        inference.getAllServices(0, 101);
        // Removing the first moves the last into its slot.
        vm.prank(provider);
        inference.removeService();
        (page, total) = inference.getAllServices(0, 50);
        assertEq(total, 4, "after remove");
        assertEq(page[0].provider, address(0x7003), "moved");
    }

    // ------------------------------------------------------------------ TEE signer acknowledgements

    function test_owner_ack_and_revoke() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.NotOwner.selector, address(this), owner));
        inference.acknowledgeTEESignerByOwner(provider);
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.ServiceNotExist.selector, alice));
        inference.acknowledgeTEESignerByOwner(alice);
        vm.expectEmit(true, true, false, true, address(inference));
        emit ServingBase.ProviderTEESignerAcknowledged(provider, tee, true);
        inference.acknowledgeTEESignerByOwner(provider);
        inference.revokeTEESignerAcknowledgement(provider);
        vm.stopPrank();
        assertTrue(!inference.getService(provider).teeSignerAcknowledged, "revoked");

        address p2 = address(0xC0C);
        addInferenceService(p2, address(0));
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(InferenceServing.NoTEESigner.selector, p2));
        inference.acknowledgeTEESignerByOwner(p2);
    }

    function test_user_ack() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.AccountNotExists.selector, alice, provider));
        inference.acknowledgeTEESigner(provider, true);
        inferenceCustomer(1, 10 ether, 5 ether);
        vm.expectEmit(true, true, true, true, address(inference));
        emit ServingBase.UserTEESignerAcknowledged(alice, provider, tee, true);
        vm.prank(alice);
        inference.acknowledgeTEESigner(provider, true);
        assertTrue(inference.getAccount(alice, provider).acknowledged, "acked");
        (,, address recorded,) = inference.getTEESignerAcknowledgements(alice, provider);
        assertEq(recorded, tee, "the signer's address is recorded");
        // Withdrawing a live acknowledgement needs an empty sub-account (as 0G's client requires).
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(ServingBase.CannotRevokeWithNonZeroBalance.selector, alice, provider, 5 ether)
        );
        inference.acknowledgeTEESigner(provider, false);
        emptySubAccount(alice);
        vm.expectEmit(true, true, true, true, address(inference));
        emit ServingBase.UserTEESignerAcknowledged(alice, provider, tee, false);
        vm.prank(alice);
        inference.acknowledgeTEESigner(provider, false);
        assertTrue(!inference.getAccount(alice, provider).acknowledged, "unacked");
        (,, recorded,) = inference.getTEESignerAcknowledgements(alice, provider);
        assertEq(recorded, address(0), "record cleared");
    }

    /// @dev Moves everything out of `user`'s inference sub-account with `provider` (refund + lock time).
    function emptySubAccount(address user) internal {
        address[] memory ps = new address[](1);
        ps[0] = provider;
        vm.prank(user);
        ledger.retrieveFund(ps, INFERENCE);
        vm.warp(block.timestamp + LOCK);
        vm.prank(user);
        ledger.retrieveFund(ps, INFERENCE);
        assertEq(inference.getAccount(user, provider).balance, 0, "emptied");
    }

    // ------------------------------------------------------------------ issue 9: whose signer may charge

    /// @notice Issue 9 item 2 (regression): a provider registered a key of its choosing after the customer
    ///         acknowledged the attested one. Nothing signed by the new key pays, even once the owner
    ///         acknowledges it, until the customer acknowledges the new address.
    function test_issue9_signer_swapped_after_customer_ack_is_refused() public {
        ownerAckInference(provider);
        teeCustomer(1, 10 ether, 5 ether);
        assertEq(settleT(teeSettlement(alice, 1 ether, 1)), 0, "the acknowledged signer pays");

        uint256 rogueKey = 0xBAD;
        address rogue = vm.addr(rogueKey);
        ServiceParams memory p = serviceParams(rogue);
        vm.prank(provider);
        inference.addOrUpdateService(p);
        assertTrue(!inference.getService(provider).teeSignerAcknowledged, "swap clears the owner's ack");
        assertTrue(!inference.getAccount(alice, provider).acknowledged, "the ABI's ack reads false after a swap");

        TEESettlementData memory d = teeSettlement(alice, 4 ether, 2);
        d.signature = sig(rogueKey, inference.teeSettlementDigest(d.requestsHash, 2, provider, alice, 4 ether));
        uint256 before = provider.balance;
        assertEq(settleT(d), 7, "refused: the owner has not acknowledged the new signer");
        ownerAckInference(provider);
        assertEq(settleT(d), 8, "refused: the customer acknowledged the old signer, not this one");
        vm.prank(provider);
        (address[] memory failed, uint8[] memory reasons,,) = inference.previewSettlementResults(one(d));
        assertEq(failed.length, 1, "preview agrees");
        assertEq(reasons[0], 8, "preview names why");
        assertEq(provider.balance, before, "nothing paid");
        assertEq(inference.getAccount(alice, provider).balance, 4 ether, "balance untouched");
        assertEq(inference.getAccount(alice, provider).nonce, 1, "nonce untouched");

        // The customer acknowledges the new signer after the owner did: now it pays.
        userAckInference(alice, provider);
        assertTrue(inference.getAccount(alice, provider).acknowledged, "acked again");
        assertEq(settleT(d), 0, "pays once both acknowledge the current signer");
        assertEq(provider.balance, before + 4 ether, "paid");
    }

    /// @notice Issue 9: an item signed by the old (acknowledged) key after a swap is refused too: only the
    ///         current signer counts.
    function test_issue9_old_signer_after_swap_is_refused() public {
        ownerAckInference(provider);
        teeCustomer(1, 10 ether, 5 ether);
        vm.prank(provider);
        inference.addOrUpdateService(serviceParams(vm.addr(0xBAD)));
        ownerAckInference(provider);
        // Signed by TEE_KEY, the signer the customer acknowledged, which is no longer the provider's.
        assertEq(settleT(teeSettlement(alice, 1 ether, 1)), 8, "not the current signer for this customer");
        userAckInference(alice, provider);
        assertEq(settleT(teeSettlement(alice, 1 ether, 1)), 5, "and its signature is not the current signer's");
        assertEq(inference.getAccount(alice, provider).balance, 5 ether, "untouched");
    }

    /// @notice Issue 9: the owner's revocation stops TEE settlement at once; re-acknowledging restores it.
    function test_issue9_owner_revocation_refuses_tee_settlement() public {
        ownerAckInference(provider);
        teeCustomer(1, 10 ether, 5 ether);
        vm.prank(owner);
        inference.revokeTEESignerAcknowledgement(provider);
        uint256 before = provider.balance;
        assertEq(settleT(teeSettlement(alice, 1 ether, 1)), 7, "owner revoked");
        assertEq(provider.balance, before, "nothing paid");
        (address signer, bool ownerAck, address userSigner, bool settleable) =
            inference.getTEESignerAcknowledgements(alice, provider);
        assertEq(signer, tee, "signer");
        assertTrue(!ownerAck, "owner ack off");
        assertEq(userSigner, tee, "customer's record kept");
        assertTrue(!settleable, "not settleable");
        ownerAckInference(provider);
        (,,, settleable) = inference.getTEESignerAcknowledgements(alice, provider);
        assertTrue(settleable, "settleable again");
        assertEq(settleT(teeSettlement(alice, 1 ether, 1)), 0, "pays after the owner acknowledges again");
    }

    /// @notice Issue 9: a customer who only signed vouchers (never acknowledged the signer) cannot be
    ///         charged by a TEE batch, whatever the TEE signs; its vouchers still settle.
    function test_issue9_voucher_only_customer_cannot_be_charged_by_tee() public {
        ownerAckInference(provider);
        inferenceCustomer(1, 10 ether, 5 ether);
        uint256 before = provider.balance;
        assertEq(settleT(teeSettlement(alice, 5 ether, 1)), 8, "customer never acknowledged");
        assertEq(provider.balance, before, "nothing paid");
        assertEq(settleV(voucher(aliceKey, provider, 1 ether, 1)), 0, "vouchers are unaffected");
        assertEq(provider.balance, before + 1 ether, "exactly the voucher");
    }

    /// @notice Issue 9: the customer may acknowledge before the owner does; settlement waits for both.
    function test_issue9_customer_ack_before_owner_ack() public {
        teeCustomer(1, 10 ether, 5 ether);
        assertEq(settleT(teeSettlement(alice, 1 ether, 1)), 7, "owner not yet");
        ownerAckInference(provider);
        assertEq(settleT(teeSettlement(alice, 1 ether, 1)), 0, "both now");
    }

    /// @notice Issue 9: acknowledging needs a signer to acknowledge; a stale acknowledgement (of a signer
    ///         the provider replaced) can be withdrawn with funds in the account, a live one cannot.
    function test_issue9_user_ack_edge_cases() public {
        address p2 = vm.addr(0xC0C);
        addInferenceService(p2, address(0));
        address bob = userAddr(2);
        fundLedger(bob, 10 ether);
        transfer(bob, p2, INFERENCE, 2 ether);
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(InferenceServing.NoTEESigner.selector, p2));
        inference.acknowledgeTEESigner(p2, true);
        vm.prank(bob);
        inference.acknowledgeTEESigner(p2, false); // nothing recorded: always allowed

        teeCustomer(1, 10 ether, 5 ether);
        vm.prank(provider);
        inference.addOrUpdateService(serviceParams(vm.addr(0xBAD)));
        vm.prank(alice);
        inference.acknowledgeTEESigner(provider, false); // stale: allowed with a balance
        (,, address recorded,) = inference.getTEESignerAcknowledgements(alice, provider);
        assertEq(recorded, address(0), "stale record cleared");

        // A provider without a service: nothing to acknowledge.
        vm.prank(provider);
        inference.removeService();
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.ServiceNotExist.selector, provider));
        inference.acknowledgeTEESigner(provider, true);
        (address signer, bool ownerAck,, bool settleable) = inference.getTEESignerAcknowledgements(alice, provider);
        assertTrue(signer == address(0) && !ownerAck && !settleable, "no service: nothing settleable");
    }

    /// @notice Issue 9: the pinned acknowledgements name the signer that was checked, so a signer swapped in
    ///         between the attestation check and the transaction (a front-run) is never acknowledged.
    function test_issue9_pinned_acknowledgements_refuse_a_front_run_swap() public {
        inferenceCustomer(1, 10 ether, 5 ether);
        address rogue = vm.addr(0xBAD);
        // The provider swaps right before the owner's and the customer's transactions.
        vm.prank(provider);
        inference.addOrUpdateService(serviceParams(rogue));
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.TEESignerChanged.selector, provider, tee, rogue));
        inference.acknowledgeTEESignerAddressByOwner(provider, tee);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.TEESignerChanged.selector, provider, tee, rogue));
        inference.acknowledgeTEESignerAddress(provider, tee);
        (address signer, bool ownerAck, address userSigner,) = inference.getTEESignerAcknowledgements(alice, provider);
        assertTrue(signer == rogue && !ownerAck && userSigner == address(0), "nothing acknowledged");

        // Only the owner; only a signer that exists.
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(Ownable.NotOwner.selector, alice, owner));
        inference.acknowledgeTEESignerAddressByOwner(provider, rogue);
        address p2 = address(0xC0C);
        addInferenceService(p2, address(0));
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(InferenceServing.NoTEESigner.selector, p2));
        inference.acknowledgeTEESignerAddressByOwner(p2, address(0));

        // Naming the current signer works, with the same events as the unpinned calls.
        vm.expectEmit(true, true, false, true, address(inference));
        emit ServingBase.ProviderTEESignerAcknowledged(provider, rogue, true);
        vm.prank(owner);
        inference.acknowledgeTEESignerAddressByOwner(provider, rogue);
        vm.expectEmit(true, true, true, true, address(inference));
        emit ServingBase.UserTEESignerAcknowledged(alice, provider, rogue, true);
        vm.prank(alice);
        inference.acknowledgeTEESignerAddress(provider, rogue);
        (,,, bool settleable) = inference.getTEESignerAcknowledgements(alice, provider);
        assertTrue(settleable, "both acknowledged the signer they named");
        vm.prank(userAddr(7));
        vm.expectRevert(abi.encodeWithSelector(ServingBase.AccountNotExists.selector, userAddr(7), provider));
        inference.acknowledgeTEESignerAddress(provider, rogue);
    }

    /// @notice Issue 9: removing and re-creating the service with the same key needs the owner again.
    function test_issue9_service_recreated_needs_owner_again() public {
        ownerAckInference(provider);
        teeCustomer(1, 10 ether, 5 ether);
        vm.prank(provider);
        inference.removeService();
        addInferenceService(provider, tee);
        assertEq(settleT(teeSettlement(alice, 1 ether, 1)), 7, "re-created service is not owner-acknowledged");
        ownerAckInference(provider);
        assertEq(settleT(teeSettlement(alice, 1 ether, 1)), 0, "the customer's record of the same key still holds");
    }

    // ------------------------------------------------------------------ tokens

    function test_token_revocation() public {
        inferenceCustomer(1, 10 ether, 5 ether);
        vm.startPrank(alice);
        inference.revokeToken(provider, 255);
        assertTrue(inference.isTokenRevoked(alice, provider, 255), "255 revoked");
        assertTrue(!inference.isTokenRevoked(alice, provider, 254), "254 not");
        uint8[] memory ids = new uint8[](3);
        ids[0] = 0;
        ids[1] = 7;
        ids[2] = 128;
        inference.revokeTokens(provider, ids);
        assertTrue(inference.isTokenRevoked(alice, provider, 7), "7");
        assertTrue(inference.isTokenRevoked(alice, provider, 128), "128");
        Account memory a = inference.getAccount(alice, provider);
        assertEq(a.revokedBitmap, (1 << 255) | 1 | (1 << 7) | (1 << 128), "bitmap");
        assertEq(a.generation, 0, "gen");
        inference.revokeAllTokens(provider);
        vm.stopPrank();
        a = inference.getAccount(alice, provider);
        assertEq(a.generation, 1, "gen bumped");
        assertEq(a.revokedBitmap, 0, "cleared");
        assertTrue(!inference.isTokenRevoked(alice, provider, 255), "fresh generation");
    }

    function test_token_revocation_errors() public {
        vm.startPrank(alice);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.AccountNotExists.selector, alice, provider));
        inference.revokeToken(provider, 1);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.AccountNotExists.selector, alice, provider));
        inference.revokeAllTokens(provider);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.BatchSizeTooLarge.selector, 257, 256));
        inference.revokeTokens(provider, new uint8[](257));
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ ledger-only entry points

    function test_ledger_only() public {
        bytes memory err = abi.encodeWithSelector(ServingBase.CallerNotLedger.selector, address(this));
        vm.expectRevert(err);
        inference.addAccount(alice, provider, "");
        vm.expectRevert(err);
        inference.depositFund(alice, provider, 0);
        vm.expectRevert(err);
        inference.requestRefundAll(alice, provider);
        vm.expectRevert(err);
        inference.processRefund(alice, provider);
        vm.expectRevert(err);
        inference.deleteAccount(alice, provider);
    }

    function test_ledger_paths_on_missing_or_full_accounts() public {
        inferenceCustomer(1, 10 ether, 5 ether);
        vm.deal(address(ledger), 100 ether);
        vm.startPrank(address(ledger));
        vm.expectRevert(abi.encodeWithSelector(ServingBase.AccountExists.selector, alice, provider));
        inference.addAccount(alice, provider, "");
        vm.expectRevert(
            abi.encodeWithSelector(ServingBase.CannotRevokeWithNonZeroBalance.selector, alice, provider, 5 ether)
        );
        inference.deleteAccount(alice, provider);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.AccountNotExists.selector, userAddr(5), provider));
        inference.depositFund(userAddr(5), provider, 0);
        // Refunds per sub-account are capped.
        for (uint256 i; i < 31; ++i) {
            inference.requestRefundAll(alice, provider);
            inference.depositFund{value: 1}(alice, provider, 0);
        }
        inference.requestRefundAll(alice, provider);
        assertEq(inference.getAccount(alice, provider).refunds.length, 32, "32 refunds");
        inference.depositFund{value: 1}(alice, provider, 0);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.TooManyRefunds.selector, alice, provider));
        inference.requestRefundAll(alice, provider);
        // Nothing new to refund is a no-op.
        inference.depositFund{value: 0}(alice, provider, 1);
        vm.stopPrank();
    }

    function test_refund_lock_time_and_indices() public {
        inferenceCustomer(1, 10 ether, 5 ether);
        vm.startPrank(address(ledger));
        vm.expectEmit(true, true, true, true, address(inference));
        emit ServingBase.RefundRequested(alice, provider, 0, block.timestamp);
        inference.requestRefundAll(alice, provider);
        (uint256 amount, uint256 balance, uint256 pending) = inference.processRefund(alice, provider);
        assertEq(amount, 0, "locked");
        assertEq(balance, 5 ether, "balance");
        assertEq(pending, 5 ether, "pending");
        vm.warp(block.timestamp + LOCK);
        (amount, balance, pending) = inference.processRefund(alice, provider);
        vm.stopPrank();
        assertEq(amount, 5 ether, "matured");
        assertEq(balance, 0, "balance after");
        assertEq(pending, 0, "pending after");
    }

    // ------------------------------------------------------------------ TEE settlement

    function test_settleFeesWithTEE_success() public {
        ownerAckInference(provider);
        teeCustomer(1, 10 ether, 5 ether);
        uint256 before = provider.balance;
        uint8[] memory st = settleTs(one(teeSettlement(alice, 1 ether, 7)));
        assertEq(st[0], 0, "status");
        assertEq(provider.balance, before + 1 ether, "paid");
        Account memory a = inference.getAccount(alice, provider);
        assertEq(a.balance, 4 ether, "balance");
        assertEq(a.nonce, 7, "nonce stored");
        assertEq(ledger.getLedger(alice).totalBalance, 9 ether, "ledger total");
        assertEq(ledger.getLedger(alice).availableBalance, 5 ether, "ledger available");
    }

    function test_settleFeesWithTEE_statuses() public {
        ownerAckInference(provider);
        teeCustomer(1, 10 ether, 5 ether);
        address bob = teeCustomer(2, 10 ether, 1 ether);
        TEESettlementData[] memory ds = new TEESettlementData[](6);
        ds[0] = teeSettlement(alice, 1 ether, 1); // ok
        ds[1] = teeSettlement(bob, 3 ether, 1); // partial: 1 paid, 2 unsettled
        ds[2] = teeSettlement(alice, 1 ether, 2);
        ds[2].provider = address(0xC0C); // provider mismatch
        ds[3] = teeSettlement(alice, 1 ether, 1); // nonce replay (after ds[0])
        ds[4] = teeSettlement(alice, 1 ether, 3);
        ds[4].totalFee = 2 ether; // signature over a different fee
        ds[5] = teeSettlement(alice, 1 ether, 4);
        ds[5].signature =
            sig(PROVIDER_KEY, inference.teeSettlementDigest(ds[5].requestsHash, 4, provider, alice, 1 ether));

        (address[] memory failed, uint8[] memory reasons, address[] memory partials, uint256[] memory amounts) =
            inference.previewSettlementResults(ds);
        // Preview runs as this test contract: every item is a provider mismatch.
        assertEq(failed.length, 6, "all mismatched for a stranger");
        vm.prank(provider);
        (failed, reasons, partials, amounts) = inference.previewSettlementResults(ds);
        assertEq(failed.length, 3, "failed (preview evaluates items alone: ds[3] looks fine)");
        assertEq(reasons[0], 2, "mismatch");
        assertEq(reasons[1], 5, "bad sig");
        assertEq(reasons[2], 5, "wrong signer");
        assertEq(partials.length, 1, "partials");
        assertEq(partials[0], bob, "bob partial");
        assertEq(amounts[0], 2 ether, "bob unsettled");

        uint256 before = provider.balance;
        vm.prank(provider);
        uint8[] memory st = inference.settleFeesWithTEE(ds);
        assertEq(st[0], 0, "ok");
        assertEq(st[1], 1, "partial");
        assertEq(st[2], 2, "mismatch");
        assertEq(st[3], 4, "replay");
        assertEq(st[4], 5, "tampered");
        assertEq(st[5], 5, "wrong signer");
        assertEq(provider.balance, before + 2 ether, "paid once, 1 + 1");
        assertEq(inference.getAccount(bob, provider).balance, 0, "bob drained");
        assertEq(inference.getAccount(bob, provider).nonce, 1, "bob nonce");
        assertEq(ledger.getLedger(bob).totalBalance, 9 ether, "bob ledger total");
    }

    function test_settleFeesWithTEE_no_signer() public {
        address p2 = vm.addr(0xC0C);
        addInferenceService(p2, address(0));
        address bob = userAddr(2);
        fundLedger(bob, 10 ether);
        transfer(bob, p2, INFERENCE, 2 ether);
        TEESettlementData memory d = teeSettlement(bob, 1 ether, 1);
        d.provider = p2;
        vm.prank(p2);
        uint8[] memory st = inference.settleFeesWithTEE(one(d));
        assertEq(st[0], 3, "no signer");
        assertEq(inference.getAccount(bob, p2).balance, 2 ether, "untouched");
    }

    function test_settleFeesWithTEE_batch_limits() public {
        vm.startPrank(provider);
        vm.expectRevert(InferenceServing.NoSettlementsProvided.selector);
        inference.settleFeesWithTEE(new TEESettlementData[](0));
        vm.expectRevert(abi.encodeWithSelector(InferenceServing.TooManySettlements.selector, 101, 100));
        inference.settleFeesWithTEE(new TEESettlementData[](101));
        vm.stopPrank();
    }

    function test_settlement_draws_pending_refunds_newest_first() public {
        ownerAckInference(provider);
        teeCustomer(1, 10 ether, 2 ether);
        // Build two refunds by hand (the ledger cancels pending refunds on deposit, so use it directly).
        vm.deal(address(ledger), 10 ether);
        vm.startPrank(address(ledger));
        inference.requestRefundAll(alice, provider); // refund #0: 2
        vm.warp(block.timestamp + 10);
        inference.depositFund{value: 3 ether}(alice, provider, 0);
        inference.requestRefundAll(alice, provider); // refund #1: 3
        vm.stopPrank();
        assertEq(inference.getPendingRefund(alice, provider), 5 ether, "pending");

        settleT(teeSettlement(alice, 4 ether, 1));
        Account memory a = inference.getAccount(alice, provider);
        assertEq(a.balance, 1 ether, "balance");
        assertEq(a.pendingRefund, 1 ether, "pending");
        assertEq(a.refunds.length, 1, "newest consumed entirely");
        assertEq(a.refunds[0].index, 0, "oldest kept");
        assertEq(a.refunds[0].amount, 1 ether, "oldest reduced");
    }

    function testFuzz_teeSettlement_caps_at_balance(uint96 sub, uint96 fee, uint64 nonce) public {
        uint256 s = bound(sub, MIN_TRANSFER, 1000 ether);
        uint256 n = bound(nonce, 1, type(uint64).max);
        ownerAckInference(provider);
        teeCustomer(1, s + MIN_BALANCE, s);
        uint256 before = provider.balance;
        uint8[] memory st = settleTs(one(teeSettlement(alice, fee, n)));
        uint256 paid = provider.balance - before;
        assertEq(paid, fee <= s ? fee : s, "paid");
        assertEq(st[0], fee <= s ? 0 : 1, "status");
        assertEq(inference.getAccount(alice, provider).nonce, n, "nonce");
        // Any nonce not above the stored one is rejected, whatever it signs.
        st = settleTs(one(teeSettlement(alice, 1, n)));
        assertEq(st[0], 4, "replay");
    }

    // ------------------------------------------------------------------ vouchers

    function test_voucher_digest_matches_spec() public view {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("zg-compute Vouchers"),
                keccak256("1"),
                block.chainid,
                address(inference)
            )
        );
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("Voucher(address user,address provider,uint256 cumulativeAmount,uint256 nonce)"),
                alice,
                provider,
                123,
                4
            )
        );
        assertEq(
            inference.voucherDigest(alice, provider, 123, 4),
            keccak256(abi.encodePacked(hex"1901", domain, structHash)),
            "voucher digest"
        );
        bytes32 teeDomain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("0G Inference Serving"),
                keccak256("1"),
                block.chainid,
                address(inference)
            )
        );
        bytes32 teeStruct = keccak256(
            abi.encode(
                keccak256(
                    "TEESettlement(bytes32 requestsHash,uint256 nonce,address provider,address user,uint256 totalFee)"
                ),
                bytes32(uint256(1)),
                2,
                provider,
                alice,
                3
            )
        );
        assertEq(
            inference.teeSettlementDigest(bytes32(uint256(1)), 2, provider, alice, 3),
            keccak256(abi.encodePacked(hex"1901", teeDomain, teeStruct)),
            "tee digest"
        );
    }

    function test_settleVouchers_cumulative() public {
        inferenceCustomer(1, 10 ether, 5 ether);
        uint256 before = provider.balance;
        uint8[] memory st = settleVs(one(voucher(aliceKey, provider, 1 ether, 1)));
        assertEq(st[0], 0, "first");
        st = settleVs(one(voucher(aliceKey, provider, 2.5 ether, 5)));
        assertEq(st[0], 0, "second");
        assertEq(provider.balance, before + 2.5 ether, "paid the cumulative total once");
        (uint256 paid, uint256 nonce) = inference.getVoucherState(alice, provider);
        assertEq(paid, 2.5 ether, "state paid");
        assertEq(nonce, 5, "state nonce");
        assertEq(inference.getAccount(alice, provider).balance, 2.5 ether, "balance");
        assertEq(ledger.getLedger(alice).totalBalance, 7.5 ether, "ledger total");

        // Same cumulative amount, higher nonce: nothing owed, accepted.
        st = settleVs(one(voucher(aliceKey, provider, 2.5 ether, 6)));
        assertEq(st[0], 0, "nothing owed");
        assertEq(provider.balance, before + 2.5 ether, "no extra payment");
    }

    function test_settleVouchers_rejections() public {
        inferenceCustomer(1, 10 ether, 5 ether);
        settleV(voucher(aliceKey, provider, 2 ether, 10));

        Voucher[] memory vs = new Voucher[](6);
        vs[0] = voucher(aliceKey, provider, 3 ether, 10); // same nonce → 4
        vs[1] = voucher(aliceKey, provider, 3 ether, 9); // lower nonce → 4
        vs[2] = voucher(aliceKey, address(0xC0C), 3 ether, 11); // other provider → 2
        vs[3] = voucher(aliceKey, provider, 1 ether, 11); // below paid → 6
        vs[4] = voucher(aliceKey, provider, 3 ether, 12);
        vs[4].cumulativeAmount = 4 ether; // tampered → 5
        vs[5] = voucher(userKey(2), provider, 3 ether, 12);
        vs[5].user = alice; // signed by someone else → 5
        uint256 before = provider.balance;
        vm.prank(provider);
        uint8[] memory st = inference.settleVouchers(vs);
        assertEq(st[0], 4, "same nonce");
        assertEq(st[1], 4, "lower nonce");
        assertEq(st[2], 2, "provider mismatch");
        assertEq(st[3], 6, "below paid");
        assertEq(st[4], 5, "tampered");
        assertEq(st[5], 5, "wrong signer");
        assertEq(provider.balance, before, "nothing paid");
        (uint256 paid, uint256 nonce) = inference.getVoucherState(alice, provider);
        assertEq(paid, 2 ether, "paid unchanged");
        assertEq(nonce, 10, "nonce unchanged");
    }

    function test_settleVouchers_rejects_malleable_and_malformed_signatures() public {
        inferenceCustomer(1, 10 ether, 5 ether);
        Voucher memory v = voucher(aliceKey, provider, 1 ether, 1);
        (uint8 vv, bytes32 r, bytes32 s) = vm.sign(aliceKey, inference.voucherDigest(alice, provider, 1 ether, 1));
        // The high-s twin of a valid signature recovers to the same address; it must be refused.
        uint256 n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
        v.signature = abi.encodePacked(r, bytes32(n - uint256(s)), vv == 27 ? uint8(28) : uint8(27));
        Voucher[] memory vs = new Voucher[](4);
        vs[0] = v;
        vs[1] = voucher(aliceKey, provider, 1 ether, 1);
        vs[1].signature = abi.encodePacked(r, s); // 64 bytes
        vs[2] = voucher(aliceKey, provider, 1 ether, 1);
        vs[2].signature = abi.encodePacked(r, s, uint8(29)); // bad v
        vs[3] = voucher(aliceKey, provider, 1 ether, 1);
        vs[3].user = address(0);
        vs[3].signature = new bytes(65); // recovers to nothing; user 0 must not match
        vm.prank(provider);
        uint8[] memory st = inference.settleVouchers(vs);
        for (uint256 i; i < 4; ++i) {
            assertEq(st[i], 5, "refused");
        }
        // v = 0/1 is accepted as 27/28.
        vs = one(voucher(aliceKey, provider, 1 ether, 1));
        vs[0].signature = abi.encodePacked(r, s, vv - 27);
        vm.prank(provider);
        st = inference.settleVouchers(vs);
        assertEq(st[0], 0, "v normalised");
    }

    function test_settleVouchers_wrong_domain() public {
        inferenceCustomer(1, 10 ether, 5 ether);
        // Signed for another chain.
        vm.chainId(999);
        Voucher memory v = voucher(aliceKey, provider, 1 ether, 1);
        vm.chainId(31337);
        uint8[] memory st = settleVs(one(v));
        assertEq(st[0], 5, "other chain");
        // Signed for the TEE domain's digest.
        v.signature = sig(aliceKey, inference.teeSettlementDigest(bytes32(0), 1, provider, alice, 1 ether));
        st = settleVs(one(v));
        assertEq(st[0], 5, "other domain");
    }

    function test_settleVouchers_partial_then_rest() public {
        inferenceCustomer(1, 10 ether, 2 ether);
        uint256 before = provider.balance;
        uint8[] memory st = settleVs(one(voucher(aliceKey, provider, 3 ether, 1)));
        assertEq(st[0], 1, "partial");
        assertEq(provider.balance, before + 2 ether, "what was there");
        (uint256 paid,) = inference.getVoucherState(alice, provider);
        assertEq(paid, 2 ether, "recorded");
        // The same voucher cannot be replayed; after a top-up a newer voucher collects the rest.
        st = settleVs(one(voucher(aliceKey, provider, 3 ether, 1)));
        assertEq(st[0], 4, "replay");
        transfer(alice, provider, INFERENCE, 2 ether);
        st = settleVs(one(voucher(aliceKey, provider, 3 ether, 2)));
        assertEq(st[0], 0, "rest");
        assertEq(provider.balance, before + 3 ether, "total = signed");
        assertEq(inference.getAccount(alice, provider).balance, 1 ether, "left");
    }

    function test_settleVouchers_batch_limits() public {
        vm.startPrank(provider);
        vm.expectRevert(InferenceServing.NoSettlementsProvided.selector);
        inference.settleVouchers(new Voucher[](0));
        vm.expectRevert(abi.encodeWithSelector(ServingBase.BatchSizeTooLarge.selector, 101, 100));
        inference.settleVouchers(new Voucher[](101));
        vm.stopPrank();
    }

    function test_voucher_state_survives_account_deletion() public {
        ownerAckInference(provider);
        teeCustomer(1, 10 ether, 2 ether);
        Voucher memory v = voucher(aliceKey, provider, 1 ether, 1);
        settleV(v);
        settleT(teeSettlement(alice, 0.5 ether, 9));
        // Empty the sub-account and delete the ledger.
        address[] memory ps = new address[](1);
        ps[0] = provider;
        vm.prank(alice);
        ledger.retrieveFund(ps, INFERENCE);
        vm.warp(block.timestamp + LOCK);
        vm.prank(alice);
        ledger.retrieveFund(ps, INFERENCE);
        vm.prank(alice);
        ledger.deleteLedger();
        assertTrue(!inference.accountExists(alice, provider), "deleted");
        // Recreate: old voucher and old TEE nonce must not be accepted again.
        inferenceCustomer(1, 10 ether, 2 ether);
        uint8[] memory st = settleVs(one(v));
        assertEq(st[0], 4, "voucher replay after recreate");
        // Deleting the account cleared the customer's acknowledgement; with it renewed, the old nonce
        // is still refused.
        st = settleTs(one(teeSettlement(alice, 0.5 ether, 9)));
        assertEq(st[0], 8, "acknowledgement cleared by the deletion");
        userAckInference(alice, provider);
        st = settleTs(one(teeSettlement(alice, 0.5 ether, 9)));
        assertEq(st[0], 4, "tee replay after recreate");
        assertEq(inference.getAccount(alice, provider).balance, 2 ether, "untouched");
    }

    function test_settleVouchers_many_customers_pay_once() public {
        Voucher[] memory vs = new Voucher[](5);
        for (uint256 i; i < 5; ++i) {
            inferenceCustomer(10 + i, 10 ether, 5 ether);
            vs[i] = voucher(userKey(10 + i), provider, (i + 1) * 0.1 ether, 1);
        }
        uint256 before = provider.balance;
        vm.prank(provider);
        uint8[] memory st = inference.settleVouchers(vs);
        for (uint256 i; i < 5; ++i) {
            assertEq(st[i], 0, "ok");
        }
        assertEq(provider.balance, before + 1.5 ether, "sum");
        assertEq(address(inference).balance, 25 ether - 1.5 ether + STAKE, "held");
    }

    function testFuzz_vouchers_never_pay_more_than_signed(uint96 sub, uint96[4] memory amounts, uint8 order) public {
        uint256 s = bound(sub, MIN_TRANSFER, 100 ether);
        inferenceCustomer(1, s + MIN_BALANCE, s);
        uint256 before = provider.balance;
        uint256 maxSigned;
        uint256 lastNonce;
        for (uint256 i; i < 4; ++i) {
            uint256 nonce = (order >> i) & 1 == 1 ? 4 - i : i + 1; // sometimes out of order
            uint8 status = settleV(voucher(aliceKey, provider, amounts[i], nonce));
            (uint256 paid, uint256 n) = inference.getVoucherState(alice, provider);
            if (amounts[i] > maxSigned) maxSigned = amounts[i];
            assertLe(paid, maxSigned, "paid <= max signed");
            assertLe(paid, s, "paid <= funded");
            assertEq(provider.balance - before, paid, "provider got exactly paid");
            if (nonce <= lastNonce) assertEq(status, 4, "stale nonce refused");
            if (status <= 1) assertEq(n, nonce, "accepted nonce stored");
            else assertEq(n, lastNonce, "refused nonce not stored");
            assertLe(lastNonce, n, "nonce monotone");
            lastNonce = n;
        }
    }
}
