// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {ServingBase, Refund} from "./ServingBase.sol";
import {ILedger} from "./interfaces/IServing.sol";
import {ECDSA} from "./lib/ECDSA.sol";

/// @notice What a provider publishes with `addOrUpdateService` (0G layout).
struct ServiceParams {
    string serviceType;
    string url;
    string model;
    string verifiability;
    uint256 inputPrice;
    uint256 outputPrice;
    string additionalInfo;
    address teeSignerAddress;
}

/// @notice A provider's inference service as returned by the views (0G layout).
struct Service {
    address provider;
    string serviceType;
    string url;
    uint256 inputPrice;
    uint256 outputPrice;
    uint256 updatedAt;
    string model;
    string verifiability;
    string additionalInfo;
    address teeSignerAddress;
    bool teeSignerAcknowledged;
}

/// @notice A sub-account as returned by the views (0G layout). `nonce` is the last accepted TEE
///         settlement nonce; `acknowledged` is true while the TEE signer the customer acknowledged is the
///         provider's current one (`getTEESignerAcknowledgements` returns the recorded address).
struct Account {
    address user;
    address provider;
    uint256 nonce;
    uint256 balance;
    uint256 pendingRefund;
    Refund[] refunds;
    string additionalInfo;
    bool acknowledged;
    uint256 validRefundsLength;
    uint256 generation;
    uint256 revokedBitmap;
}

/// @notice One TEE-signed settlement (0G layout): the TEE signed EIP-712
///         `TEESettlement(bytes32 requestsHash,uint256 nonce,address provider,address user,uint256 totalFee)`.
struct TEESettlementData {
    address user;
    address provider;
    uint256 totalFee;
    bytes32 requestsHash;
    uint256 nonce;
    bytes signature;
}

/// @notice A customer-signed cumulative voucher (zg-compute native): the customer signed EIP-712
///         `Voucher(address user,address provider,uint256 cumulativeAmount,uint256 nonce)` in the domain
///         {"zg-compute Vouchers", "1", chainId, this contract}.
struct Voucher {
    address user;
    address provider;
    uint256 cumulativeAmount;
    uint256 nonce;
    bytes signature;
}

/// @title InferenceServing
/// @notice Inference services, customer sub-accounts, session-token revocation and fee settlement,
///         ABI-compatible with the 0G Compute Network's InferenceServing, plus customer-signed
///         cumulative voucher settlement (`settleVouchers`).
contract InferenceServing is ServingBase {
    // ------------------------------------------------------------------ constants

    /// @notice Settlement status: paid in full.
    uint8 public constant STATUS_SUCCESS = 0;
    /// @notice Settlement status: the sub-account could not cover everything; what it had was paid.
    uint8 public constant STATUS_PARTIAL = 1;
    /// @notice Settlement status: the item names another provider than the caller.
    uint8 public constant STATUS_PROVIDER_MISMATCH = 2;
    /// @notice Settlement status: the provider has no service or no TEE signer.
    uint8 public constant STATUS_NO_TEE_SIGNER = 3;
    /// @notice Settlement status: nonce not greater than the last accepted one.
    uint8 public constant STATUS_INVALID_NONCE = 4;
    /// @notice Settlement status: the signature does not recover to the expected signer.
    uint8 public constant STATUS_INVALID_SIGNATURE = 5;
    /// @notice Voucher status: `cumulativeAmount` is below what was already paid for this pair.
    uint8 public constant STATUS_AMOUNT_BELOW_PAID = 6;
    /// @notice TEE status: the contract owner does not acknowledge the provider's current TEE signer
    ///         (never did, revoked it, or the provider registered another signer since).
    uint8 public constant STATUS_SIGNER_NOT_ACKNOWLEDGED_BY_OWNER = 7;
    /// @notice TEE status: the customer did not acknowledge the provider's current TEE signer
    ///         (`acknowledgeTEESigner(provider, true)` was never called, was withdrawn, or named the
    ///         signer the provider had before).
    uint8 public constant STATUS_SIGNER_NOT_ACKNOWLEDGED_BY_USER = 8;

    /// @notice Items per `settleFeesWithTEE` / `settleVouchers` call.
    uint256 public constant MAX_SETTLEMENTS_PER_BATCH = 100;
    /// @notice Token ids per `revokeTokens` call.
    uint256 public constant MAX_TOKENS_PER_REVOKE = 256;

    bytes32 public constant TEE_SETTLEMENT_TYPEHASH =
        keccak256("TEESettlement(bytes32 requestsHash,uint256 nonce,address provider,address user,uint256 totalFee)");
    bytes32 public constant VOUCHER_TYPEHASH =
        keccak256("Voucher(address user,address provider,uint256 cumulativeAmount,uint256 nonce)");

    /// @dev Separate EIP-712 domain for vouchers (the inherited EIP712 is not used, to keep both
    ///      separators immutable and cheap).
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    uint256 private immutable _chainId;
    bytes32 private immutable _teeDomain;
    bytes32 private immutable _voucherDomain;

    // ------------------------------------------------------------------ errors (0G names + native)

    /// @notice Reserved (0G): a TEE signature problem that aborts a whole call.
    error InvalidTEESignature(string reason);
    /// @notice Empty settlement batch.
    error NoSettlementsProvided();
    /// @notice More settlements than `MAX_SETTLEMENTS_PER_BATCH`: split the batch.
    error TooManySettlements(uint256 count, uint256 max);
    /// @notice The service has no TEE signer to acknowledge.
    error NoTEESigner(address provider);

    // ------------------------------------------------------------------ events

    /// @notice A service was created or updated.
    event ServiceUpdated(
        address indexed service,
        string serviceType,
        string url,
        uint256 inputPrice,
        uint256 outputPrice,
        uint256 updatedAt,
        string model,
        string verifiability
    );
    /// @notice A service was removed.
    event ServiceRemoved(address indexed service);
    /// @notice One TEE settlement item was processed; `unsettledAmount` is what was not paid.
    event TEESettlementResult(address indexed user, uint8 status, uint256 unsettledAmount);
    /// @notice Balances after a settlement batch, for the items that paid (status 0 or 1).
    event BatchBalanceUpdated(address[] users, uint256[] balances, uint256[] pendingRefunds);
    /// @notice One session token was revoked.
    event TokenRevoked(address indexed user, address indexed provider, uint8 tokenId);
    /// @notice Several session tokens were revoked.
    event TokensRevoked(address indexed user, address indexed provider, uint8[] tokenIds);
    /// @notice Every token of the old generation was revoked.
    event AllTokensRevoked(address indexed user, address indexed provider, uint256 newGeneration);
    /// @notice Emitted once at deployment.
    event ContractInitialized(address indexed owner, uint256 lockTime, address ledgerAddress);
    /// @notice One voucher was processed: `paid` was charged (0 unless status is 0 or 1). After status
    ///         0 or 1 the pair's state is (`cumulativeAmount` paid so far, `nonce`).
    event VoucherSettled(
        address indexed user,
        address indexed provider,
        uint256 nonce,
        uint256 cumulativeAmount,
        uint256 paid,
        uint8 status
    );

    // ------------------------------------------------------------------ state

    struct StoredService {
        string serviceType;
        string url;
        string model;
        string verifiability;
        string additionalInfo;
        uint256 inputPrice;
        uint256 outputPrice;
        uint256 updatedAt;
        address teeSignerAddress;
        bool teeSignerAcknowledged;
        bool exists;
    }

    mapping(address provider => StoredService) private _services;

    /// @param lockTime_ Refund lock time in seconds (`MIN_LOCKTIME`..`MAX_LOCKTIME`).
    /// @param ledger_ The LedgerManager that funds sub-accounts.
    /// @param owner_ Administrator: acknowledges TEE signers, sets the lock time.
    /// @param minProviderStake_ Stake a provider pays to create a service (neuron).
    constructor(uint256 lockTime_, address ledger_, address owner_, uint256 minProviderStake_)
        ServingBase(lockTime_, ledger_, owner_, minProviderStake_)
    {
        _chainId = block.chainid;
        _teeDomain = _domain("0G Inference Serving");
        _voucherDomain = _domain("zg-compute Vouchers");
        emit ContractInitialized(owner_, lockTime_, ledger_);
    }

    /// @notice Always reverts `AlreadyInitialized` (configured by the constructor).
    function initialize(uint256, address, address) external pure {
        revert AlreadyInitialized();
    }

    // ------------------------------------------------------------------ provider: service

    /// @notice Creates the caller's service (with `msg.value >= MIN_PROVIDER_STAKE` as stake) or
    ///         replaces its fields (no value allowed). Changing the TEE signer clears the owner's
    ///         acknowledgement.
    function addOrUpdateService(ServiceParams calldata params) external payable nonReentrant {
        _checkString(params.serviceType);
        _checkString(params.url);
        _checkString(params.model);
        _checkString(params.verifiability);
        _checkString(params.additionalInfo);
        StoredService storage s = _services[msg.sender];
        if (s.exists) {
            if (msg.value != 0) revert CannotAddStakeWhenUpdating();
        } else {
            _addProvider(msg.sender);
            s.exists = true;
        }
        if (s.teeSignerAddress != params.teeSignerAddress) s.teeSignerAcknowledged = false;
        s.serviceType = params.serviceType;
        s.url = params.url;
        s.model = params.model;
        s.verifiability = params.verifiability;
        s.additionalInfo = params.additionalInfo;
        s.inputPrice = params.inputPrice;
        s.outputPrice = params.outputPrice;
        s.updatedAt = block.timestamp;
        s.teeSignerAddress = params.teeSignerAddress;
        emit ServiceUpdated(
            msg.sender,
            params.serviceType,
            params.url,
            params.inputPrice,
            params.outputPrice,
            block.timestamp,
            params.model,
            params.verifiability
        );
    }

    // ------------------------------------------------------------------ customer: tokens

    /// @notice Revokes session token `tokenId` (current generation) for the caller's sub-account.
    function revokeToken(address provider, uint8 tokenId) external {
        AccountState storage acc = _existing(msg.sender, provider);
        acc.revokedBitmap |= (uint256(1) << tokenId);
        emit TokenRevoked(msg.sender, provider, tokenId);
    }

    /// @notice Revokes several session tokens at once (at most `MAX_TOKENS_PER_REVOKE`).
    function revokeTokens(address provider, uint8[] calldata tokenIds) external {
        uint256 n = tokenIds.length;
        if (n > MAX_TOKENS_PER_REVOKE) revert BatchSizeTooLarge(n, MAX_TOKENS_PER_REVOKE);
        AccountState storage acc = _existing(msg.sender, provider);
        uint256 bitmap = acc.revokedBitmap;
        for (uint256 i; i < n; ++i) {
            bitmap |= (uint256(1) << tokenIds[i]);
        }
        acc.revokedBitmap = bitmap;
        emit TokensRevoked(msg.sender, provider, tokenIds);
    }

    /// @notice Revokes every token: bumps the generation and clears the bitmap.
    function revokeAllTokens(address provider) external {
        AccountState storage acc = _existing(msg.sender, provider);
        uint256 generation = acc.generation + 1;
        acc.generation = generation;
        acc.revokedBitmap = 0;
        emit AllTokensRevoked(msg.sender, provider, generation);
    }

    /// @notice Whether `tokenId` of the current generation is revoked.
    function isTokenRevoked(address user, address provider, uint8 tokenId) external view returns (bool) {
        return (_accounts[user][provider].revokedBitmap >> tokenId) & 1 == 1;
    }

    // ------------------------------------------------------------------ provider: settlement

    /// @notice Settles TEE-signed fee claims; the caller must be the provider of every item. Returns one
    ///         status per item (see STATUS_*); the provider is paid once, at the end. An item pays only if
    ///         it is signed by the provider's current TEE signer, the owner acknowledges that signer, and
    ///         the customer acknowledged that same signer address (`acknowledgeTEESigner`).
    /// @dev Who: any address, for items naming itself as provider. Worst case: a provider charges a
    ///      customer up to its sub-account balance with fees its own TEE signed; a signer the customer or
    ///      the owner did not acknowledge (e.g. a key the operator swapped in) is refused (status 7/8).
    function settleFeesWithTEE(TEESettlementData[] calldata settlements)
        external
        nonReentrant
        returns (uint8[] memory statuses)
    {
        uint256 n = settlements.length;
        if (n == 0) revert NoSettlementsProvided();
        if (n > MAX_SETTLEMENTS_PER_BATCH) revert TooManySettlements(n, MAX_SETTLEMENTS_PER_BATCH);
        statuses = new uint8[](n);
        address[] memory users = new address[](n);
        uint256[] memory balances = new uint256[](n);
        uint256[] memory pendings = new uint256[](n);
        uint256 settledCount;
        uint256 total;
        for (uint256 i; i < n; ++i) {
            TEESettlementData calldata d = settlements[i];
            (uint8 status, uint256 fee) = _checkTEE(d);
            if (status <= STATUS_PARTIAL) {
                AccountState storage acc = _accounts[d.user][d.provider];
                acc.nonce = d.nonce;
                if (fee != 0) {
                    _charge(acc, acc.balance, acc.pendingRefund, fee);
                    ILedger(ledgerAddress).spendFund(d.user, fee);
                    total += fee;
                }
                users[settledCount] = d.user;
                balances[settledCount] = acc.balance;
                pendings[settledCount] = acc.pendingRefund;
                ++settledCount;
            }
            statuses[i] = status;
            emit TEESettlementResult(d.user, status, d.totalFee - fee);
        }
        if (settledCount != 0) {
            assembly ("memory-safe") {
                mstore(users, settledCount)
                mstore(balances, settledCount)
                mstore(pendings, settledCount)
            }
            emit BatchBalanceUpdated(users, balances, pendings);
        }
        if (total != 0) _send(msg.sender, total);
    }

    /// @notice What `settleFeesWithTEE` would do if `msg.sender` called it now, each item evaluated
    ///         alone against the current state: items that would fail (status 2-5, 7, 8) and items that would
    ///         be partial (with the amount left unpaid).
    function previewSettlementResults(TEESettlementData[] calldata settlements)
        external
        view
        returns (
            address[] memory failedUsers,
            uint8[] memory failureReasons,
            address[] memory partialUsers,
            uint256[] memory partialAmounts
        )
    {
        uint256 n = settlements.length;
        if (n > MAX_SETTLEMENTS_PER_BATCH) revert TooManySettlements(n, MAX_SETTLEMENTS_PER_BATCH);
        failedUsers = new address[](n);
        failureReasons = new uint8[](n);
        partialUsers = new address[](n);
        partialAmounts = new uint256[](n);
        uint256 failed;
        uint256 partials;
        for (uint256 i; i < n; ++i) {
            (uint8 status, uint256 fee) = _checkTEE(settlements[i]);
            if (status == STATUS_PARTIAL) {
                partialUsers[partials] = settlements[i].user;
                partialAmounts[partials] = settlements[i].totalFee - fee;
                ++partials;
            } else if (status != STATUS_SUCCESS) {
                failedUsers[failed] = settlements[i].user;
                failureReasons[failed] = status;
                ++failed;
            }
        }
        assembly ("memory-safe") {
            mstore(failedUsers, failed)
            mstore(failureReasons, failed)
            mstore(partialUsers, partials)
            mstore(partialAmounts, partials)
        }
    }

    /// @notice Settles customer-signed cumulative vouchers; the caller must be the provider of every
    ///         voucher. Each voucher pays `cumulativeAmount - paid` for its (user, provider) pair, capped
    ///         at the sub-account balance (status 1 if capped: the rest can be collected by a later
    ///         voucher). The provider is paid once, at the end. Returns one status per voucher.
    function settleVouchers(Voucher[] calldata vouchers) external nonReentrant returns (uint8[] memory statuses) {
        uint256 n = vouchers.length;
        if (n == 0) revert NoSettlementsProvided();
        if (n > MAX_SETTLEMENTS_PER_BATCH) revert BatchSizeTooLarge(n, MAX_SETTLEMENTS_PER_BATCH);
        statuses = new uint8[](n);
        uint256 total;
        for (uint256 i; i < n; ++i) {
            Voucher calldata v = vouchers[i];
            (uint8 status, uint256 paid) = _settleVoucher(v);
            statuses[i] = status;
            unchecked {
                // Each `paid` is bounded by a sub-account balance held by this contract.
                total += paid;
            }
        }
        if (total != 0) _send(msg.sender, total);
    }

    /// @notice The voucher state of a (user, provider) pair: total paid through vouchers so far and the
    ///         last accepted voucher nonce (0 = none yet).
    function getVoucherState(address user, address provider) external view returns (uint256 paid, uint256 nonce) {
        AccountState storage acc = _accounts[user][provider];
        return (acc.voucherPaid, acc.voucherNonce);
    }

    /// @notice The EIP-712 digest a customer signs for a voucher (for clients and tests).
    function voucherDigest(address user, address provider, uint256 cumulativeAmount, uint256 nonce)
        public
        view
        returns (bytes32)
    {
        return _digest(
            _chainId == block.chainid ? _voucherDomain : _domain("zg-compute Vouchers"),
            keccak256(abi.encode(VOUCHER_TYPEHASH, user, provider, cumulativeAmount, nonce))
        );
    }

    /// @notice The EIP-712 digest the TEE signs for a settlement (for clients and tests).
    function teeSettlementDigest(bytes32 requestsHash, uint256 nonce, address provider, address user, uint256 totalFee)
        public
        view
        returns (bytes32)
    {
        return _digest(
            _chainId == block.chainid ? _teeDomain : _domain("0G Inference Serving"),
            keccak256(abi.encode(TEE_SETTLEMENT_TYPEHASH, requestsHash, nonce, provider, user, totalFee))
        );
    }

    // ------------------------------------------------------------------ views

    /// @notice Whether `provider` has a service.
    function serviceExists(address provider) external view returns (bool) {
        return _services[provider].exists;
    }

    /// @notice `provider`'s service; reverts `ServiceNotExist` if none.
    function getService(address provider) external view returns (Service memory service) {
        return _serviceView(provider, _service(provider));
    }

    /// @notice A page of all services, and the total count.
    function getAllServices(uint256 offset, uint256 limit)
        external
        view
        returns (Service[] memory services, uint256 total)
    {
        total = _serviceProviders.length;
        (uint256 start, uint256 end) = _page(total, offset, limit);
        services = new Service[](end - start);
        for (uint256 i = start; i < end; ++i) {
            address p = _serviceProviders[i];
            services[i - start] = _serviceView(p, _services[p]);
        }
    }

    /// @notice The sub-account of `user` with `provider`; reverts `AccountNotExists` if none.
    function getAccount(address user, address provider) external view returns (Account memory) {
        return _accountView(user, provider, _existing(user, provider));
    }

    /// @notice A page of all sub-accounts, and the total count.
    function getAllAccounts(uint256 offset, uint256 limit)
        external
        view
        returns (Account[] memory accounts, uint256 total)
    {
        total = _allAccounts.length;
        (uint256 start, uint256 end) = _page(total, offset, limit);
        accounts = new Account[](end - start);
        for (uint256 i = start; i < end; ++i) {
            AccountKey memory k = _allAccounts[i];
            accounts[i - start] = _accountView(k.user, k.provider, _accounts[k.user][k.provider]);
        }
    }

    /// @notice A page of `provider`'s sub-accounts, and their total count.
    function getAccountsByProvider(address provider, uint256 offset, uint256 limit)
        external
        view
        returns (Account[] memory accounts, uint256 total)
    {
        address[] storage users = _usersOfProvider[provider];
        total = users.length;
        (uint256 start, uint256 end) = _page(total, offset, limit);
        accounts = new Account[](end - start);
        for (uint256 i = start; i < end; ++i) {
            address u = users[i];
            accounts[i - start] = _accountView(u, provider, _accounts[u][provider]);
        }
    }

    /// @notice A page of `user`'s sub-accounts, and their total count.
    function getAccountsByUser(address user, uint256 offset, uint256 limit)
        external
        view
        returns (Account[] memory accounts, uint256 total)
    {
        address[] storage providers = _providersOfUser[user];
        total = providers.length;
        (uint256 start, uint256 end) = _page(total, offset, limit);
        accounts = new Account[](end - start);
        for (uint256 i = start; i < end; ++i) {
            address p = providers[i];
            accounts[i - start] = _accountView(user, p, _accounts[user][p]);
        }
    }

    /// @notice The caller's (a provider's) sub-accounts with each of `users` (empty entries for none).
    function getBatchAccountsByUsers(address[] calldata users) external view returns (Account[] memory accounts) {
        uint256 n = users.length;
        if (n > MAX_PAGE_SIZE) revert LimitTooLarge(n, MAX_PAGE_SIZE);
        accounts = new Account[](n);
        for (uint256 i; i < n; ++i) {
            AccountState storage acc = _accounts[users[i]][msg.sender];
            if (acc.exists) accounts[i] = _accountView(users[i], msg.sender, acc);
        }
    }

    // ------------------------------------------------------------------ internals

    function _settleVoucher(Voucher calldata v) private returns (uint8 status, uint256 pay) {
        address user = v.user;
        uint256 cumulative = v.cumulativeAmount;
        uint256 nonce = v.nonce;
        if (v.provider != msg.sender) {
            emit VoucherSettled(user, v.provider, nonce, cumulative, 0, STATUS_PROVIDER_MISMATCH);
            return (STATUS_PROVIDER_MISMATCH, 0);
        }
        AccountState storage acc = _accounts[user][msg.sender];
        uint256 paid = acc.voucherPaid;
        if (nonce <= acc.voucherNonce || nonce > type(uint128).max) {
            status = STATUS_INVALID_NONCE;
        } else if (cumulative < paid) {
            status = STATUS_AMOUNT_BELOW_PAID;
        } else {
            bytes32 digest =
                _digest(_voucherDomain, keccak256(abi.encode(VOUCHER_TYPEHASH, user, msg.sender, cumulative, nonce)));
            if (_chainId != block.chainid) digest = voucherDigest(user, msg.sender, cumulative, nonce);
            address signer = ECDSA.tryRecoverCalldata(digest, v.signature);
            if (signer == address(0) || signer != user) {
                status = STATUS_INVALID_SIGNATURE;
            } else {
                uint256 owed = cumulative - paid;
                uint256 balance = acc.balance;
                pay = owed <= balance ? owed : balance;
                status = pay == owed ? STATUS_SUCCESS : STATUS_PARTIAL;
                // pay <= balance < 2^128 and paid + pay <= everything ever deposited, so both fit.
                // forge-lint: disable-next-line(unsafe-typecast)
                acc.voucherPaid = uint128(paid + pay);
                // nonce <= type(uint128).max was checked above.
                // forge-lint: disable-next-line(unsafe-typecast)
                acc.voucherNonce = uint128(nonce);
                if (pay != 0) {
                    _charge(acc, balance, acc.pendingRefund, pay);
                    ILedger(ledgerAddress).spendFund(user, pay);
                }
            }
        }
        emit VoucherSettled(user, msg.sender, nonce, cumulative, pay, status);
    }

    /// @dev Status and payable fee of one TEE settlement item, without writing anything.
    function _checkTEE(TEESettlementData calldata d) private view returns (uint8 status, uint256 fee) {
        if (d.provider != msg.sender) return (STATUS_PROVIDER_MISMATCH, 0);
        StoredService storage s = _services[d.provider];
        address signer = s.teeSignerAddress;
        if (signer == address(0)) return (STATUS_NO_TEE_SIGNER, 0);
        if (!s.teeSignerAcknowledged) return (STATUS_SIGNER_NOT_ACKNOWLEDGED_BY_OWNER, 0);
        AccountState storage acc = _accounts[d.user][d.provider];
        if (acc.acknowledgedSigner != signer) return (STATUS_SIGNER_NOT_ACKNOWLEDGED_BY_USER, 0);
        if (d.nonce <= acc.nonce) return (STATUS_INVALID_NONCE, 0);
        bytes32 digest = teeSettlementDigest(d.requestsHash, d.nonce, d.provider, d.user, d.totalFee);
        if (ECDSA.tryRecoverCalldata(digest, d.signature) != signer) return (STATUS_INVALID_SIGNATURE, 0);
        uint256 balance = acc.balance;
        if (d.totalFee <= balance) return (STATUS_SUCCESS, d.totalFee);
        return (STATUS_PARTIAL, balance);
    }

    function _deleteService(address provider) internal override {
        _service(provider);
        delete _services[provider];
        emit ServiceRemoved(provider);
    }

    function _teeSigner(address provider) internal view override returns (address) {
        return _service(provider).teeSignerAddress;
    }

    function _currentTEESigner(address provider) internal view override returns (address, bool) {
        StoredService storage s = _services[provider];
        return (s.teeSignerAddress, s.teeSignerAcknowledged);
    }

    function _setTEESignerAcknowledged(address provider, bool acknowledged) internal override {
        _services[provider].teeSignerAcknowledged = acknowledged;
    }

    function _revertNoTEESigner(address provider) internal pure override {
        revert NoTEESigner(provider);
    }

    function _service(address provider) private view returns (StoredService storage s) {
        s = _services[provider];
        if (!s.exists) revert ServiceNotExist(provider);
    }

    function _serviceView(address provider, StoredService storage s) private view returns (Service memory) {
        return Service({
            provider: provider,
            serviceType: s.serviceType,
            url: s.url,
            inputPrice: s.inputPrice,
            outputPrice: s.outputPrice,
            updatedAt: s.updatedAt,
            model: s.model,
            verifiability: s.verifiability,
            additionalInfo: s.additionalInfo,
            teeSignerAddress: s.teeSignerAddress,
            teeSignerAcknowledged: s.teeSignerAcknowledged
        });
    }

    function _accountView(address user, address provider, AccountState storage acc)
        private
        view
        returns (Account memory)
    {
        return Account({
            user: user,
            provider: provider,
            nonce: acc.nonce,
            balance: acc.balance,
            pendingRefund: acc.pendingRefund,
            refunds: _refundViews(acc),
            additionalInfo: acc.additionalInfo,
            acknowledged: _userAcknowledged(acc, provider),
            validRefundsLength: acc.refunds.length,
            generation: acc.generation,
            revokedBitmap: acc.revokedBitmap
        });
    }

    function _domain(string memory name) private view returns (bytes32) {
        return
            keccak256(abi.encode(DOMAIN_TYPEHASH, keccak256(bytes(name)), keccak256("1"), block.chainid, address(this)));
    }

    function _digest(bytes32 domain, bytes32 structHash) private pure returns (bytes32 digest) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, hex"1901")
            mstore(add(ptr, 0x02), domain)
            mstore(add(ptr, 0x22), structHash)
            digest := keccak256(ptr, 0x42)
        }
    }
}
