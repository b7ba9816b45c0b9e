// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {Test} from "./Test.sol";
import {LedgerManager} from "../../src/LedgerManager.sol";
import {InferenceServing, ServiceParams, TEESettlementData, Voucher} from "../../src/InferenceServing.sol";
import {FineTuningServing, Quota, VerifierInput} from "../../src/FineTuningServing.sol";

/// @notice Deploys and wires the three contracts the way the devnet does, plus signing helpers.
abstract contract Fixture is Test {
    uint256 internal constant MIN_BALANCE = 3 ether;
    uint256 internal constant MIN_TRANSFER = 1e12;
    uint256 internal constant MAX_PROVIDERS = 20;
    uint256 internal constant LOCK = 1 hours;
    uint256 internal constant STAKE = 1 ether;
    uint256 internal constant PENALTY = 30;
    uint256 internal constant MAX_DELIVERABLES = 3;

    string internal constant INFERENCE = "inference-v1.0";
    string internal constant FINE_TUNING = "fine-tuning-v1.0";

    address internal owner = address(0x0A11CE);
    LedgerManager internal ledger;
    InferenceServing internal inference;
    FineTuningServing internal ft;

    uint256 internal constant TEE_KEY = 0x7EE;
    uint256 internal constant PROVIDER_KEY = 0xB0B;
    address internal tee;
    address internal provider;

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        tee = vm.addr(TEE_KEY);
        provider = vm.addr(PROVIDER_KEY);
        ledger = new LedgerManager(owner, MIN_BALANCE, MIN_TRANSFER, MAX_PROVIDERS);
        inference = new InferenceServing(LOCK, address(ledger), owner, STAKE);
        ft = new FineTuningServing(LOCK, address(ledger), owner, PENALTY, STAKE, MAX_DELIVERABLES);
        vm.startPrank(owner);
        ledger.registerService("inference", "v1.0", address(inference), "inference");
        ledger.registerService("fine-tuning", "v1.0", address(ft), "fine-tuning");
        vm.stopPrank();
        vm.label(address(ledger), "ledger");
        vm.label(address(inference), "inference");
        vm.label(address(ft), "ft");
    }

    // ------------------------------------------------------------------ actors

    function userKey(uint256 i) internal pure returns (uint256) {
        return 0x1000 + i;
    }

    function userAddr(uint256 i) internal pure returns (address) {
        return vm.addr(userKey(i));
    }

    /// @dev Creates `user`'s ledger with `amount`.
    function fundLedger(address user, uint256 amount) internal {
        vm.deal(user, user.balance + amount);
        vm.prank(user);
        ledger.addLedger{value: amount}("");
    }

    function transfer(address user, address to, string memory service, uint256 amount) internal {
        vm.prank(user);
        ledger.transferFund(to, service, amount);
    }

    /// @dev A user with a ledger of `ledgerAmount` and `subAmount` in the inference sub-account.
    function inferenceCustomer(uint256 i, uint256 ledgerAmount, uint256 subAmount) internal returns (address user) {
        user = userAddr(i);
        fundLedger(user, ledgerAmount);
        transfer(user, provider, INFERENCE, subAmount);
    }

    /// @dev The owner acknowledges `who`'s current inference TEE signer.
    function ownerAckInference(address who) internal {
        vm.prank(owner);
        inference.acknowledgeTEESignerByOwner(who);
    }

    /// @dev The owner acknowledges `who`'s current fine-tuning TEE signer.
    function ownerAckFt(address who) internal {
        vm.prank(owner);
        ft.acknowledgeTEESignerByOwner(who);
    }

    /// @dev `user` acknowledges `who`'s current inference TEE signer.
    function userAckInference(address user, address who) internal {
        vm.prank(user);
        inference.acknowledgeTEESigner(who, true);
    }

    /// @dev `user` acknowledges `who`'s current fine-tuning TEE signer.
    function userAckFt(address user, address who) internal {
        vm.prank(user);
        ft.acknowledgeTEESigner(who, true);
    }

    /// @dev An inference customer who also acknowledged `provider`'s TEE signer, so TEE batches can
    ///      charge it (once the owner acknowledges the signer too).
    function teeCustomer(uint256 i, uint256 ledgerAmount, uint256 subAmount) internal returns (address user) {
        user = inferenceCustomer(i, ledgerAmount, subAmount);
        userAckInference(user, provider);
    }

    function serviceParams(address signer) internal pure returns (ServiceParams memory) {
        return ServiceParams({
            serviceType: "chatbot",
            url: "https://provider.example",
            model: "demo-model",
            verifiability: "TeeML",
            inputPrice: 1e9,
            outputPrice: 2e9,
            additionalInfo: "{\"x\":1}",
            teeSignerAddress: signer
        });
    }

    function addInferenceService(address who, address signer) internal {
        vm.deal(who, who.balance + STAKE);
        vm.prank(who);
        inference.addOrUpdateService{value: STAKE}(serviceParams(signer));
    }

    function quota() internal pure returns (Quota memory) {
        return Quota({cpuCount: 8, nodeMemory: 64, gpuCount: 1, nodeStorage: 512, gpuType: "H100"});
    }

    function addFtService(address who, address signer) internal {
        string[] memory models = new string[](1);
        models[0] = "qwen-0.5b";
        vm.deal(who, who.balance + STAKE);
        vm.prank(who);
        ft.addOrUpdateService{value: STAKE}("https://ft.example", quota(), 1e9, false, models, signer);
    }

    // ------------------------------------------------------------------ signatures

    function sig(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function voucher(uint256 key, address to, uint256 cumulative, uint256 nonce)
        internal
        view
        returns (Voucher memory)
    {
        address user = vm.addr(key);
        return Voucher({
            user: user,
            provider: to,
            cumulativeAmount: cumulative,
            nonce: nonce,
            signature: sig(key, inference.voucherDigest(user, to, cumulative, nonce))
        });
    }

    function teeSettlement(address user, uint256 fee, uint256 nonce) internal view returns (TEESettlementData memory) {
        bytes32 requestsHash = keccak256(abi.encode(user, nonce));
        return TEESettlementData({
            user: user,
            provider: provider,
            totalFee: fee,
            requestsHash: requestsHash,
            nonce: nonce,
            signature: sig(TEE_KEY, inference.teeSettlementDigest(requestsHash, nonce, provider, user, fee))
        });
    }

    function verifierInput(
        address user,
        string memory id,
        bytes memory secret,
        bytes memory root,
        uint256 nonce,
        uint256 fee
    ) internal view returns (VerifierInput memory v) {
        v.id = id;
        v.encryptedSecret = secret;
        v.modelRootHash = root;
        v.nonce = nonce;
        v.taskFee = fee;
        v.user = user;
        v.signature = signVerifier(v);
    }

    function signVerifier(VerifierInput memory v) internal view returns (bytes memory) {
        return
            sig(TEE_KEY, ft.verifierMessageDigest(v.id, v.encryptedSecret, v.modelRootHash, v.nonce, v.taskFee, v.user));
    }

    /// @dev Settles as `provider`. (Arguments are built first: a pending `vm.prank` would otherwise be
    ///      consumed by the digest calls made while building them.)
    function settleV(Voucher memory v) internal returns (uint8) {
        return settleVs(one(v))[0];
    }

    function settleVs(Voucher[] memory vs) internal returns (uint8[] memory) {
        vm.prank(provider);
        return inference.settleVouchers(vs);
    }

    function settleT(TEESettlementData memory d) internal returns (uint8) {
        return settleTs(one(d))[0];
    }

    function settleTs(TEESettlementData[] memory ds) internal returns (uint8[] memory) {
        vm.prank(provider);
        return inference.settleFeesWithTEE(ds);
    }

    function one(Voucher memory v) internal pure returns (Voucher[] memory vs) {
        vs = new Voucher[](1);
        vs[0] = v;
    }

    function one(TEESettlementData memory d) internal pure returns (TEESettlementData[] memory ds) {
        ds = new TEESettlementData[](1);
        ds[0] = d;
    }
}
