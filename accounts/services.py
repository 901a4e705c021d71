"""Every write to accounts, balances and the ledger goes through these functions."""
import uuid
from collections import defaultdict
from decimal import Decimal, localcontext
from typing import Iterable, Sequence

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts import selectors
from accounts.models import Account, Asset, Balance, CashMovement, LedgerEntry, LedgerTransaction, SystemAccount

Leg = tuple[int, str, Decimal]  # account id, asset code, signed amount


class InsufficientBalance(ValueError):
    """Raised when a debit would exceed the available balance; the message is BitMEX's."""

    def __init__(self, detail: str = ""):
        super().__init__("Account has insufficient Available Balance" + (f": {detail}" if detail else ""))


class RequestIdReused(ValueError):
    """A request id sent again with another request (another account, kind, asset or amount)."""

    def __init__(self):
        super().__init__("requestID was already used for a different request")


DEFAULT_ASSETS = [
    # code, name, decimal places of the smallest unit, BitMEX wallet currency id
    ("XBT", "Bitcoin", 8, "XBt"),
    ("USDT", "Tether USD", 6, "USDt"),
    ("USDC", "USD Coin", 6, "USDc"),
    ("ETH", "Ether", 9, "Gwei"),
]


def create_default_assets(asset_model=Asset) -> None:
    for code, name, scale, currency in DEFAULT_ASSETS:
        asset_model.objects.update_or_create(code=code, defaults={"name": name, "scale": scale, "currency": currency})


def system_account(name: SystemAccount | str) -> Account:
    account, _ = Account.objects.get_or_create(user=None, kind=Account.Kind.SYSTEM, name=str(name))
    return account


def main_account(user) -> Account:
    account, _ = Account.objects.get_or_create(user=user, kind=Account.Kind.MAIN, name="")
    return account


def lock_balances(keys: Iterable[tuple[int, str]]) -> dict[tuple[int, str], Balance]:
    """Creates missing balance rows, then locks them in primary-key order (no deadlocks)."""
    keys = sorted(set(keys))
    Balance.objects.bulk_create([Balance(account_id=a, asset_id=s) for a, s in keys], ignore_conflicts=True)
    wanted = Q()
    for account_id, asset_id in keys:
        wanted |= Q(account_id=account_id, asset_id=asset_id)
    locked = Balance.objects.select_for_update(no_key=True).filter(wanted).order_by("pk")
    return {(b.account_id, b.asset_id): b for b in locked}


def check_legs(legs: Sequence[Leg]) -> None:
    """Amounts are exact in their asset's smallest unit and every asset nets to zero."""
    if not legs:
        raise ValueError("a ledger transaction needs entries")
    units = selectors.asset_units()
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for _, asset, amount in legs:
        if asset not in units:
            raise ValueError(f"unknown asset {asset}")
        if amount != amount.quantize(units[asset]):
            raise ValueError(f"{amount} {asset} is finer than the asset's unit {units[asset]}")
        totals[asset] += amount
    unbalanced = {a: t for a, t in totals.items() if t}
    if unbalanced:
        raise ValueError(f"ledger transaction does not balance: {unbalanced}")


@transaction.atomic
def post_transaction(*, kind: str, legs: Sequence[Leg], reference: str = "",
                     balances: dict[tuple[int, str], Balance] | None = None) -> LedgerTransaction:
    """Writes one balanced transaction and moves the balances with it.

    `balances` may hold rows the caller already locked; the others are locked here."""
    check_legs(legs)
    missing = {(a, s) for a, s, _ in legs} - set(balances or {})
    locked = dict(balances or {})
    if missing:
        locked.update(lock_balances(missing))
    tx = LedgerTransaction.objects.create()
    LedgerEntry.objects.bulk_create(
        LedgerEntry(transaction=tx, account_id=a, asset_id=s, amount=amount, kind=kind, reference=reference)
        for a, s, amount in legs)
    changed = {}
    for account_id, asset_id, amount in legs:
        balance = locked[(account_id, asset_id)]
        balance.amount += amount
        changed[balance.pk] = balance
    Balance.objects.bulk_update(changed.values(), ["amount"])
    return tx


def _asset(asset: Asset | str) -> Asset:
    return asset if isinstance(asset, Asset) else Asset.objects.get(pk=asset)


def _decimal(amount) -> Decimal:
    try:
        return Decimal(str(amount))
    except ArithmeticError:
        raise ValueError(f"amount must be a number, not {amount!r}") from None


# Balances add up in Decimal's default context of 28 significant digits: an amount with more, counted
# to its asset's smallest unit, could not be added exactly.
AMOUNT_DIGITS = 28


def check_digits(number: Decimal, name: str, *, max_digits: int, decimal_places: int) -> None:
    """Refuses a finite number that does not fit max_digits digits with decimal_places of them after
    the point: PostgreSQL would silently round the extra places away (past a "positive" check)."""
    if number.adjusted() >= max_digits - decimal_places:
        raise ValueError(f"{name} is too large")
    with localcontext(prec=max_digits):  # room for any number that passed the check above
        if number != number.quantize(Decimal(1).scaleb(-decimal_places)):
            raise ValueError(f"{name} has at most {decimal_places} decimal places")


def _positive(amount: Decimal, asset: Asset) -> Decimal:
    amount = _decimal(amount)
    if not amount.is_finite() or amount <= 0:
        raise ValueError("amount must be positive")
    check_digits(amount, "amount", max_digits=AMOUNT_DIGITS, decimal_places=asset.scale)
    return amount


def _move_cash(kind: str, account: Account, asset: Asset | str, amount, request_id: uuid.UUID | None,
               check_available: bool) -> CashMovement:
    """A deposit (credit) or withdrawal (debit) against the outside world. A repeated request_id
    returns the first movement if it asked for the same; anything else with it is refused."""
    asset = _asset(asset)
    amount = _positive(amount, asset)
    if request_id and (done := CashMovement.objects.filter(request_id=request_id).first()):
        return _same_request(done, kind, account, asset, amount)
    request_id = request_id or uuid.uuid4()
    try:
        with transaction.atomic():  # a savepoint: losing the race below undoes only this movement
            external = system_account(SystemAccount.EXTERNAL)
            balances = lock_balances([(account.pk, asset.code), (external.pk, asset.code)])
            if CashMovement.objects.filter(request_id=request_id).exists():
                # its first try committed while this one waited for the lock: answered below, not
                # refused for want of the money that try already took
                raise IntegrityError("request_id already used")
            if check_available:
                _debit_available(balances, account, asset, amount)
            signed = amount if kind == CashMovement.Kind.DEPOSIT else -amount
            tx = post_transaction(kind=kind, reference=f"cash:{request_id}", balances=balances,
                                  legs=[(external.pk, asset.code, -signed), (account.pk, asset.code, signed)])
            return CashMovement.objects.create(request_id=request_id, kind=kind, account=account, asset=asset,
                                               amount=amount, transaction=tx)
    except IntegrityError:
        # a request with this request_id committed while this one was written (the unique index made
        # the insert wait for it): it is visible now, and this one is its retry or is refused
        done = CashMovement.objects.filter(request_id=request_id).first()
        if done is None:
            raise
        return _same_request(done, kind, account, asset, amount)


def _same_request(done: CashMovement, kind: str, account: Account, asset: Asset, amount: Decimal) -> CashMovement:
    if (done.account_id, done.kind, done.asset_id, done.amount) != (account.pk, kind, asset.code, amount):
        raise RequestIdReused()
    return done


@transaction.atomic
def deposit(*, account: Account, asset: Asset | str, amount: Decimal,
            request_id: uuid.UUID | None = None) -> CashMovement:
    """Credits the account from the outside world. A repeated request_id returns the first deposit
    (the same account, asset and amount; anything else is refused)."""
    return _move_cash(CashMovement.Kind.DEPOSIT, account, asset, amount, request_id, check_available=False)


def faucet_deposit(*, account: Account, asset: Asset | str, amount: Decimal | None = None,
                   request_id: uuid.UUID | None = None) -> CashMovement:
    """Demo money: at most the faucet's limit per request."""
    asset = _asset(asset)
    limit = Decimal(settings.FAUCET_LIMITS.get(asset.code, 0))
    if not limit:
        raise ValueError(f"the faucet does not give {asset.code}")
    amount = limit if amount is None else _positive(amount, asset)  # a NaN cannot be compared
    if amount > limit:
        raise ValueError(f"the faucet gives at most {limit} {asset.code} per request")
    return deposit(account=account, asset=asset, amount=amount, request_id=request_id)


def _debit_available(balances: dict[tuple[int, str], Balance], account: Account, asset: Asset,
                     amount: Decimal) -> None:
    balance = balances[(account.pk, asset.code)]
    available = selectors.available_balance(balance)
    if amount > available:
        raise InsufficientBalance(f"{amount} {asset.code} requested, {available} available")


@transaction.atomic
def withdraw(*, account: Account, asset: Asset | str, amount: Decimal,
             request_id: uuid.UUID | None = None) -> CashMovement:
    """Pays out to the outside world; never more than the available balance, even under races."""
    return _move_cash(CashMovement.Kind.WITHDRAWAL, account, asset, amount, request_id, check_available=True)


@transaction.atomic
def transfer(*, source: Account, target: Account, asset: Asset | str, amount: Decimal,
             reference: str = "") -> LedgerTransaction:
    """Moves available funds between two accounts of the same user (main and copy sub-accounts)."""
    asset = _asset(asset)
    amount = _positive(amount, asset)
    if source.pk == target.pk:
        raise ValueError("source and target are the same account")
    if source.user_id != target.user_id or source.user_id is None:
        raise ValueError("transfers move funds between accounts of one user")
    balances = lock_balances([(source.pk, asset.code), (target.pk, asset.code)])
    _debit_available(balances, source, asset, amount)
    return post_transaction(kind=LedgerEntry.Kind.TRANSFER, balances=balances,
                            reference=reference or f"transfer:{source.pk}->{target.pk}",
                            legs=[(source.pk, asset.code, -amount), (target.pk, asset.code, amount)])
