// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {Fixture} from "./utils/Fixture.sol";
import {LedgerManager} from "../src/LedgerManager.sol";
import {InferenceServing} from "../src/InferenceServing.sol";
import {ServingBase} from "../src/ServingBase.sol";
import {Ownable} from "../src/lib/Ownable.sol";

contract LedgerManagerTest is Fixture {
    address internal alice;

    function setUp() public override {
        super.setUp();
        alice = userAddr(1);
    }

    // ------------------------------------------------------------------ deployment

    function test_constructor_config() public view {
        assertEq(ledger.MIN_ACCOUNT_BALANCE(), MIN_BALANCE, "min balance");
        assertEq(ledger.MIN_TRANSFER_AMOUNT(), MIN_TRANSFER, "min transfer");
        assertEq(ledger.MAX_PROVIDERS_PER_USER_PER_SERVICE(), MAX_PROVIDERS, "max providers");
        assertEq(ledger.owner(), owner, "owner");
        assertTrue(ledger.initialized(), "initialized");
    }

    function test_constructor_rejects_bad_config() public {
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.InvalidConfig.selector, "minTransferAmount", 0));
        new LedgerManager(owner, MIN_BALANCE, 0, 10);
        vm.expectRevert(
            abi.encodeWithSelector(LedgerManager.InvalidConfig.selector, "maxProvidersPerUserPerService", 0)
        );
        new LedgerManager(owner, MIN_BALANCE, 1, 0);
        vm.expectRevert(
            abi.encodeWithSelector(LedgerManager.InvalidConfig.selector, "maxProvidersPerUserPerService", 257)
        );
        new LedgerManager(owner, MIN_BALANCE, 1, 257);
        vm.expectRevert(abi.encodeWithSelector(Ownable.InvalidOwner.selector, address(0)));
        new LedgerManager(address(0), MIN_BALANCE, 1, 1);
    }

    function test_initialize_reverts() public {
        vm.expectRevert(LedgerManager.AlreadyInitialized.selector);
        ledger.initialize(alice);
    }

    function test_receive_refuses_plain_transfers() public {
        vm.deal(alice, 1 ether);
        vm.prank(alice);
        (bool ok, bytes memory ret) = address(ledger).call{value: 1 ether}("");
        assertTrue(!ok, "plain transfer accepted");
        assertEq(bytes4(ret), LedgerManager.DirectDepositsDisabled.selector, "error");
    }

    // ------------------------------------------------------------------ ledger lifecycle

    function test_addLedger() public {
        vm.deal(alice, 5 ether);
        vm.prank(alice);
        (uint256 available, uint256 total) = ledger.addLedger{value: 5 ether}("info");
        assertEq(available, 5 ether, "available");
        assertEq(total, 5 ether, "total");
        LedgerManager.Ledger memory l = ledger.getLedger(alice);
        assertEq(l.user, alice, "user");
        assertEq(l.availableBalance, 5 ether, "available");
        assertEq(l.totalBalance, 5 ether, "total");
        assertEq(l.additionalInfo, "info", "info");
        assertEq(address(ledger).balance, 5 ether, "held");
    }

    function test_addLedger_below_minimum() public {
        vm.deal(alice, 1 ether);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.MinimumDepositRequired.selector, 0.5 ether, MIN_BALANCE));
        ledger.addLedger{value: 0.5 ether}("");
    }

    function test_addLedger_twice() public {
        fundLedger(alice, 3 ether);
        vm.deal(alice, 3 ether);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.LedgerExists.selector, alice));
        ledger.addLedger{value: 3 ether}("");
    }

    function test_addLedger_info_too_long() public {
        vm.deal(alice, 3 ether);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.AdditionalInfoTooLong.selector, 4097, 4096));
        ledger.addLedger{value: 3 ether}(string(new bytes(4097)));
    }

    function test_depositFund_creates_then_adds() public {
        vm.deal(alice, 10 ether);
        vm.startPrank(alice);
        ledger.depositFund{value: 3 ether}();
        ledger.depositFund{value: 2 ether}();
        vm.expectRevert(LedgerManager.ZeroAmountNotAllowed.selector);
        ledger.depositFund{value: 0}();
        vm.stopPrank();
        assertEq(ledger.getLedger(alice).availableBalance, 5 ether, "available");
        assertEq(ledger.getLedger(alice).totalBalance, 5 ether, "total");
    }

    function test_depositFund_new_below_minimum() public {
        vm.deal(alice, 1 ether);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.MinimumDepositRequired.selector, 1 ether, MIN_BALANCE));
        ledger.depositFund{value: 1 ether}();
    }

    function test_depositFundFor() public {
        address bob = userAddr(2);
        vm.deal(alice, 10 ether);
        vm.startPrank(alice);
        ledger.depositFundFor{value: 4 ether}(bob);
        vm.expectRevert(LedgerManager.ZeroAddressNotAllowed.selector);
        ledger.depositFundFor{value: 4 ether}(address(0));
        vm.stopPrank();
        assertEq(ledger.getLedger(bob).availableBalance, 4 ether, "bob");
    }

    function test_refund() public {
        fundLedger(alice, 5 ether);
        vm.prank(alice);
        ledger.refund(2 ether);
        assertEq(alice.balance, 2 ether, "paid");
        assertEq(ledger.getLedger(alice).availableBalance, 3 ether, "available");
        assertEq(ledger.getLedger(alice).totalBalance, 3 ether, "total");
    }

    function test_refund_errors() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.LedgerNotExists.selector, alice));
        ledger.refund(1);
        fundLedger(alice, 3 ether);
        vm.startPrank(alice);
        vm.expectRevert(LedgerManager.ZeroAmountNotAllowed.selector);
        ledger.refund(0);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.InsufficientAvailableBalance.selector, 3 ether, 4 ether));
        ledger.refund(4 ether);
        vm.stopPrank();
    }

    function testFuzz_deposit_refund_roundtrip(uint96 deposit, uint96 take) public {
        uint256 d = bound(deposit, MIN_BALANCE, 1e27);
        uint256 t = bound(take, 1, d);
        fundLedger(alice, d);
        vm.prank(alice);
        ledger.refund(t);
        assertEq(ledger.getLedger(alice).availableBalance, d - t, "available");
        assertEq(address(ledger).balance, d - t, "held");
        assertEq(alice.balance, t, "paid");
    }

    function test_updateAdditionalInfo() public {
        fundLedger(alice, 3 ether);
        vm.prank(alice);
        ledger.updateAdditionalInfo("new");
        assertEq(ledger.getLedger(alice).additionalInfo, "new", "info");
        vm.prank(userAddr(9));
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.LedgerNotExists.selector, userAddr(9)));
        ledger.updateAdditionalInfo("x");
    }

    // ------------------------------------------------------------------ transfers

    function test_transferFund_opens_subaccount() public {
        fundLedger(alice, 10 ether);
        transfer(alice, provider, INFERENCE, 4 ether);
        assertEq(ledger.getLedger(alice).availableBalance, 6 ether, "available");
        assertEq(ledger.getLedger(alice).totalBalance, 10 ether, "total");
        assertEq(address(inference).balance, 4 ether, "serving holds");
        assertEq(inference.getAccount(alice, provider).balance, 4 ether, "sub balance");
        address[] memory ps = ledger.getLedgerProviders(alice, INFERENCE);
        assertEq(ps.length, 1, "providers");
        assertEq(ps[0], provider, "provider");
        assertEq(ledger.getLedgerProviders(alice, FINE_TUNING).length, 0, "ft providers");

        // A second transfer tops up the same sub-account.
        transfer(alice, provider, INFERENCE, 1 ether);
        assertEq(inference.getAccount(alice, provider).balance, 5 ether, "topped up");
        assertEq(ledger.getLedgerProviders(alice, INFERENCE).length, 1, "still one provider");
    }

    function test_transferFund_to_fine_tuning() public {
        fundLedger(alice, 10 ether);
        transfer(alice, provider, FINE_TUNING, 4 ether);
        assertEq(ft.getAccount(alice, provider).balance, 4 ether, "ft sub balance");
        assertEq(address(ft).balance, 4 ether, "ft holds");
    }

    function test_transferFund_errors() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.LedgerNotExists.selector, alice));
        ledger.transferFund(provider, INFERENCE, 1 ether);
        fundLedger(alice, 3 ether);
        vm.startPrank(alice);
        vm.expectRevert(LedgerManager.ZeroAmountNotAllowed.selector);
        ledger.transferFund(provider, INFERENCE, 0);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.MinimumDepositRequired.selector, 1, MIN_TRANSFER));
        ledger.transferFund(provider, INFERENCE, 1);
        vm.expectRevert(LedgerManager.ZeroAddressNotAllowed.selector);
        ledger.transferFund(address(0), INFERENCE, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.InvalidServiceType.selector, "inference-v9"));
        ledger.transferFund(provider, "inference-v9", 1 ether);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.InsufficientAvailableBalance.selector, 3 ether, 4 ether));
        ledger.transferFund(provider, INFERENCE, 4 ether);
        vm.expectRevert(ServingBase.ProviderCannotBeUser.selector);
        ledger.transferFund(alice, INFERENCE, 1 ether);
        vm.stopPrank();
    }

    function test_transferFund_provider_limit() public {
        fundLedger(alice, 100 ether);
        for (uint256 i; i < MAX_PROVIDERS; ++i) {
            transfer(alice, address(uint160(0x5000 + i)), INFERENCE, 1 ether);
        }
        vm.prank(alice);
        vm.expectRevert(
            abi.encodeWithSelector(LedgerManager.TooManyProvidersForService.selector, MAX_PROVIDERS, MAX_PROVIDERS)
        );
        ledger.transferFund(address(0x9999), INFERENCE, 1 ether);
        // The limit is per service.
        transfer(alice, address(0x9999), FINE_TUNING, 1 ether);
    }

    function test_transferFund_cancels_pending_refund_first() public {
        fundLedger(alice, 10 ether);
        transfer(alice, provider, INFERENCE, 4 ether);
        address[] memory ps = new address[](1);
        ps[0] = provider;
        vm.prank(alice);
        ledger.retrieveFund(ps, INFERENCE);
        assertEq(inference.getPendingRefund(alice, provider), 4 ether, "pending");
        // Transfer 5: 4 come from cancelling the pending refund, 1 from the ledger.
        transfer(alice, provider, INFERENCE, 5 ether);
        assertEq(inference.getPendingRefund(alice, provider), 0, "pending cancelled");
        assertEq(inference.getAccount(alice, provider).balance, 5 ether, "sub balance");
        assertEq(ledger.getLedger(alice).availableBalance, 5 ether, "available");
        assertEq(inference.getAccount(alice, provider).refunds.length, 0, "refund removed");
    }

    function test_transferFund_partial_cancel() public {
        fundLedger(alice, 10 ether);
        transfer(alice, provider, INFERENCE, 4 ether);
        address[] memory ps = new address[](1);
        ps[0] = provider;
        vm.prank(alice);
        ledger.retrieveFund(ps, INFERENCE);
        transfer(alice, provider, INFERENCE, 1 ether);
        assertEq(inference.getPendingRefund(alice, provider), 3 ether, "pending left");
        assertEq(inference.getAccount(alice, provider).balance, 4 ether, "sub balance unchanged");
        assertEq(ledger.getLedger(alice).availableBalance, 6 ether, "available unchanged");
    }

    // ------------------------------------------------------------------ retrieve

    function test_retrieveFund_after_lock_time() public {
        fundLedger(alice, 10 ether);
        transfer(alice, provider, INFERENCE, 4 ether);
        address[] memory ps = new address[](1);
        ps[0] = provider;
        vm.prank(alice);
        ledger.retrieveFund(ps, INFERENCE);
        assertEq(ledger.getLedger(alice).availableBalance, 6 ether, "nothing back yet");

        vm.warp(block.timestamp + LOCK - 1);
        vm.prank(alice);
        ledger.retrieveFund(ps, INFERENCE);
        assertEq(ledger.getLedger(alice).availableBalance, 6 ether, "still locked");

        vm.warp(block.timestamp + 1);
        vm.prank(alice);
        ledger.retrieveFund(ps, INFERENCE);
        assertEq(ledger.getLedger(alice).availableBalance, 10 ether, "back");
        assertEq(ledger.getLedger(alice).totalBalance, 10 ether, "total");
        assertEq(address(inference).balance, 0, "serving empty");
        assertEq(address(ledger).balance, 10 ether, "ledger holds all");
        assertEq(inference.getAccount(alice, provider).balance, 0, "sub empty");
    }

    function test_retrieveFund_errors() public {
        fundLedger(alice, 10 ether);
        address[] memory ps = new address[](51);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.TooManyProviders.selector, 51, 50));
        ledger.retrieveFund(ps, INFERENCE);
        ps = new address[](1);
        ps[0] = provider;
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(ServingBase.AccountNotExists.selector, alice, provider));
        ledger.retrieveFund(ps, INFERENCE);
    }

    // ------------------------------------------------------------------ delete

    function test_deleteLedger() public {
        fundLedger(alice, 10 ether);
        transfer(alice, provider, INFERENCE, 4 ether);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.MustWithdrawAllFundsFirst.selector, 4 ether));
        ledger.deleteLedger();

        address[] memory ps = new address[](1);
        ps[0] = provider;
        vm.prank(alice);
        ledger.retrieveFund(ps, INFERENCE);
        vm.warp(block.timestamp + LOCK);
        vm.prank(alice);
        ledger.retrieveFund(ps, INFERENCE);

        vm.prank(alice);
        ledger.deleteLedger();
        assertEq(alice.balance, 10 ether, "paid out");
        assertTrue(!inference.accountExists(alice, provider), "sub-account deleted");
        (, uint256 total) = ledger.getAllLedgers(0, 10);
        assertEq(total, 0, "no ledgers");
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.LedgerNotExists.selector, alice));
        ledger.getLedger(alice);

        // A new ledger starts clean, and the old sub-account can be reopened.
        fundLedger(alice, 3 ether);
        transfer(alice, provider, INFERENCE, 1 ether);
        assertEq(inference.getAccount(alice, provider).balance, 1 ether, "reopened");
    }

    // ------------------------------------------------------------------ spendFund

    function test_spendFund_only_services() public {
        fundLedger(alice, 3 ether);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.CallerNotRegisteredService.selector, address(this)));
        ledger.spendFund(alice, 1);
        vm.prank(address(inference));
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.InsufficientBalance.selector, userAddr(7)));
        ledger.spendFund(userAddr(7), 1);
        vm.prank(address(inference));
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.InsufficientBalance.selector, alice));
        ledger.spendFund(alice, 4 ether);
        vm.prank(address(inference));
        ledger.spendFund(alice, 1 ether);
        assertEq(ledger.getLedger(alice).totalBalance, 2 ether, "spent");
    }

    // ------------------------------------------------------------------ registry

    function test_registry_views() public view {
        LedgerManager.ServiceInfo memory info = ledger.getServiceInfo(address(inference));
        assertEq(info.fullName, "inference-v1.0", "full name");
        assertEq(info.serviceType, "inference", "type");
        assertEq(info.version, "v1.0", "version");
        assertEq(info.serviceContract, address(inference), "contract");
        assertTrue(info.isRecommended, "recommended");
        assertEq(ledger.getServiceInfo(address(ft)).fullName, "fine-tuning-v1.0", "ft name");
        assertEq(ledger.getServiceAddressByName(INFERENCE), address(inference), "by name");
        assertEq(ledger.getAllActiveServices().length, 2, "services");
        (string memory version, address addr) = ledger.getRecommendedService("inference");
        assertEq(version, "v1.0", "rec version");
        assertEq(addr, address(inference), "rec addr");
        assertTrue(ledger.isRecommendedVersion("inference", "v1.0"), "is recommended");
        assertTrue(!ledger.isRecommendedVersion("inference", "v2.0"), "not recommended");
        (string[] memory vs, address[] memory as_, bool[] memory flags) = ledger.getAllVersions("inference");
        assertEq(vs.length, 1, "versions");
        assertEq(as_[0], address(inference), "version addr");
        assertTrue(flags[0], "flag");
    }

    function test_registerService_second_version_and_recommendation() public {
        InferenceServing v2 = new InferenceServing(LOCK, address(ledger), owner, STAKE);
        vm.prank(owner);
        ledger.registerService("inference", "v2.0", address(v2), "next");
        assertTrue(!ledger.getServiceInfo(address(v2)).isRecommended, "v2 not recommended yet");
        vm.prank(owner);
        ledger.setRecommendedService("inference", "v2.0");
        assertTrue(ledger.getServiceInfo(address(v2)).isRecommended, "v2 recommended");
        assertTrue(!ledger.getServiceInfo(address(inference)).isRecommended, "v1 not");
        (string[] memory vs,,) = ledger.getAllVersions("inference");
        assertEq(vs.length, 2, "two versions");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.InvalidServiceType.selector, "inference-v3.0"));
        ledger.setRecommendedService("inference", "v3.0");
    }

    function test_registerService_errors() public {
        InferenceServing fresh = new InferenceServing(LOCK, address(ledger), owner, STAKE);
        InferenceServing foreign = new InferenceServing(LOCK, address(0xdead), owner, STAKE);
        vm.expectRevert(abi.encodeWithSelector(Ownable.NotOwner.selector, address(this), owner));
        ledger.registerService("x", "v1", address(fresh), "");
        vm.startPrank(owner);
        vm.expectRevert(LedgerManager.ServiceTypeRequired.selector);
        ledger.registerService("", "v1", address(fresh), "");
        vm.expectRevert(LedgerManager.VersionRequired.selector);
        ledger.registerService("x", "", address(fresh), "");
        vm.expectRevert(LedgerManager.ZeroAddressNotAllowed.selector);
        ledger.registerService("x", "v1", address(0), "");
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.InvalidServiceAddress.selector, address(0x1234)));
        ledger.registerService("x", "v1", address(0x1234), "");
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.ServiceAlreadyRegistered.selector, address(inference)));
        ledger.registerService("x", "v1", address(inference), "");
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.ServiceMustImplementIServing.selector, address(foreign)));
        ledger.registerService("x", "v1", address(foreign), "");
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.ServiceMustImplementIServing.selector, address(ledger)));
        ledger.registerService("x", "v1", address(ledger), "");
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.ServiceNameExists.selector, "inference-v1.0"));
        ledger.registerService("inference", "v1.0", address(fresh), "");
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.ServiceNotFound.selector, address(fresh)));
        ledger.getServiceInfo(address(fresh));
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.NoRecommendedService.selector, "x"));
        ledger.getRecommendedService("x");
    }

    function test_registry_limit() public {
        vm.startPrank(owner);
        for (uint256 i = 2; i < 16; ++i) {
            InferenceServing s = new InferenceServing(LOCK, address(ledger), owner, STAKE);
            ledger.registerService("inference", vm.toString(i), address(s), "");
        }
        InferenceServing extra = new InferenceServing(LOCK, address(ledger), owner, STAKE);
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.ServiceRegistryLimitReached.selector, 16));
        ledger.registerService("inference", "extra", address(extra), "");
        vm.stopPrank();
    }

    function test_getAllLedgers_pagination() public {
        for (uint256 i; i < 5; ++i) {
            fundLedger(userAddr(i), 3 ether + i);
        }
        (LedgerManager.Ledger[] memory page, uint256 total) = ledger.getAllLedgers(1, 2);
        assertEq(total, 5, "total");
        assertEq(page.length, 2, "page");
        assertEq(page[0].user, userAddr(1), "first");
        (page,) = ledger.getAllLedgers(4, 10);
        assertEq(page.length, 1, "tail");
        (page,) = ledger.getAllLedgers(9, 10);
        assertEq(page.length, 0, "past end");
        vm.expectRevert(abi.encodeWithSelector(LedgerManager.LimitTooLarge.selector, 501, 500));
        ledger.getAllLedgers(0, 501);
    }

    function test_ownership() public {
        vm.prank(owner);
        ledger.transferOwnership(alice);
        assertEq(ledger.owner(), alice, "transferred");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(Ownable.NotOwner.selector, owner, alice));
        ledger.transferOwnership(owner);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(Ownable.InvalidOwner.selector, address(0)));
        ledger.transferOwnership(address(0));
        vm.prank(alice);
        ledger.renounceOwnership();
        assertEq(ledger.owner(), address(0), "renounced");
    }
}
