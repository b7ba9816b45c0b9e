// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {Ownable} from "./lib/Ownable.sol";
import {ReentrancyGuard} from "./lib/ReentrancyGuard.sol";
import {IServing, ILedger} from "./interfaces/IServing.sol";

/// @notice A pending refund as returned in account views (0G layout). `index` is a per-account sequence
///         number (the one emitted in `RefundRequested`); `processed` is always false in views because
///         processed refunds are removed.
struct Refund {
    uint256 index;
    uint256 amount;
    uint256 createdAt;
    bool processed;
}

/// @title ServingBase
/// @notice The part InferenceServing and FineTuningServing share: customer sub-accounts per
///         (user, provider) funded only through LedgerManager, two-step refunds with a lock time,
///         fee charging that draws on pending refunds newest first, provider stakes, the owner's
///         lock-time setting, and account enumeration.
/// @dev Native balance invariant: `address(this).balance == Σ sub-account balances + Σ stakes`.
abstract contract ServingBase is IServing, Ownable, ReentrancyGuard {
    // ------------------------------------------------------------------ storage types

    /// @dev A pending refund, packed in one slot.
    struct StoredRefund {
        uint128 amount;
        uint64 createdAt;
        uint32 index;
    }

    /// @dev Per (user, provider). Never deleted as a whole: nonces, voucher state and token
    ///      generation survive `deleteAccount`, so a recreated account cannot replay old signatures.
    struct AccountState {
        // slot 0: read and written by every settlement
        uint128 balance;
        uint128 pendingRefund;
        // slot 1: voucher settlement state (InferenceServing)
        uint128 voucherPaid;
        uint128 voucherNonce;
        // slot 2: TEE settlement nonce (last accepted)
        uint256 nonce;
        // slot 3-4: session-token revocation (InferenceServing)
        uint256 generation;
        uint256 revokedBitmap;
        // slot 5: `acknowledgedSigner` is the TEE signer the customer acknowledged with
        // `acknowledgeTEESigner(provider, true)` (zero: none). TEE settlement pays only while it equals
        // the provider's current, owner-acknowledged signer. The 0G ABI's `acknowledged` is derived
        // from it (see `_userAcknowledged`), so the ABI stays 0G's.
        bool exists;
        address acknowledgedSigner;
        uint32 refundSeq;
        string additionalInfo;
        StoredRefund[] refunds;
    }

    // ------------------------------------------------------------------ errors (0G names)

    /// @notice The sub-account already exists.
    error AccountExists(address user, address provider);
    /// @notice The sub-account does not exist: transfer funds to the provider through the ledger first.
    error AccountNotExists(address user, address provider);
    /// @notice `additionalInfo` (or another string field) is too long.
    error AdditionalInfoTooLong();
    /// @notice `initialize` exists for ABI compatibility only: this contract is configured by its constructor.
    error AlreadyInitialized();
    /// @notice More items in one call than allowed: split the batch.
    error BatchSizeTooLarge(uint256 size, uint256 max);
    /// @notice Only LedgerManager may call this.
    error CallerNotLedger(address caller);
    /// @notice An update must not carry value: the stake is paid once, when the service is created.
    error CannotAddStakeWhenUpdating();
    /// @notice Only an empty sub-account can be deleted.
    error CannotRevokeWithNonZeroBalance(address user, address provider, uint256 balance);
    /// @notice Plain transfers are refused: funds arrive through LedgerManager.
    error DirectDepositsDisabled();
    /// @notice A new service must stake at least `required`.
    error InsufficientStake(uint256 provided, uint256 required);
    /// @notice The zero address (or another unusable address) was given.
    error InvalidAddress(address addr);
    /// @notice A page larger than allowed was requested.
    error LimitTooLarge(uint256 limit, uint256 max);
    /// @notice The lock time must be within [min, max] seconds.
    error LockTimeOutOfRange(uint256 lockTime, uint256 min, uint256 max);
    /// @notice A customer cannot open a sub-account with itself.
    error ProviderCannotBeUser();
    /// @notice The provider has no service here.
    error ServiceNotExist(address provider);
    /// @notice The sub-account has the maximum number of pending refunds; wait for them to mature.
    error TooManyRefunds(address user, address provider);
    /// @notice Sending native tokens failed.
    error TransferFailed();
    /// @notice A constructor parameter is out of range: `parameter` names it, `value` is what was given.
    error InvalidConfig(string parameter, uint256 value);
    /// @notice `expected` is no longer `provider`'s TEE signer (it is `current`): check the attestation of
    ///         the current signer before acknowledging it.
    error TEESignerChanged(address provider, address expected, address current);
    /// @notice The owner already acknowledged `teeSigner` for `provider`: a TEE signer key serves one
    ///         provider for good (see `teeSignerProvider`). The other provider must register its own key.
    error TEESignerBoundToOtherProvider(address teeSigner, address provider);

    // ------------------------------------------------------------------ events

    /// @notice The sub-account's balance or pending refund changed.
    event BalanceUpdated(address indexed user, address indexed provider, uint256 amount, uint256 pendingRefund);
    /// @notice A refund was requested; it matures at `timestamp + lockTime`.
    event RefundRequested(address indexed user, address indexed provider, uint256 indexed index, uint256 timestamp);
    /// @notice A sub-account was deleted (always empty, so `refundedAmount` is 0).
    event AccountDeleted(address indexed user, address indexed provider, uint256 refundedAmount);
    /// @notice The owner changed the refund lock time.
    event LockTimeUpdated(uint256 oldLockTime, uint256 newLockTime);
    /// @notice Emitted once at deployment (the contract is born initialized).
    event Initialized(uint8 version);
    /// @notice A provider staked `amount` when creating its service.
    event ProviderStaked(address indexed provider, uint256 amount);
    /// @notice A provider's stake was returned when it removed its service.
    event ProviderStakeReturned(address indexed provider, uint256 amount);
    /// @notice The owner (`acknowledged` true) vouched for, or withdrew trust in, a provider's TEE signer.
    event ProviderTEESignerAcknowledged(address indexed provider, address indexed teeSignerAddress, bool acknowledged);
    /// @notice A customer acknowledged (`acknowledged` true) `teeSignerAddress`, the provider's TEE signer
    ///         at that moment, for its sub-account; or withdrew its acknowledgement of `teeSignerAddress`
    ///         (the one recorded before; zero if none).
    event UserTEESignerAcknowledged(
        address indexed user, address indexed provider, address indexed teeSignerAddress, bool acknowledged
    );

    // ------------------------------------------------------------------ configuration

    /// @notice Smallest lock time the owner may set (seconds).
    uint256 public constant MIN_LOCKTIME = 60;
    /// @notice Largest lock time the owner may set (seconds): 30 days.
    uint256 public constant MAX_LOCKTIME = 30 days;
    /// @notice Pending refunds per sub-account.
    uint256 public constant MAX_REFUNDS_PER_ACCOUNT = 32;
    /// @notice Largest page of the paginated views.
    uint256 public constant MAX_PAGE_SIZE = 100;
    /// @notice Longest `additionalInfo` / URL / model string (bytes).
    uint256 public constant MAX_STRING_LENGTH = 4096;

    /// @notice The LedgerManager that funds every sub-account.
    address public immutable ledgerAddress;
    /// @notice The stake a provider pays when it creates its service (returned on removal).
    uint256 public immutable MIN_PROVIDER_STAKE;
    /// @notice Seconds between a refund request and the moment it can be processed.
    uint256 public lockTime;

    // ------------------------------------------------------------------ state

    mapping(address user => mapping(address provider => AccountState)) internal _accounts;
    /// @notice Stake held per provider.
    mapping(address provider => uint256) internal _stakes;

    struct AccountKey {
        address user;
        address provider;
    }

    AccountKey[] internal _allAccounts;
    mapping(address user => mapping(address provider => uint256)) private _allPos;
    mapping(address user => address[]) internal _providersOfUser;
    mapping(address user => mapping(address provider => uint256)) private _userPos;
    mapping(address provider => address[]) internal _usersOfProvider;
    mapping(address provider => mapping(address user => uint256)) private _providerPos;
    /// @dev Providers with a service (unordered: removal swaps the last one in) and each one's
    ///      1-based position.
    address[] internal _serviceProviders;
    mapping(address provider => uint256) private _servicePos;
    /// @dev The provider each TEE signer was first owner-acknowledged for; never cleared.
    mapping(address teeSigner => address provider) private _signerProvider;

    constructor(uint256 lockTime_, address ledger_, address owner_, uint256 minProviderStake_) Ownable(owner_) {
        if (ledger_ == address(0)) revert InvalidAddress(ledger_);
        _checkLockTime(lockTime_);
        lockTime = lockTime_;
        ledgerAddress = ledger_;
        MIN_PROVIDER_STAKE = minProviderStake_;
        emit Initialized(1);
    }

    modifier onlyLedger() {
        if (msg.sender != ledgerAddress) revert CallerNotLedger(msg.sender);
        _;
    }

    /// @notice Refuses plain transfers (`DirectDepositsDisabled`); kept for ABI compatibility.
    receive() external payable {
        revert DirectDepositsDisabled();
    }

    /// @notice Always true: configured by the constructor.
    function initialized() external pure returns (bool) {
        return true;
    }

    /// @notice ERC-165: IServing and ERC-165 itself.
    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == type(IServing).interfaceId || interfaceId == 0x01ffc9a7;
    }

    /// @notice Owner: sets the refund lock time (applies to refunds already pending too).
    function updateLockTime(uint256 _locktime) external onlyOwner {
        _checkLockTime(_locktime);
        emit LockTimeUpdated(lockTime, _locktime);
        lockTime = _locktime;
    }

    // ------------------------------------------------------------------ provider: service

    /// @notice Removes the caller's service and returns its stake. Existing sub-accounts stay: customers
    ///         can still retrieve their funds, but settle first (settlement needs the service's TEE signer).
    function removeService() external nonReentrant {
        _deleteService(msg.sender);
        _removeProvider(msg.sender);
    }

    // ------------------------------------------------------------------ owner: TEE signer trust

    /// @notice Owner: vouches for `provider`'s current TEE signer (after checking its attestation).
    /// @dev Acknowledges whatever signer is current when the transaction runs: a provider that swaps its
    ///      signer between the owner's check and this call gets the new one acknowledged. Prefer
    ///      `acknowledgeTEESignerAddressByOwner`, which names the signer that was checked.
    function acknowledgeTEESignerByOwner(address provider) external onlyOwner {
        address signer = _teeSigner(provider);
        if (signer == address(0)) _revertNoTEESigner(provider);
        _ownerAcknowledge(provider, signer);
    }

    /// @notice Owner: vouches for `teeSigner` as `provider`'s TEE signer; reverts
    ///         `TEESignerChanged(provider, teeSigner, current)` unless it is still the current one, so a
    ///         signer swapped in after the owner checked the attestation is never acknowledged by mistake.
    /// @dev Who: the owner only. Worst case: the owner vouches for a signer it did not check (its job).
    function acknowledgeTEESignerAddressByOwner(address provider, address teeSigner) external onlyOwner {
        _ownerAcknowledge(provider, _requireCurrentSigner(provider, teeSigner));
    }

    /// @notice The provider `teeSigner` serves: the one the owner first acknowledged it for (zero if never).
    ///         The owner can acknowledge that signer for no other provider.
    function teeSignerProvider(address teeSigner) external view returns (address) {
        return _signerProvider[teeSigner];
    }

    /// @notice Owner: withdraws the acknowledgement of `provider`'s TEE signer.
    function revokeTEESignerAcknowledgement(address provider) external onlyOwner {
        address signer = _teeSigner(provider);
        _setTEESignerAcknowledged(provider, false);
        emit ProviderTEESignerAcknowledged(provider, signer, false);
    }

    /// @dev Binds `signer` to `provider` for good the first time the owner acknowledges it, and refuses to
    ///      acknowledge it for any other provider afterwards (`TEESignerBoundToOtherProvider`).
    ///      Why: fine-tuning's `VerifierMessage` (0G's format) does not name the provider, so a signature
    ///      made for one provider's settlement would also verify for another provider that registered the
    ///      same signer (e.g. by proxying the first one's attestation) and that the customer acknowledged:
    ///      the customer would pay twice for one deliverable. One signer, one provider, closes that for
    ///      both serving contracts; inference's `TEESettlement` names the provider anyway.
    function _ownerAcknowledge(address provider, address signer) private {
        address bound = _signerProvider[signer];
        if (bound == address(0)) {
            _signerProvider[signer] = provider;
        } else if (bound != provider) {
            revert TEESignerBoundToOtherProvider(signer, bound);
        }
        _setTEESignerAcknowledged(provider, true);
        emit ProviderTEESignerAcknowledged(provider, signer, true);
    }

    /// @dev `teeSigner` if it is `provider`'s current, non-zero signer; reverts otherwise.
    function _requireCurrentSigner(address provider, address teeSigner) private view returns (address) {
        address current = _teeSigner(provider);
        if (current == address(0)) _revertNoTEESigner(provider);
        if (current != teeSigner) revert TEESignerChanged(provider, teeSigner, current);
        return current;
    }

    // ------------------------------------------------------------------ ledger-only

    /// @inheritdoc IServing
    function addAccount(address user, address provider, string calldata additionalInfo) external payable onlyLedger {
        if (user == provider) revert ProviderCannotBeUser();
        if (user == address(0) || provider == address(0)) revert InvalidAddress(address(0));
        if (bytes(additionalInfo).length > MAX_STRING_LENGTH) revert AdditionalInfoTooLong();
        AccountState storage acc = _accounts[user][provider];
        if (acc.exists) revert AccountExists(user, provider);
        acc.exists = true;
        acc.balance = _u128(msg.value);
        acc.additionalInfo = additionalInfo;
        _index(user, provider);
        emit BalanceUpdated(user, provider, msg.value, 0);
    }

    /// @inheritdoc IServing
    function depositFund(address user, address provider, uint256 cancelRetrievingAmount) external payable onlyLedger {
        AccountState storage acc = _existing(user, provider);
        if (cancelRetrievingAmount != 0) {
            uint256 pending = acc.pendingRefund;
            _drawRefunds(acc, cancelRetrievingAmount < pending ? cancelRetrievingAmount : pending);
        }
        uint256 balance = uint256(acc.balance) + msg.value;
        acc.balance = _u128(balance);
        emit BalanceUpdated(user, provider, balance, acc.pendingRefund);
    }

    /// @inheritdoc IServing
    function requestRefundAll(address user, address provider) external onlyLedger {
        AccountState storage acc = _existing(user, provider);
        uint256 amount = uint256(acc.balance) - acc.pendingRefund;
        if (amount == 0) return;
        if (acc.refunds.length >= MAX_REFUNDS_PER_ACCOUNT) revert TooManyRefunds(user, provider);
        uint32 index = acc.refundSeq;
        acc.refundSeq = index + 1;
        // amount <= balance (uint128) and timestamps fit in 64 bits for billions of years.
        // forge-lint: disable-next-line(unsafe-typecast)
        acc.refunds.push(StoredRefund({amount: uint128(amount), createdAt: uint64(block.timestamp), index: index}));
        acc.pendingRefund = acc.balance;
        emit RefundRequested(user, provider, index, block.timestamp);
        emit BalanceUpdated(user, provider, acc.balance, acc.balance);
    }

    /// @inheritdoc IServing
    /// @dev Who: the ledger, for the customer (`retrieveFund`). Worst case: a customer takes back funds a
    ///      provider earned but had not settled yet, which is why refunds wait `lockTime`; and, in
    ///      fine-tuning, why nothing is paid out while `_refundsFrozen` (see FineTuningServing).
    function processRefund(address user, address provider)
        external
        onlyLedger
        nonReentrant
        returns (uint256 totalAmount, uint256 balance, uint256 pendingRefund)
    {
        AccountState storage acc = _existing(user, provider);
        if (_refundsFrozen(user, provider)) return (0, acc.balance, acc.pendingRefund);
        StoredRefund[] storage refunds = acc.refunds;
        uint256 n = refunds.length;
        uint256 kept;
        uint256 lock = lockTime;
        for (uint256 i; i < n; ++i) {
            StoredRefund memory r = refunds[i];
            // Lock times are hours to days: a validator's few seconds of timestamp skew do not matter.
            // forge-lint: disable-next-line(block-timestamp)
            if (uint256(r.createdAt) + lock <= block.timestamp) {
                totalAmount += r.amount;
            } else {
                if (kept != i) refunds[kept] = r;
                ++kept;
            }
        }
        for (uint256 i = n; i > kept; --i) {
            refunds.pop();
        }
        balance = uint256(acc.balance) - totalAmount;
        pendingRefund = uint256(acc.pendingRefund) - totalAmount;
        // Both are differences of uint128 values that cannot underflow (matured <= pending <= balance).
        // forge-lint: disable-next-line(unsafe-typecast)
        acc.balance = uint128(balance);
        // forge-lint: disable-next-line(unsafe-typecast)
        acc.pendingRefund = uint128(pendingRefund);
        if (totalAmount != 0) {
            emit BalanceUpdated(user, provider, balance, pendingRefund);
            (bool ok,) = payable(ledgerAddress).call{value: totalAmount}("");
            if (!ok) revert TransferFailed();
        }
    }

    /// @inheritdoc IServing
    function deleteAccount(address user, address provider) external onlyLedger {
        AccountState storage acc = _existing(user, provider);
        if (acc.balance != 0) revert CannotRevokeWithNonZeroBalance(user, provider, acc.balance);
        acc.exists = false;
        acc.acknowledgedSigner = address(0);
        delete acc.additionalInfo;
        delete acc.refunds;
        _onAccountDeleted(user, provider);
        _unindex(user, provider);
        emit AccountDeleted(user, provider, 0);
    }

    // ------------------------------------------------------------------ shared views

    /// @inheritdoc IServing
    function accountExists(address user, address provider) external view returns (bool) {
        return _accounts[user][provider].exists;
    }

    /// @inheritdoc IServing
    function getPendingRefund(address user, address provider) external view returns (uint256) {
        return _existing(user, provider).pendingRefund;
    }

    // ------------------------------------------------------------------ customer

    /// @notice The caller (a customer) acknowledges `provider`'s current TEE signer (`acknowledged` true):
    ///         the signer's address is recorded, and TEE-signed settlements of this sub-account pay only
    ///         while that address is still the provider's signer and the owner acknowledges it. If the
    ///         provider later registers another signer, `getAccount(..).acknowledged` reads false again
    ///         and the customer must acknowledge the new one. With `acknowledged` false the record is
    ///         cleared; while it still names the current signer this needs an empty sub-account
    ///         (`CannotRevokeWithNonZeroBalance`), as 0G's client requires: funds that signer may still
    ///         charge for served requests leave through a refund (its lock time lets the provider settle).
    /// @dev Who: any customer, for its own sub-account only. Worst cases: acknowledging exposes the
    ///      sub-account's balance to that signer's settlements (the customer's consent, checked against
    ///      the attestation first); withdrawing it early would let a customer stop payment for requests
    ///      already served, hence the empty-account rule. A compromised acknowledged signer is stopped by
    ///      the owner (`revokeTEESignerAcknowledgement`) or by the provider registering another one.
    function acknowledgeTEESigner(address provider, bool acknowledged) external {
        AccountState storage acc = _existing(msg.sender, provider);
        if (acknowledged) {
            address current = _teeSigner(provider);
            if (current == address(0)) _revertNoTEESigner(provider);
            _userAcknowledge(acc, provider, current);
            return;
        }
        address signer = acc.acknowledgedSigner;
        if (signer != address(0) && acc.balance != 0) {
            (address current,) = _currentTEESigner(provider);
            if (current == signer) revert CannotRevokeWithNonZeroBalance(msg.sender, provider, acc.balance);
        }
        acc.acknowledgedSigner = address(0);
        emit UserTEESignerAcknowledged(msg.sender, provider, signer, false);
    }

    /// @notice The caller (a customer) acknowledges `teeSigner` as `provider`'s TEE signer, as
    ///         `acknowledgeTEESigner(provider, true)` does, but reverts `TEESignerChanged(provider, teeSigner,
    ///         current)` unless it is still the provider's current signer: a client that verified the
    ///         attestation of `teeSigner` never acknowledges a signer swapped in meanwhile.
    /// @dev Who: any customer, for its own sub-account only (see `acknowledgeTEESigner`).
    function acknowledgeTEESignerAddress(address provider, address teeSigner) external {
        AccountState storage acc = _existing(msg.sender, provider);
        _userAcknowledge(acc, provider, _requireCurrentSigner(provider, teeSigner));
    }

    function _userAcknowledge(AccountState storage acc, address provider, address signer) private {
        acc.acknowledgedSigner = signer;
        emit UserTEESignerAcknowledged(msg.sender, provider, signer, true);
    }

    /// @notice Who vouches for `provider`'s TEE signer, and whether a TEE-signed settlement of the
    ///         (`user`, `provider`) sub-account would pass the acknowledgement checks now: `teeSigner` is the
    ///         provider's current signer (zero if it has no service or no signer), `ownerAcknowledged` the
    ///         owner's acknowledgement of it, `userAcknowledgedSigner` the signer the customer acknowledged
    ///         (zero if none), and `settleable` is `teeSigner != 0 && ownerAcknowledged &&
    ///         userAcknowledgedSigner == teeSigner`.
    function getTEESignerAcknowledgements(address user, address provider)
        external
        view
        returns (address teeSigner, bool ownerAcknowledged, address userAcknowledgedSigner, bool settleable)
    {
        (teeSigner, ownerAcknowledged) = _currentTEESigner(provider);
        userAcknowledgedSigner = _accounts[user][provider].acknowledgedSigner;
        settleable = teeSigner != address(0) && ownerAcknowledged && userAcknowledgedSigner == teeSigner;
    }

    // ------------------------------------------------------------------ hooks

    /// @dev Hook for contracts that keep more per-account data (deliverables).
    function _onAccountDeleted(address user, address provider) internal virtual {}

    /// @dev Whether matured refunds of the sub-account must stay in it for now (default: never).
    function _refundsFrozen(address, address) internal view virtual returns (bool) {
        return false;
    }

    /// @dev Deletes `provider`'s service and emits the contract's `ServiceRemoved`; reverts
    ///      `ServiceNotExist` if it has none.
    function _deleteService(address provider) internal virtual;

    /// @dev `provider`'s TEE signer (zero if none); reverts `ServiceNotExist` if it has no service.
    function _teeSigner(address provider) internal view virtual returns (address);

    /// @dev `provider`'s current TEE signer and the owner's acknowledgement of it (zero and false if it
    ///      has no service); never reverts.
    function _currentTEESigner(address provider) internal view virtual returns (address signer, bool ownerAcknowledged);

    /// @dev Records the owner's acknowledgement of `provider`'s TEE signer (the service exists).
    function _setTEESignerAcknowledged(address provider, bool acknowledged) internal virtual;

    /// @dev Reverts with the contract's `NoTEESigner(provider)` (declared there so that
    ///      `<Contract>.NoTEESigner` keeps resolving for callers and tests).
    function _revertNoTEESigner(address provider) internal pure virtual;

    // ------------------------------------------------------------------ internals

    /// @dev A new service: takes its stake from `msg.value` and lists its provider.
    function _addProvider(address provider) internal {
        _takeStake(provider);
        _listAdd(_serviceProviders, _servicePos, provider);
    }

    /// @dev A removed service: unlists its provider and returns its stake.
    function _removeProvider(address provider) internal {
        _listRemove(_serviceProviders, _servicePos, provider);
        _returnStake(provider);
    }

    function _existing(address user, address provider) internal view returns (AccountState storage acc) {
        acc = _accounts[user][provider];
        if (!acc.exists) revert AccountNotExists(user, provider);
    }

    /// @dev Takes `amount` (<= balance) from the sub-account: first from the part not pending refund,
    ///      then from pending refunds, newest first. The caller reports the spend to the ledger.
    function _charge(AccountState storage acc, uint256 balance, uint256 pending, uint256 amount) internal {
        uint256 free = balance - pending;
        if (amount > free) {
            _drawRefunds(acc, amount - free);
        }
        // balance is a uint128 read from storage and amount <= balance.
        // forge-lint: disable-next-line(unsafe-typecast)
        acc.balance = uint128(balance - amount);
    }

    /// @dev Removes `amount` (<= pendingRefund) from pending refunds, newest first.
    function _drawRefunds(AccountState storage acc, uint256 amount) internal {
        StoredRefund[] storage refunds = acc.refunds;
        uint256 remaining = amount;
        uint256 n = refunds.length;
        while (remaining != 0 && n != 0) {
            StoredRefund storage r = refunds[n - 1];
            uint256 a = r.amount;
            if (a <= remaining) {
                remaining -= a;
                refunds.pop();
                --n;
            } else {
                // a is a uint128 and remaining < a.
                // forge-lint: disable-next-line(unsafe-typecast)
                r.amount = uint128(a - remaining);
                remaining = 0;
            }
        }
        acc.pendingRefund = uint128(uint256(acc.pendingRefund) - (amount - remaining));
    }

    /// @dev The 0G ABI's `Account.acknowledged`: true only while the signer the customer acknowledged is the
    ///      provider's current one (so 0G's client, which re-acknowledges when it reads false, does so
    ///      after the provider swapped its signer).
    function _userAcknowledged(AccountState storage acc, address provider) internal view returns (bool) {
        address acked = acc.acknowledgedSigner;
        if (acked == address(0)) return false;
        (address signer,) = _currentTEESigner(provider);
        return acked == signer;
    }

    function _refundViews(AccountState storage acc) internal view returns (Refund[] memory out) {
        uint256 n = acc.refunds.length;
        out = new Refund[](n);
        for (uint256 i; i < n; ++i) {
            StoredRefund memory r = acc.refunds[i];
            out[i] = Refund({index: r.index, amount: r.amount, createdAt: r.createdAt, processed: false});
        }
    }

    function _takeStake(address provider) private {
        if (msg.value < MIN_PROVIDER_STAKE) revert InsufficientStake(msg.value, MIN_PROVIDER_STAKE);
        _stakes[provider] = msg.value;
        emit ProviderStaked(provider, msg.value);
    }

    function _returnStake(address provider) private {
        uint256 stake = _stakes[provider];
        delete _stakes[provider];
        emit ProviderStakeReturned(provider, stake);
        if (stake != 0) _send(provider, stake);
    }

    function _send(address to, uint256 amount) internal {
        (bool ok,) = payable(to).call{value: amount}("");
        if (!ok) revert TransferFailed();
    }

    function _checkString(string calldata s) internal pure {
        if (bytes(s).length > MAX_STRING_LENGTH) revert AdditionalInfoTooLong();
    }

    function _page(uint256 total, uint256 offset, uint256 limit) internal pure returns (uint256 start, uint256 end) {
        if (limit > MAX_PAGE_SIZE) revert LimitTooLarge(limit, MAX_PAGE_SIZE);
        if (offset >= total) return (total, total);
        start = offset;
        end = total - offset < limit ? total : offset + limit;
    }

    function _u128(uint256 x) internal pure returns (uint128) {
        // Native token supplies are far below 2^128; this only guards against absurd inputs.
        if (x > type(uint128).max) revert InvalidConfig("amount", x);
        // Checked just above.
        // forge-lint: disable-next-line(unsafe-typecast)
        return uint128(x);
    }

    function _checkLockTime(uint256 t) private pure {
        if (t < MIN_LOCKTIME || t > MAX_LOCKTIME) revert LockTimeOutOfRange(t, MIN_LOCKTIME, MAX_LOCKTIME);
    }

    function _index(address user, address provider) private {
        _allAccounts.push(AccountKey(user, provider));
        _allPos[user][provider] = _allAccounts.length;
        _listAdd(_providersOfUser[user], _userPos[user], provider);
        _listAdd(_usersOfProvider[provider], _providerPos[provider], user);
    }

    function _unindex(address user, address provider) private {
        uint256 pos = _allPos[user][provider];
        uint256 last = _allAccounts.length;
        if (pos != last) {
            AccountKey memory moved = _allAccounts[last - 1];
            _allAccounts[pos - 1] = moved;
            _allPos[moved.user][moved.provider] = pos;
        }
        _allAccounts.pop();
        delete _allPos[user][provider];
        _listRemove(_providersOfUser[user], _userPos[user], provider);
        _listRemove(_usersOfProvider[provider], _providerPos[provider], user);
    }

    /// @dev Appends `item` to `list` and records its 1-based position in `pos`.
    function _listAdd(address[] storage list, mapping(address => uint256) storage pos, address item) private {
        list.push(item);
        pos[item] = list.length;
    }

    /// @dev Removes `item` (listed) from `list`: the last entry takes its place, so order is not kept.
    function _listRemove(address[] storage list, mapping(address => uint256) storage pos, address item) private {
        uint256 p = pos[item];
        uint256 last = list.length;
        if (p != last) {
            address moved = list[last - 1];
            list[p - 1] = moved;
            pos[moved] = p;
        }
        list.pop();
        delete pos[item];
    }
}
