// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.28;

import {Ownable} from "./lib/Ownable.sol";
import {ReentrancyGuard} from "./lib/ReentrancyGuard.sol";
import {IServing, ILedger} from "./interfaces/IServing.sol";

/// @title LedgerManager
/// @notice Holds each customer's prepaid funds (the "ledger") and moves them into per-provider
///         sub-accounts on the registered serving contracts (`inference-v1.0`, `fine-tuning-v1.0`).
///         ABI-compatible with the 0G Compute Network's LedgerManager for every function and event the
///         official 0G client calls; see contracts/README.md for the deployment parameters.
/// @dev Accounting: `availableBalance` is held by this contract; `totalBalance - availableBalance` is
///      held by the serving contracts in the customer's sub-accounts. So this contract's native balance
///      always equals the sum of all `availableBalance`s.
contract LedgerManager is ILedger, Ownable, ReentrancyGuard {
    // ------------------------------------------------------------------ types

    /// @notice A customer's ledger as returned by `getLedger` (0G layout).
    struct Ledger {
        address user;
        uint256 availableBalance;
        uint256 totalBalance;
        string additionalInfo;
    }

    /// @notice A registered serving contract (0G layout).
    struct ServiceInfo {
        address serviceAddress;
        address serviceContract;
        string serviceType;
        string version;
        string fullName;
        string description;
        bool isRecommended;
        uint256 registeredAt;
    }

    struct LedgerData {
        uint256 availableBalance;
        uint256 totalBalance;
        string additionalInfo;
    }

    struct ServiceData {
        string serviceType;
        string version;
        string fullName;
        string description;
        uint256 registeredAt;
    }

    // ------------------------------------------------------------------ errors (0G names)

    /// @notice `additionalInfo` is longer than `MAX_ADDITIONAL_INFO_LENGTH`.
    error AdditionalInfoTooLong(uint256 length, uint256 max);
    /// @notice `initialize` exists for ABI compatibility only: this contract is configured by its constructor.
    error AlreadyInitialized();
    /// @notice A call to a serving contract failed without a reason.
    error CallFailed();
    /// @notice `spendFund` may only be called by a registered serving contract.
    error CallerNotRegisteredService(address caller);
    /// @notice Plain transfers are refused: use `depositFund`, `depositFundFor` or `addLedger`.
    error DirectDepositsDisabled();
    /// @notice The ledger's available balance is short: deposit more or retrieve funds from sub-accounts.
    error InsufficientAvailableBalance(uint256 available, uint256 required);
    /// @notice The ledger's total balance cannot cover a spend (should be unreachable).
    error InsufficientBalance(address user);
    /// @notice `registerService` needs a contract address.
    error InvalidServiceAddress(address serviceAddress);
    /// @notice No registered service has this full name (e.g. `inference-v1.0`) or type.
    error InvalidServiceType(string serviceType);
    /// @notice `addLedger` on an address that already has one: use `depositFund`.
    error LedgerExists(address user);
    /// @notice Reserved (0G); this implementation reports re-entry as `ReentrantCall`.
    error LedgerLocked();
    /// @notice The address has no ledger: call `addLedger` (or `depositFund`) first.
    error LedgerNotExists(address user);
    /// @notice The amount is below the configured minimum (`MIN_ACCOUNT_BALANCE` for a new ledger,
    ///         `MIN_TRANSFER_AMOUNT` for a transfer).
    error MinimumDepositRequired(uint256 provided, uint256 required);
    /// @notice `deleteLedger` while funds are still in sub-accounts: `retrieveFund` them first.
    error MustWithdrawAllFundsFirst(uint256 remainingBalance);
    /// @notice No recommended version is set for this service type.
    error NoRecommendedService(string serviceType);
    /// @notice This serving contract is already registered.
    error ServiceAlreadyRegistered(address serviceAddress);
    /// @notice The contract does not implement IServing (ERC-165) or points at another ledger.
    error ServiceMustImplementIServing(address serviceAddress);
    /// @notice A service with this full name is already registered.
    error ServiceNameExists(string serviceName);
    /// @notice No service is registered at this address.
    error ServiceNotFound(address serviceAddress);
    /// @notice Reserved (0G).
    error ServiceNotRegistered(address serviceAddress);
    /// @notice The registry holds at most `MAX_SERVICES` services.
    error ServiceRegistryLimitReached(uint256 limit);
    /// @notice `registerService` needs a non-empty service type.
    error ServiceTypeRequired();
    /// @notice More providers in one call than `MAX_PROVIDERS_PER_BATCH`: split the call.
    error TooManyProviders(uint256 requested, uint256 maximum);
    /// @notice The customer already has `MAX_PROVIDERS_PER_USER_PER_SERVICE` sub-accounts on this service.
    error TooManyProvidersForService(uint256 current, uint256 maximum);
    /// @notice Sending native tokens to the customer failed.
    error TransferFailed();
    /// @notice `registerService` needs a non-empty version.
    error VersionRequired();
    /// @notice The zero address is not allowed here.
    error ZeroAddressNotAllowed();
    /// @notice The amount must be greater than zero.
    error ZeroAmountNotAllowed();
    /// @notice A page larger than `MAX_PAGE_SIZE` was requested.
    error LimitTooLarge(uint256 limit, uint256 max);
    /// @notice A constructor parameter is out of range: `parameter` names it, `value` is what was given.
    error InvalidConfig(string parameter, uint256 value);

    // ------------------------------------------------------------------ events

    /// @notice A serving contract paid `amount` of `user`'s funds to a provider.
    event FundSpent(address indexed user, address indexed service, uint256 amount);
    /// @notice Emitted once at deployment (the contract is born initialized).
    event Initialized(uint8 version);
    /// @notice The ledger's `additionalInfo` changed.
    event LedgerInfoUpdated(address indexed user, string additionalInfo);
    /// @notice The recommended version of a service type changed.
    event RecommendedServiceUpdated(string serviceType, string version, address serviceAddress);
    /// @notice A serving contract was registered under `serviceName` (its full name).
    event ServiceRegistered(address indexed serviceAddress, string serviceName);
    /// @notice A ledger was created with `amount`.
    event LedgerCreated(address indexed user, uint256 amount);
    /// @notice `amount` was deposited into an existing ledger.
    event FundDeposited(address indexed user, uint256 amount, uint256 availableBalance);
    /// @notice `amount` was paid back to the customer.
    event FundRefunded(address indexed user, uint256 amount, uint256 availableBalance);
    /// @notice `amount` was moved to the sub-account with `provider` on `service`; `cancelledRefund` of it
    ///         came from cancelling pending refunds, the rest from the available balance.
    event FundTransferred(
        address indexed user, address indexed provider, address indexed service, uint256 amount, uint256 cancelledRefund
    );
    /// @notice Matured refunds worth `amount` came back from `service` into the available balance.
    event FundRetrieved(address indexed user, address indexed service, uint256 amount);
    /// @notice The ledger was deleted and `refunded` paid to the customer.
    event LedgerDeleted(address indexed user, uint256 refunded);

    // ------------------------------------------------------------------ configuration

    /// @notice Minimum deposit that creates a ledger (neuron). Default 3 0G (the 0G client assumes it).
    uint256 public immutable MIN_ACCOUNT_BALANCE;
    /// @notice Minimum amount of one `transferFund` (neuron).
    uint256 public immutable MIN_TRANSFER_AMOUNT;
    /// @notice Maximum sub-accounts a customer may open on one service.
    uint256 public immutable MAX_PROVIDERS_PER_USER_PER_SERVICE;
    /// @notice Maximum providers in one `retrieveFund` call.
    uint256 public constant MAX_PROVIDERS_PER_BATCH = 50;
    /// @notice Maximum number of registered services.
    uint256 public constant MAX_SERVICES = 16;
    /// @notice Maximum length of `additionalInfo` (bytes).
    uint256 public constant MAX_ADDITIONAL_INFO_LENGTH = 4096;
    /// @notice Upper bound for `MAX_PROVIDERS_PER_USER_PER_SERVICE` (bounds `deleteLedger`'s loop).
    uint256 public constant MAX_PROVIDERS_LIMIT = 256;
    /// @notice Maximum page size of `getAllLedgers`.
    uint256 public constant MAX_PAGE_SIZE = 500;

    // ------------------------------------------------------------------ state

    mapping(address user => LedgerData) private _ledgers;
    address[] private _users;
    /// @dev 1-based position in `_users`; 0 = no ledger.
    mapping(address user => uint256) private _userPos;

    mapping(address service => ServiceData) private _serviceData;
    address[] private _serviceList;
    mapping(bytes32 fullNameHash => address) private _serviceByName;
    mapping(bytes32 typeHash => address) private _recommended;

    mapping(address user => mapping(address service => address[])) private _providers;
    /// @dev 1-based position in `_providers[user][service]`.
    mapping(address user => mapping(address service => mapping(address provider => uint256))) private _providerPos;

    /// @param owner_ Administrator: registers services and sets recommendations.
    /// @param minAccountBalance Minimum deposit that creates a ledger (neuron; 0G uses 3 0G).
    /// @param minTransferAmount Minimum `transferFund` amount (neuron; must be > 0).
    /// @param maxProvidersPerUserPerService Sub-accounts per customer and service (1..256).
    constructor(
        address owner_,
        uint256 minAccountBalance,
        uint256 minTransferAmount,
        uint256 maxProvidersPerUserPerService
    ) Ownable(owner_) {
        if (minTransferAmount == 0) {
            revert InvalidConfig("minTransferAmount", minTransferAmount);
        }
        if (maxProvidersPerUserPerService == 0 || maxProvidersPerUserPerService > MAX_PROVIDERS_LIMIT) {
            revert InvalidConfig("maxProvidersPerUserPerService", maxProvidersPerUserPerService);
        }
        MIN_ACCOUNT_BALANCE = minAccountBalance;
        MIN_TRANSFER_AMOUNT = minTransferAmount;
        MAX_PROVIDERS_PER_USER_PER_SERVICE = maxProvidersPerUserPerService;
        emit Initialized(1);
    }

    // ------------------------------------------------------------------ compatibility shims

    /// @notice Always reverts `AlreadyInitialized`: 0G's contracts sit behind a proxy and are
    ///         initialised after deployment; this one is configured by its constructor.
    function initialize(address) external pure {
        revert AlreadyInitialized();
    }

    /// @notice Always true (see `initialize`).
    function initialized() external pure returns (bool) {
        return true;
    }

    /// @notice Accepts value only from registered serving contracts (refunds coming back).
    receive() external payable {
        if (_serviceData[msg.sender].registeredAt == 0) revert DirectDepositsDisabled();
    }

    // ------------------------------------------------------------------ customer: ledger

    /// @notice Creates the caller's ledger with `msg.value` (at least `MIN_ACCOUNT_BALANCE`).
    /// @return availableBalance The new available balance.
    /// @return totalBalance The new total balance.
    function addLedger(string calldata additionalInfo) external payable returns (uint256, uint256) {
        if (_userPos[msg.sender] != 0) revert LedgerExists(msg.sender);
        _checkInfo(additionalInfo);
        _createLedger(msg.sender, msg.value);
        _ledgers[msg.sender].additionalInfo = additionalInfo;
        return (msg.value, msg.value);
    }

    /// @notice Deposits `msg.value` into the caller's ledger, creating it if needed.
    function depositFund() external payable {
        _deposit(msg.sender);
    }

    /// @notice Deposits `msg.value` into `recipient`'s ledger, creating it if needed.
    function depositFundFor(address recipient) external payable {
        if (recipient == address(0)) revert ZeroAddressNotAllowed();
        _deposit(recipient);
    }

    /// @notice Pays `amount` of the caller's available balance back to the caller.
    function refund(uint256 amount) external nonReentrant {
        LedgerData storage l = _existing(msg.sender);
        if (amount == 0) revert ZeroAmountNotAllowed();
        uint256 available = l.availableBalance;
        if (available < amount) revert InsufficientAvailableBalance(available, amount);
        unchecked {
            l.availableBalance = available - amount;
            // totalBalance >= availableBalance always.
            l.totalBalance -= amount;
        }
        emit FundRefunded(msg.sender, amount, available - amount);
        _send(msg.sender, amount);
    }

    /// @notice Replaces the caller's ledger `additionalInfo`.
    function updateAdditionalInfo(string calldata additionalInfo) external {
        LedgerData storage l = _existing(msg.sender);
        _checkInfo(additionalInfo);
        l.additionalInfo = additionalInfo;
        emit LedgerInfoUpdated(msg.sender, additionalInfo);
    }

    /// @notice Moves `amount` into the caller's sub-account with `provider` on the service named
    ///         `serviceName` (e.g. `inference-v1.0`). Pending refunds of that sub-account are cancelled
    ///         first (they are already there); only the rest comes out of the available balance.
    function transferFund(address provider, string calldata serviceName, uint256 amount) external nonReentrant {
        LedgerData storage l = _existing(msg.sender);
        if (amount == 0) revert ZeroAmountNotAllowed();
        if (amount < MIN_TRANSFER_AMOUNT) revert MinimumDepositRequired(amount, MIN_TRANSFER_AMOUNT);
        if (provider == address(0)) revert ZeroAddressNotAllowed();
        address service = _serviceNamed(serviceName);
        IServing serving = IServing(service);

        if (serving.accountExists(msg.sender, provider)) {
            uint256 pending = serving.getPendingRefund(msg.sender, provider);
            uint256 cancel = pending < amount ? pending : amount;
            uint256 transferAmount;
            unchecked {
                transferAmount = amount - cancel;
            }
            uint256 available = l.availableBalance;
            if (available < transferAmount) revert InsufficientAvailableBalance(available, transferAmount);
            unchecked {
                l.availableBalance = available - transferAmount;
            }
            emit FundTransferred(msg.sender, provider, service, amount, cancel);
            serving.depositFund{value: transferAmount}(msg.sender, provider, cancel);
        } else {
            uint256 available = l.availableBalance;
            if (available < amount) revert InsufficientAvailableBalance(available, amount);
            address[] storage list = _providers[msg.sender][service];
            if (_providerPos[msg.sender][service][provider] == 0) {
                uint256 current = list.length;
                if (current >= MAX_PROVIDERS_PER_USER_PER_SERVICE) {
                    revert TooManyProvidersForService(current, MAX_PROVIDERS_PER_USER_PER_SERVICE);
                }
                list.push(provider);
                _providerPos[msg.sender][service][provider] = current + 1;
            }
            unchecked {
                l.availableBalance = available - amount;
            }
            emit FundTransferred(msg.sender, provider, service, amount, 0);
            serving.addAccount{value: amount}(msg.sender, provider, l.additionalInfo);
        }
    }

    /// @notice For each provider: collects matured refunds of the caller's sub-account on
    ///         `serviceName` into the available balance, then requests a refund of everything else
    ///         (it matures after the service's lock time; call again then).
    function retrieveFund(address[] calldata providers, string calldata serviceName) external nonReentrant {
        LedgerData storage l = _existing(msg.sender);
        uint256 n = providers.length;
        if (n > MAX_PROVIDERS_PER_BATCH) revert TooManyProviders(n, MAX_PROVIDERS_PER_BATCH);
        address service = _serviceNamed(serviceName);
        IServing serving = IServing(service);
        uint256 before = address(this).balance;
        uint256 total;
        for (uint256 i; i < n; ++i) {
            (uint256 amount,,) = serving.processRefund(msg.sender, providers[i]);
            total += amount;
            serving.requestRefundAll(msg.sender, providers[i]);
        }
        // The serving contract sends the refunds with the calls above; trust the value, not the return.
        if (address(this).balance - before != total) revert CallFailed();
        l.availableBalance += total;
        emit FundRetrieved(msg.sender, service, total);
    }

    /// @notice Deletes the caller's ledger and its (empty) sub-accounts and pays out the available
    ///         balance. Funds still in sub-accounts must be retrieved first.
    function deleteLedger() external nonReentrant {
        LedgerData storage l = _existing(msg.sender);
        uint256 available = l.availableBalance;
        uint256 total = l.totalBalance;
        if (total != available) revert MustWithdrawAllFundsFirst(total - available);

        uint256 services = _serviceList.length;
        for (uint256 s; s < services; ++s) {
            address service = _serviceList[s];
            address[] storage list = _providers[msg.sender][service];
            uint256 n = list.length;
            for (uint256 i; i < n; ++i) {
                address provider = list[i];
                delete _providerPos[msg.sender][service][provider];
                if (IServing(service).accountExists(msg.sender, provider)) {
                    IServing(service).deleteAccount(msg.sender, provider);
                }
            }
            delete _providers[msg.sender][service];
        }

        delete _ledgers[msg.sender];
        _removeUser(msg.sender);
        emit LedgerDeleted(msg.sender, available);
        if (available != 0) _send(msg.sender, available);
    }

    // ------------------------------------------------------------------ services

    /// @notice Serving contracts only: records that `amount` of `user`'s sub-account funds were paid
    ///         to a provider, so `totalBalance` stays equal to available + sub-accounts.
    function spendFund(address user, uint256 amount) external {
        if (_serviceData[msg.sender].registeredAt == 0) revert CallerNotRegisteredService(msg.sender);
        // No separate existence check (it would cost a cold SLOAD per settled customer): a missing
        // ledger has totalBalance 0, so any positive spend reverts InsufficientBalance below.
        LedgerData storage l = _ledgers[user];
        uint256 total = l.totalBalance;
        if (total < amount) revert InsufficientBalance(user);
        unchecked {
            l.totalBalance = total - amount;
        }
        emit FundSpent(user, msg.sender, amount);
    }

    // ------------------------------------------------------------------ owner: registry

    /// @notice Registers a serving contract as `serviceType-version` (e.g. `inference` + `v1.0` →
    ///         `inference-v1.0`). The first version of a type becomes its recommended version.
    function registerService(
        string calldata serviceType,
        string calldata version,
        address serviceAddress,
        string calldata description
    ) external onlyOwner {
        if (bytes(serviceType).length == 0) revert ServiceTypeRequired();
        if (bytes(version).length == 0) revert VersionRequired();
        if (serviceAddress == address(0)) revert ZeroAddressNotAllowed();
        if (serviceAddress.code.length == 0) revert InvalidServiceAddress(serviceAddress);
        if (_serviceData[serviceAddress].registeredAt != 0) revert ServiceAlreadyRegistered(serviceAddress);
        if (_serviceList.length >= MAX_SERVICES) revert ServiceRegistryLimitReached(MAX_SERVICES);
        _checkInfo(description);
        if (!_implementsServing(serviceAddress)) revert ServiceMustImplementIServing(serviceAddress);

        string memory fullName = string.concat(serviceType, "-", version);
        bytes32 nameHash = keccak256(bytes(fullName));
        if (_serviceByName[nameHash] != address(0)) revert ServiceNameExists(fullName);

        _serviceData[serviceAddress] = ServiceData({
            serviceType: serviceType,
            version: version,
            fullName: fullName,
            description: description,
            registeredAt: block.timestamp
        });
        _serviceList.push(serviceAddress);
        _serviceByName[nameHash] = serviceAddress;
        emit ServiceRegistered(serviceAddress, fullName);

        bytes32 typeHash = keccak256(bytes(serviceType));
        if (_recommended[typeHash] == address(0)) {
            _recommended[typeHash] = serviceAddress;
            emit RecommendedServiceUpdated(serviceType, version, serviceAddress);
        }
    }

    /// @notice Makes `serviceType-version` the recommended version of `serviceType`.
    function setRecommendedService(string calldata serviceType, string calldata version) external onlyOwner {
        string memory fullName = string.concat(serviceType, "-", version);
        address service = _serviceByName[keccak256(bytes(fullName))];
        if (service == address(0)) revert InvalidServiceType(fullName);
        _recommended[keccak256(bytes(serviceType))] = service;
        emit RecommendedServiceUpdated(serviceType, version, service);
    }

    // ------------------------------------------------------------------ views

    /// @notice The ledger of `user`; reverts `LedgerNotExists` if there is none.
    function getLedger(address user) external view returns (Ledger memory) {
        LedgerData storage l = _existing(user);
        return Ledger(user, l.availableBalance, l.totalBalance, l.additionalInfo);
    }

    /// @notice A page of all ledgers, and the total count.
    function getAllLedgers(uint256 offset, uint256 limit)
        external
        view
        returns (Ledger[] memory ledgers, uint256 total)
    {
        if (limit > MAX_PAGE_SIZE) {
            revert LimitTooLarge(limit, MAX_PAGE_SIZE);
        }
        total = _users.length;
        if (offset >= total) return (new Ledger[](0), total);
        uint256 end = total - offset < limit ? total : offset + limit;
        ledgers = new Ledger[](end - offset);
        for (uint256 i = offset; i < end; ++i) {
            address user = _users[i];
            LedgerData storage l = _ledgers[user];
            ledgers[i - offset] = Ledger(user, l.availableBalance, l.totalBalance, l.additionalInfo);
        }
    }

    /// @notice The providers with which `user` has a sub-account on service `serviceName`.
    function getLedgerProviders(address user, string calldata serviceName) external view returns (address[] memory) {
        return _providers[user][_serviceNamed(serviceName)];
    }

    /// @notice The registration of the serving contract at `serviceAddress`.
    function getServiceInfo(address serviceAddress) public view returns (ServiceInfo memory) {
        ServiceData storage d = _serviceData[serviceAddress];
        if (d.registeredAt == 0) revert ServiceNotFound(serviceAddress);
        return ServiceInfo({
            serviceAddress: serviceAddress,
            serviceContract: serviceAddress,
            serviceType: d.serviceType,
            version: d.version,
            fullName: d.fullName,
            description: d.description,
            isRecommended: _recommended[keccak256(bytes(d.serviceType))] == serviceAddress,
            registeredAt: d.registeredAt
        });
    }

    /// @notice The address registered under `serviceName`; reverts `InvalidServiceType` if none.
    function getServiceAddressByName(string calldata serviceName) external view returns (address) {
        return _serviceNamed(serviceName);
    }

    /// @notice Every registered service.
    function getAllActiveServices() external view returns (ServiceInfo[] memory services) {
        uint256 n = _serviceList.length;
        services = new ServiceInfo[](n);
        for (uint256 i; i < n; ++i) {
            services[i] = getServiceInfo(_serviceList[i]);
        }
    }

    /// @notice Every registered version of `serviceType`.
    function getAllVersions(string calldata serviceType)
        external
        view
        returns (string[] memory versions, address[] memory addresses, bool[] memory isRecommendedFlags)
    {
        bytes32 typeHash = keccak256(bytes(serviceType));
        uint256 n = _serviceList.length;
        uint256 count;
        for (uint256 i; i < n; ++i) {
            if (keccak256(bytes(_serviceData[_serviceList[i]].serviceType)) == typeHash) ++count;
        }
        versions = new string[](count);
        addresses = new address[](count);
        isRecommendedFlags = new bool[](count);
        address recommended = _recommended[typeHash];
        uint256 j;
        for (uint256 i; i < n; ++i) {
            address service = _serviceList[i];
            if (keccak256(bytes(_serviceData[service].serviceType)) != typeHash) continue;
            versions[j] = _serviceData[service].version;
            addresses[j] = service;
            isRecommendedFlags[j] = service == recommended;
            ++j;
        }
    }

    /// @notice The recommended version of `serviceType`; reverts `NoRecommendedService` if none.
    function getRecommendedService(string calldata serviceType)
        external
        view
        returns (string memory version, address serviceAddress)
    {
        serviceAddress = _recommended[keccak256(bytes(serviceType))];
        if (serviceAddress == address(0)) revert NoRecommendedService(serviceType);
        version = _serviceData[serviceAddress].version;
    }

    /// @notice Whether `serviceType-version` is the recommended version of its type.
    function isRecommendedVersion(string calldata serviceType, string calldata version) external view returns (bool) {
        address service = _serviceByName[keccak256(bytes(string.concat(serviceType, "-", version)))];
        return service != address(0) && _recommended[keccak256(bytes(serviceType))] == service;
    }

    // ------------------------------------------------------------------ internals

    function _deposit(address user) private {
        if (_userPos[user] == 0) {
            _createLedger(user, msg.value);
            return;
        }
        if (msg.value == 0) revert ZeroAmountNotAllowed();
        LedgerData storage l = _ledgers[user];
        uint256 available = l.availableBalance + msg.value;
        l.availableBalance = available;
        l.totalBalance += msg.value;
        emit FundDeposited(user, msg.value, available);
    }

    function _createLedger(address user, uint256 amount) private {
        if (amount < MIN_ACCOUNT_BALANCE || amount == 0) {
            revert MinimumDepositRequired(amount, MIN_ACCOUNT_BALANCE == 0 ? 1 : MIN_ACCOUNT_BALANCE);
        }
        LedgerData storage l = _ledgers[user];
        l.availableBalance = amount;
        l.totalBalance = amount;
        _users.push(user);
        _userPos[user] = _users.length;
        emit LedgerCreated(user, amount);
    }

    function _removeUser(address user) private {
        uint256 pos = _userPos[user];
        uint256 last = _users.length;
        if (pos != last) {
            address moved = _users[last - 1];
            _users[pos - 1] = moved;
            _userPos[moved] = pos;
        }
        _users.pop();
        delete _userPos[user];
    }

    function _existing(address user) private view returns (LedgerData storage l) {
        if (_userPos[user] == 0) revert LedgerNotExists(user);
        return _ledgers[user];
    }

    function _serviceNamed(string calldata serviceName) private view returns (address service) {
        service = _serviceByName[keccak256(bytes(serviceName))];
        if (service == address(0)) revert InvalidServiceType(serviceName);
    }

    function _checkInfo(string calldata info) private pure {
        if (bytes(info).length > MAX_ADDITIONAL_INFO_LENGTH) {
            revert AdditionalInfoTooLong(bytes(info).length, MAX_ADDITIONAL_INFO_LENGTH);
        }
    }

    function _implementsServing(address service) private view returns (bool) {
        try IERC165Like(service).supportsInterface(type(IServing).interfaceId) returns (bool ok) {
            if (!ok) return false;
        } catch {
            return false;
        }
        try ILedgerBound(service).ledgerAddress() returns (address ledger) {
            return ledger == address(this);
        } catch {
            return false;
        }
    }

    function _send(address to, uint256 amount) private {
        (bool ok,) = payable(to).call{value: amount}("");
        if (!ok) revert TransferFailed();
    }
}

/// @dev ERC-165 probe used by `registerService`.
interface IERC165Like {
    function supportsInterface(bytes4 interfaceId) external view returns (bool);
}

/// @dev The serving contracts expose the ledger they trust.
interface ILedgerBound {
    function ledgerAddress() external view returns (address);
}
