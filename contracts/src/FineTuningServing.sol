// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {ServingBase, Refund} from "./ServingBase.sol";
import {ILedger} from "./interfaces/IServing.sol";
import {ECDSA} from "./lib/ECDSA.sol";
import {EIP712} from "./lib/EIP712.sol";

/// @notice The machine a fine-tuning provider offers (0G layout).
struct Quota {
    uint256 cpuCount;
    uint256 nodeMemory;
    uint256 gpuCount;
    uint256 nodeStorage;
    string gpuType;
}

/// @notice A provider's fine-tuning service (0G layout).
struct Service {
    address provider;
    string url;
    Quota quota;
    uint256 pricePerToken;
    bool occupied;
    string[] models;
    address teeSignerAddress;
    bool teeSignerAcknowledged;
}

/// @notice A fine-tuned model the provider delivered (0G layout). `encryptedSecret` (the ECIES-wrapped
///         AES key) is set only by a settlement after the customer acknowledged.
struct Deliverable {
    string id;
    bytes modelRootHash;
    bytes encryptedSecret;
    bool acknowledged;
    uint248 timestamp;
    bool settled;
}

/// @notice A sub-account with its deliverables, oldest first (0G layout; `deliverablesHead` is always
///         0 here because deliverables are kept in order, not in a ring buffer).
struct AccountDetails {
    address user;
    address provider;
    uint256 nonce;
    uint256 balance;
    uint256 pendingRefund;
    Refund[] refunds;
    string additionalInfo;
    Deliverable[] deliverables;
    uint256 validRefundsLength;
    uint256 deliverablesHead;
    uint256 deliverablesCount;
    bool acknowledged;
}

/// @notice A sub-account without the arrays (0G layout).
struct AccountSummary {
    address user;
    address provider;
    uint256 nonce;
    uint256 balance;
    uint256 pendingRefund;
    string additionalInfo;
    uint256 validRefundsLength;
    uint256 deliverablesCount;
    bool acknowledged;
}

/// @notice A TEE-signed settlement of one deliverable (0G layout): the TEE signed EIP-712
///         `VerifierMessage(string id,bytes encryptedSecret,bytes modelRootHash,uint256 nonce,uint256 taskFee,address user)`.
struct VerifierInput {
    string id;
    bytes encryptedSecret;
    bytes modelRootHash;
    uint256 nonce;
    bytes signature;
    uint256 taskFee;
    address user;
}

/// @title FineTuningServing
/// @notice Fine-tuning services, customer sub-accounts and deliverables, settled atomically against the
///         reveal of the model key. ABI-compatible with the 0G Compute Network's FineTuningServing, with
///         several deliverables in flight per customer and provider, and `abandonDeliverable`.
contract FineTuningServing is ServingBase, EIP712 {
    // ------------------------------------------------------------------ constants

    bytes32 public constant VERIFIER_MESSAGE_TYPEHASH = keccak256(
        "VerifierMessage(string id,bytes encryptedSecret,bytes modelRootHash,uint256 nonce,uint256 taskFee,address user)"
    );
    /// @notice Upper bound for the configurable `MAX_DELIVERABLES_PER_ACCOUNT`.
    uint256 public constant MAX_DELIVERABLES_LIMIT = 64;
    /// @notice Longest deliverable id (bytes).
    uint256 public constant MAX_ID_LENGTH = 128;
    /// @notice Longest model root hash (bytes).
    uint256 public constant MAX_ROOT_HASH_LENGTH = 256;
    /// @notice Services in the registry (bounds `getAllServices`).
    uint256 public constant MAX_SERVICES = 256;
    /// @notice Models per service.
    uint256 public constant MAX_MODELS = 32;

    /// @notice Deliverables kept per sub-account; when full, adding one evicts the oldest settled one.
    uint256 public immutable MAX_DELIVERABLES_PER_ACCOUNT;
    /// @notice Percentage of `taskFee` charged when the customer never acknowledged the deliverable.
    uint256 public penaltyPercentage;

    // ------------------------------------------------------------------ errors (0G names + native)

    /// @notice The deliverable is settled: it can no longer be acknowledged.
    error CannotAcknowledgeSettledDeliverable(string id);
    /// @notice The sub-account holds `MAX_DELIVERABLES_PER_ACCOUNT` unsettled deliverables (the oldest is
    ///         `id`): settle or abandon one first.
    error CannotEvictUnsettledDeliverable(string id);
    /// @notice This id was already used in this sub-account (ids are never reused).
    error DeliverableAlreadyExists(string id);
    /// @notice The deliverable is already settled.
    error DeliverableAlreadySettled(string id);
    /// @notice The id must be 1..MAX_ID_LENGTH bytes.
    error DeliverableIdInvalidLength(uint256 length);
    /// @notice No such deliverable in this sub-account.
    error DeliverableNotExists(string id);
    /// @notice The settlement is not acceptable: `reason` says why.
    error InvalidVerifierInput(string reason);
    /// @notice The penalty must be at most 100 percent.
    error PenaltyPercentageTooHigh(uint256 percentage);
    /// @notice The customer acknowledged the deliverable, so the settlement must reveal the secret.
    error SecretShouldNotBeEmpty();
    /// @notice The customer did not acknowledge the deliverable, so the settlement must not carry a secret.
    error SecretShouldBeEmpty();
    /// @notice The customer acknowledged the deliverable: it can only be settled, not abandoned.
    error DeliverableAlreadyAcknowledged(string id);
    /// @notice The sub-account cannot cover the fee (`balance` < `fee`).
    error InsufficientBalance(address user, address provider, uint256 balance, uint256 fee);
    /// @notice The model root hash must be 1..MAX_ROOT_HASH_LENGTH bytes.
    error InvalidModelRootHash(uint256 length);
    /// @notice The registry holds `MAX_SERVICES` services.
    error TooManyServices(uint256 max);
    /// @notice A service lists at most `MAX_MODELS` models.
    error TooManyModels(uint256 count, uint256 max);
    /// @notice The service has no TEE signer to acknowledge.
    error NoTEESigner(address provider);
    /// @notice `settleFees`: the contract owner does not acknowledge `teeSigner`, the provider's current TEE
    ///         signer (never did, revoked it, or the provider registered another signer since).
    error TEESignerNotAcknowledgedByOwner(address provider, address teeSigner);
    /// @notice `settleFees`: the customer did not acknowledge `teeSigner`, the provider's current TEE signer;
    ///         `acknowledgedSigner` is the one it acknowledged (zero if none).
    error TEESignerNotAcknowledgedByUser(address user, address provider, address teeSigner, address acknowledgedSigner);

    // ------------------------------------------------------------------ events

    /// @notice The provider recorded a deliverable for `user`.
    event DeliverableAdded(
        address indexed user, address indexed provider, string deliverableId, bytes modelRootHash, uint256 timestamp
    );
    /// @notice The customer acknowledged (downloaded and verified) a deliverable.
    event DeliverableAcknowledged(
        address indexed user, address indexed provider, string deliverableId, uint256 timestamp
    );
    /// @notice A settled deliverable was dropped to make room for a new one.
    event DeliverableEvicted(
        address indexed provider,
        address indexed user,
        string evictedDeliverableId,
        string newDeliverableId,
        uint256 timestamp
    );
    /// @notice The provider dropped an unsettled, unacknowledged deliverable without a fee.
    event DeliverableAbandoned(address indexed user, address indexed provider, string deliverableId, uint256 timestamp);
    /// @notice A deliverable was settled for `fee`; with `acknowledged` the secret is now on chain.
    event FeesSettled(
        address indexed user,
        address indexed provider,
        string deliverableId,
        uint256 fee,
        bool acknowledged,
        uint256 nonce
    );
    /// @notice A service was created or updated.
    event ServiceUpdated(
        address indexed provider,
        string url,
        Quota quota,
        uint256 pricePerToken,
        address teeSignerAddress,
        bool occupied
    );
    /// @notice A service was removed.
    event ServiceRemoved(address indexed provider);
    /// @notice The owner changed the penalty percentage.
    event PenaltyPercentageUpdated(uint256 oldPercentage, uint256 newPercentage);

    // ------------------------------------------------------------------ state

    struct StoredService {
        string url;
        Quota quota;
        uint256 pricePerToken;
        string[] models;
        address teeSignerAddress;
        bool teeSignerAcknowledged;
        bool occupied;
        bool exists;
    }

    mapping(address provider => StoredService) private _services;

    /// @dev Deliverable id hashes per sub-account, oldest first (at most MAX_DELIVERABLES_PER_ACCOUNT).
    mapping(address user => mapping(address provider => bytes32[])) private _order;
    mapping(address user => mapping(address provider => mapping(bytes32 idHash => Deliverable))) private _deliverables;
    /// @dev Ids ever used per sub-account; survives eviction, abandonment and account deletion.
    mapping(address user => mapping(address provider => mapping(bytes32 idHash => bool))) private _usedIds;

    /// @dev Per sub-account: acknowledged deliverables not settled yet, and until when their latest
    ///      acknowledgement keeps matured refunds in the sub-account (see `_refundsFrozen`).
    struct RefundFreeze {
        uint64 until;
        uint32 acknowledgedUnsettled;
    }

    mapping(address user => mapping(address provider => RefundFreeze)) private _freezes;

    /// @param lockTime_ Refund lock time in seconds (`MIN_LOCKTIME`..`MAX_LOCKTIME`).
    /// @param ledger_ The LedgerManager that funds sub-accounts.
    /// @param owner_ Administrator: acknowledges TEE signers, sets lock time and penalty.
    /// @param penaltyPercentage_ Percent of `taskFee` charged for unacknowledged deliverables (0..100).
    /// @param minProviderStake_ Stake a provider pays to create a service (neuron).
    /// @param maxDeliverablesPerAccount_ Deliverables kept per sub-account (1..64).
    constructor(
        uint256 lockTime_,
        address ledger_,
        address owner_,
        uint256 penaltyPercentage_,
        uint256 minProviderStake_,
        uint256 maxDeliverablesPerAccount_
    ) ServingBase(lockTime_, ledger_, owner_, minProviderStake_) EIP712("0G Fine-Tuning Serving", "1") {
        if (penaltyPercentage_ > 100) revert PenaltyPercentageTooHigh(penaltyPercentage_);
        if (maxDeliverablesPerAccount_ == 0 || maxDeliverablesPerAccount_ > MAX_DELIVERABLES_LIMIT) {
            revert InvalidConfig("maxDeliverablesPerAccount", maxDeliverablesPerAccount_);
        }
        penaltyPercentage = penaltyPercentage_;
        MAX_DELIVERABLES_PER_ACCOUNT = maxDeliverablesPerAccount_;
    }

    /// @notice Always reverts `AlreadyInitialized` (configured by the constructor).
    function initialize(uint256, address, address, uint256) external pure {
        revert AlreadyInitialized();
    }

    /// @notice Owner: sets the penalty percentage for unacknowledged deliverables.
    function updatePenaltyPercentage(uint256 _penaltyPercentage) external onlyOwner {
        if (_penaltyPercentage > 100) revert PenaltyPercentageTooHigh(_penaltyPercentage);
        emit PenaltyPercentageUpdated(penaltyPercentage, _penaltyPercentage);
        penaltyPercentage = _penaltyPercentage;
    }

    // ------------------------------------------------------------------ provider: service

    /// @notice Creates the caller's service (with `msg.value >= MIN_PROVIDER_STAKE` as stake) or
    ///         replaces its fields (no value allowed). Changing the TEE signer clears the owner's
    ///         acknowledgement.
    function addOrUpdateService(
        string calldata url,
        Quota calldata quota,
        uint256 pricePerToken,
        bool occupied,
        string[] calldata models,
        address teeSignerAddress
    ) external payable nonReentrant {
        _checkString(url);
        _checkString(quota.gpuType);
        uint256 m = models.length;
        if (m > MAX_MODELS) revert TooManyModels(m, MAX_MODELS);
        for (uint256 i; i < m; ++i) {
            _checkString(models[i]);
        }
        StoredService storage s = _services[msg.sender];
        if (s.exists) {
            if (msg.value != 0) revert CannotAddStakeWhenUpdating();
        } else {
            if (_serviceProviders.length >= MAX_SERVICES) revert TooManyServices(MAX_SERVICES);
            _addProvider(msg.sender);
            s.exists = true;
        }
        if (s.teeSignerAddress != teeSignerAddress) s.teeSignerAcknowledged = false;
        s.url = url;
        s.quota = quota;
        s.pricePerToken = pricePerToken;
        s.occupied = occupied;
        delete s.models;
        for (uint256 i; i < m; ++i) {
            s.models.push(models[i]);
        }
        s.teeSignerAddress = teeSignerAddress;
        emit ServiceUpdated(msg.sender, url, quota, pricePerToken, teeSignerAddress, occupied);
    }

    // ------------------------------------------------------------------ deliverables

    /// @notice Provider: records a deliverable (the sealed model's storage root) for `user`. When the
    ///         sub-account already holds `MAX_DELIVERABLES_PER_ACCOUNT`, the oldest settled one is evicted;
    ///         if none is settled this reverts `CannotEvictUnsettledDeliverable`.
    function addDeliverable(address user, string calldata id, bytes calldata modelRootHash) external {
        _service(msg.sender);
        _existing(user, msg.sender);
        uint256 idLength = bytes(id).length;
        if (idLength == 0 || idLength > MAX_ID_LENGTH) revert DeliverableIdInvalidLength(idLength);
        uint256 rootLength = modelRootHash.length;
        if (rootLength == 0 || rootLength > MAX_ROOT_HASH_LENGTH) revert InvalidModelRootHash(rootLength);
        bytes32 key = keccak256(bytes(id));
        if (_usedIds[user][msg.sender][key]) revert DeliverableAlreadyExists(id);

        bytes32[] storage order = _order[user][msg.sender];
        if (order.length >= MAX_DELIVERABLES_PER_ACCOUNT) _evictOldestSettled(user, order, id);

        _usedIds[user][msg.sender][key] = true;
        order.push(key);
        Deliverable storage d = _deliverables[user][msg.sender][key];
        d.id = id;
        d.modelRootHash = modelRootHash;
        d.timestamp = uint248(block.timestamp);
        emit DeliverableAdded(user, msg.sender, id, modelRootHash, block.timestamp);
    }

    /// @notice Customer: acknowledges that deliverable `id` from `provider` was downloaded and verified.
    ///         The provider's settlement will then charge the full fee and reveal the key.
    /// @dev Who: the customer, for its own deliverables. Acknowledging also keeps the sub-account's
    ///      matured refunds in it for `lockTime` (while an acknowledged deliverable is unsettled), so the
    ///      provider's settlement, whose calldata reveals the key, cannot be made to revert by a refund
    ///      processed just before it (the customer would get the key and pay nothing). Worst case for the
    ///      customer: its refund waits at most `lockTime` after its last acknowledgement.
    function acknowledgeDeliverable(address provider, string calldata id) external {
        _existing(msg.sender, provider);
        Deliverable storage d = _deliverable(msg.sender, provider, id);
        if (d.settled) revert CannotAcknowledgeSettledDeliverable(id);
        RefundFreeze storage f = _freezes[msg.sender][provider];
        if (!d.acknowledged) ++f.acknowledgedUnsettled;
        // Timestamps and lock times (<= 30 days) fit in 64 bits for billions of years.
        // forge-lint: disable-next-line(unsafe-typecast)
        f.until = uint64(block.timestamp + lockTime);
        d.acknowledged = true;
        emit DeliverableAcknowledged(msg.sender, provider, id, block.timestamp);
    }

    /// @notice Provider: drops an unsettled, unacknowledged deliverable of `user`, charging nothing.
    function abandonDeliverable(address user, string calldata id) external {
        Deliverable storage d = _deliverable(user, msg.sender, id);
        if (d.settled) revert DeliverableAlreadySettled(id);
        if (d.acknowledged) revert DeliverableAlreadyAcknowledged(id);
        bytes32 key = keccak256(bytes(id));
        bytes32[] storage order = _order[user][msg.sender];
        uint256 n = order.length;
        for (uint256 i; i < n; ++i) {
            if (order[i] == key) {
                _removeAt(order, i);
                break;
            }
        }
        delete _deliverables[user][msg.sender][key];
        emit DeliverableAbandoned(user, msg.sender, id, block.timestamp);
    }

    /// @notice Provider: settles one deliverable with the TEE's signature. If the customer acknowledged
    ///         it, the full `taskFee` is charged and `encryptedSecret` is stored (revealed); otherwise
    ///         `taskFee * penaltyPercentage / 100` is charged and the secret must be empty. Either way the
    ///         signature must come from the provider's current TEE signer, which the owner acknowledges
    ///         (`TEESignerNotAcknowledgedByOwner`) and the customer acknowledged by address
    ///         (`TEESignerNotAcknowledgedByUser`).
    /// @dev Who: any provider, for its own customers' deliverables. Worst case: it charges a customer up
    ///      to the sub-account balance with a fee its acknowledged TEE signed; a signer the customer or the
    ///      owner did not acknowledge can neither charge nor reveal anything.
    ///      Reveal safety (for the provider): the key is public as soon as this transaction is broadcast,
    ///      even if it reverts. Between the customer's acknowledgement and `lockTime` after it, only
    ///      settlements can lower the balance (matured refunds stay, see `_refundsFrozen`); a provider that
    ///      checks `balance >= fee` and broadcasts inside that window (with a margin for inclusion) is paid
    ///      whenever the key becomes public.
    function settleFees(VerifierInput calldata verifierInput) external nonReentrant {
        address user = verifierInput.user;
        AccountState storage acc = _existing(user, msg.sender);
        Deliverable storage d = _deliverable(user, msg.sender, verifierInput.id);
        bool acknowledged = _checkSettlement(verifierInput, acc, d);
        uint256 fee = acknowledged ? verifierInput.taskFee : verifierInput.taskFee * penaltyPercentage / 100;
        uint256 balance = acc.balance;
        if (fee > balance) revert InsufficientBalance(user, msg.sender, balance, fee);

        acc.nonce = verifierInput.nonce;
        d.settled = true;
        if (acknowledged) {
            d.encryptedSecret = verifierInput.encryptedSecret;
            --_freezes[user][msg.sender].acknowledgedUnsettled;
        }
        if (fee != 0) _charge(acc, balance, acc.pendingRefund, fee);
        emit FeesSettled(user, msg.sender, verifierInput.id, fee, acknowledged, verifierInput.nonce);
        emit BalanceUpdated(user, msg.sender, acc.balance, acc.pendingRefund);
        if (fee != 0) {
            ILedger(ledgerAddress).spendFund(user, fee);
            _send(msg.sender, fee);
        }
    }

    /// @dev Every check of `settleFees` except the balance; returns whether the customer acknowledged.
    function _checkSettlement(VerifierInput calldata v, AccountState storage acc, Deliverable storage d)
        private
        view
        returns (bool acknowledged)
    {
        if (d.settled) revert DeliverableAlreadySettled(v.id);
        address signer = _acknowledgedSigner(acc, v.user);
        if (v.nonce <= acc.nonce) revert InvalidVerifierInput("nonce must be greater than the account nonce");
        if (keccak256(v.modelRootHash) != keccak256(d.modelRootHash)) {
            revert InvalidVerifierInput("modelRootHash does not match the deliverable");
        }
        acknowledged = d.acknowledged;
        uint256 secretLength = v.encryptedSecret.length;
        if (acknowledged && secretLength == 0) revert SecretShouldNotBeEmpty();
        if (!acknowledged && secretLength != 0) revert SecretShouldBeEmpty();
        bytes32 digest = verifierMessageDigest(v.id, v.encryptedSecret, v.modelRootHash, v.nonce, v.taskFee, v.user);
        if (ECDSA.tryRecoverCalldata(digest, v.signature) != signer) {
            revert InvalidVerifierInput("signature does not recover to the TEE signer");
        }
    }

    /// @dev The caller's (a provider's) TEE signer, after checking that the owner acknowledges it and that
    ///      `user` acknowledged that same address.
    function _acknowledgedSigner(AccountState storage acc, address user) private view returns (address signer) {
        StoredService storage s = _services[msg.sender];
        signer = s.teeSignerAddress;
        if (signer == address(0)) revert InvalidVerifierInput("provider has no service or no TEE signer");
        if (!s.teeSignerAcknowledged) revert TEESignerNotAcknowledgedByOwner(msg.sender, signer);
        address acked = acc.acknowledgedSigner;
        if (acked != signer) revert TEESignerNotAcknowledgedByUser(user, msg.sender, signer, acked);
    }

    /// @notice The EIP-712 digest the TEE signs for `settleFees` (for clients and tests).
    function verifierMessageDigest(
        string calldata id,
        bytes calldata encryptedSecret,
        bytes calldata modelRootHash,
        uint256 nonce,
        uint256 taskFee,
        address user
    ) public view returns (bytes32) {
        return _hashTypedData(
            keccak256(
                abi.encode(
                    VERIFIER_MESSAGE_TYPEHASH,
                    keccak256(bytes(id)),
                    keccak256(encryptedSecret),
                    keccak256(modelRootHash),
                    nonce,
                    taskFee,
                    user
                )
            )
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

    /// @notice Every service (at most `MAX_SERVICES`).
    function getAllServices() external view returns (Service[] memory services) {
        uint256 n = _serviceProviders.length;
        services = new Service[](n);
        for (uint256 i; i < n; ++i) {
            address p = _serviceProviders[i];
            services[i] = _serviceView(p, _services[p]);
        }
    }

    /// @notice The sub-account's refund freeze: `acknowledgedUnsettled` deliverables the customer acknowledged
    ///         and the provider has not settled yet; while it is non-zero and `block.timestamp < until`,
    ///         matured refunds stay in the sub-account. A provider reveals a key (settles an acknowledged
    ///         deliverable) only well before `until`.
    function getRefundFreeze(address user, address provider)
        external
        view
        returns (uint256 until, uint256 acknowledgedUnsettled)
    {
        RefundFreeze storage f = _freezes[user][provider];
        return (f.until, f.acknowledgedUnsettled);
    }

    /// @notice Deliverable `id` of the (user, provider) sub-account; reverts `DeliverableNotExists`.
    function getDeliverable(address user, address provider, string calldata id)
        external
        view
        returns (Deliverable memory)
    {
        return _deliverable(user, provider, id);
    }

    /// @notice Every deliverable of the (user, provider) sub-account, oldest first.
    function getDeliverables(address user, address provider) public view returns (Deliverable[] memory out) {
        bytes32[] storage order = _order[user][provider];
        uint256 n = order.length;
        out = new Deliverable[](n);
        for (uint256 i; i < n; ++i) {
            out[i] = _deliverables[user][provider][order[i]];
        }
    }

    /// @notice The sub-account with refunds and deliverables; reverts `AccountNotExists` if none.
    function getAccount(address user, address provider) external view returns (AccountDetails memory) {
        AccountState storage acc = _existing(user, provider);
        Deliverable[] memory deliverables = getDeliverables(user, provider);
        return AccountDetails({
            user: user,
            provider: provider,
            nonce: acc.nonce,
            balance: acc.balance,
            pendingRefund: acc.pendingRefund,
            refunds: _refundViews(acc),
            additionalInfo: acc.additionalInfo,
            deliverables: deliverables,
            validRefundsLength: acc.refunds.length,
            deliverablesHead: 0,
            deliverablesCount: deliverables.length,
            acknowledged: _userAcknowledged(acc, provider)
        });
    }

    /// @notice A page of all sub-accounts, and the total count.
    function getAllAccounts(uint256 offset, uint256 limit)
        external
        view
        returns (AccountSummary[] memory accounts, uint256 total)
    {
        total = _allAccounts.length;
        (uint256 start, uint256 end) = _page(total, offset, limit);
        accounts = new AccountSummary[](end - start);
        for (uint256 i = start; i < end; ++i) {
            AccountKey memory k = _allAccounts[i];
            accounts[i - start] = _summary(k.user, k.provider);
        }
    }

    /// @notice A page of `provider`'s sub-accounts, and their total count.
    function getAccountsByProvider(address provider, uint256 offset, uint256 limit)
        external
        view
        returns (AccountSummary[] memory accounts, uint256 total)
    {
        address[] storage users = _usersOfProvider[provider];
        total = users.length;
        (uint256 start, uint256 end) = _page(total, offset, limit);
        accounts = new AccountSummary[](end - start);
        for (uint256 i = start; i < end; ++i) {
            accounts[i - start] = _summary(users[i], provider);
        }
    }

    /// @notice A page of `user`'s sub-accounts, and their total count.
    function getAccountsByUser(address user, uint256 offset, uint256 limit)
        external
        view
        returns (AccountSummary[] memory accounts, uint256 total)
    {
        address[] storage providers = _providersOfUser[user];
        total = providers.length;
        (uint256 start, uint256 end) = _page(total, offset, limit);
        accounts = new AccountSummary[](end - start);
        for (uint256 i = start; i < end; ++i) {
            accounts[i - start] = _summary(user, providers[i]);
        }
    }

    /// @notice The caller's (a provider's) sub-accounts with each of `users` (empty entries for none).
    function getBatchAccountsByUsers(address[] calldata users)
        external
        view
        returns (AccountSummary[] memory accounts)
    {
        uint256 n = users.length;
        if (n > MAX_PAGE_SIZE) revert LimitTooLarge(n, MAX_PAGE_SIZE);
        accounts = new AccountSummary[](n);
        for (uint256 i; i < n; ++i) {
            if (_accounts[users[i]][msg.sender].exists) accounts[i] = _summary(users[i], msg.sender);
        }
    }

    // ------------------------------------------------------------------ internals

    /// @dev Matured refunds stay while an acknowledged deliverable is unsettled, for at most `lockTime`
    ///      after the customer's latest acknowledgement: the provider knows its deadline from the moment of
    ///      the acknowledgement, whatever the customer does with its refunds.
    function _refundsFrozen(address user, address provider) internal view override returns (bool) {
        RefundFreeze storage f = _freezes[user][provider];
        // forge-lint: disable-next-line(block-timestamp)
        return f.acknowledgedUnsettled != 0 && block.timestamp < f.until;
    }

    function _onAccountDeleted(address user, address provider) internal override {
        delete _freezes[user][provider];
        bytes32[] storage order = _order[user][provider];
        uint256 n = order.length;
        for (uint256 i; i < n; ++i) {
            delete _deliverables[user][provider][order[i]];
        }
        delete _order[user][provider];
    }

    function _deliverable(address user, address provider, string calldata id)
        private
        view
        returns (Deliverable storage d)
    {
        d = _deliverables[user][provider][keccak256(bytes(id))];
        if (bytes(d.id).length == 0) revert DeliverableNotExists(id);
    }

    /// @dev Drops the oldest settled deliverable of a full sub-account, or reverts if none is settled.
    function _evictOldestSettled(address user, bytes32[] storage order, string calldata newId) private {
        mapping(bytes32 => Deliverable) storage all = _deliverables[user][msg.sender];
        uint256 n = order.length;
        for (uint256 i; i < n; ++i) {
            bytes32 key = order[i];
            if (all[key].settled) {
                emit DeliverableEvicted(msg.sender, user, all[key].id, newId, block.timestamp);
                _removeAt(order, i);
                delete all[key];
                return;
            }
        }
        revert CannotEvictUnsettledDeliverable(all[order[0]].id);
    }

    /// @dev Removes `order[i]` keeping the order (bounded by MAX_DELIVERABLES_PER_ACCOUNT).
    function _removeAt(bytes32[] storage order, uint256 i) private {
        uint256 last = order.length - 1;
        for (uint256 j = i; j < last; ++j) {
            order[j] = order[j + 1];
        }
        order.pop();
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
            url: s.url,
            quota: s.quota,
            pricePerToken: s.pricePerToken,
            occupied: s.occupied,
            models: s.models,
            teeSignerAddress: s.teeSignerAddress,
            teeSignerAcknowledged: s.teeSignerAcknowledged
        });
    }

    function _summary(address user, address provider) private view returns (AccountSummary memory) {
        AccountState storage acc = _accounts[user][provider];
        return AccountSummary({
            user: user,
            provider: provider,
            nonce: acc.nonce,
            balance: acc.balance,
            pendingRefund: acc.pendingRefund,
            additionalInfo: acc.additionalInfo,
            validRefundsLength: acc.refunds.length,
            deliverablesCount: _order[user][provider].length,
            acknowledged: _userAcknowledged(acc, provider)
        });
    }
}
