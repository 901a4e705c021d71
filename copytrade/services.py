"""Every write of copy trading: leading, following, the fan-out of a leader's fills, profit share."""
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, Balance, LedgerEntry
from accounts.selectors import asset_named
from accounts.services import check_digits, main_account, post_transaction, transfer
from copytrade import calculations, hooks, selectors
from copytrade.models import (
    CopiedExecution, CopiedOrder, Follow, Leader, LeaderDay, LeaderStats, ProfitShareSettlement,
)
from matching import persistence, streams
from matching import selectors as trading_selectors
from matching.contracts import ContractTerms
from matching.models import OPEN_STATUSES, Execution, Instrument, Order, OrdType, Position, Side, TimeInForce
from matching.services import BulkOrder, cancel_orders, lock_accounts, submit_orders_bulk

log = logging.getLogger(__name__)
MAX_PROFIT_SHARE = Decimal("0.30")


class CopyRejected(ValueError):
    """A copy-trading request the platform refuses; the message is for the user."""


def _fits_column(number: Decimal, name: str, model, field: str) -> None:
    """The number is stored exactly in the model field's column, or refused (never rounded)."""
    column = model._meta.get_field(field)
    try:
        check_digits(number, name, max_digits=column.max_digits, decimal_places=column.decimal_places)
    except ValueError as error:
        raise CopyRejected(str(error)) from None


# ---------- leaders ----------

def _rate(value) -> Decimal:
    try:
        rate = Decimal(str(value))
    except ArithmeticError:
        raise CopyRejected("profit share rate must be a number") from None
    if not rate.is_finite() or not Decimal(0) <= rate <= MAX_PROFIT_SHARE:
        raise CopyRejected("profit share rate must be between 0 and 0.30")
    _fits_column(rate, "profit share rate", Leader, "profit_share_rate")
    return rate


def _text(value, name: str) -> str:
    """A text as sent: a list or null is refused, not stored as "['...']" or "None"."""
    if not isinstance(value, str):
        raise CopyRejected(f"{name} must be a string")
    return value


def _tags(tags) -> list[str]:
    if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
        raise CopyRejected("tags are a list of words")
    return [t.strip()[:30] for t in tags if t.strip()][:10]


def _cap(value) -> int:
    # isdigit() alone also passes "²", which int() refuses
    if isinstance(value, bool) or not isinstance(value, int) and not (
            isinstance(value, str) and value.isascii() and value.isdigit()):
        raise CopyRejected("the follower cap is a whole number between 1 and 10,000")
    if not 1 <= int(value) <= 10_000:
        raise CopyRejected("the follower cap is between 1 and 10,000")
    return int(value)


def _flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise CopyRejected(f"{name} must be true or false")
    return value


def apply_to_lead(*, user, display_name: str, description: str = "", tags=(), profit_share_rate="0.10",
                  is_public: bool = True, follower_cap: int = 10_000) -> Leader:
    """Makes the user a leader: the fills of their main account are copied from now on. One leader
    per user and per name (whatever its case), held by unique indexes under concurrent applications."""
    display_name = _text(display_name, "name").strip()
    if not 3 <= len(display_name) <= 60:
        raise CopyRejected("a leader's name has 3 to 60 characters")
    fields = {"description": _text(description, "description"), "tags": _tags(tags),
              "profit_share_rate": _rate(profit_share_rate), "is_public": _flag(is_public, "public"),
              "follower_cap": _cap(follower_cap)}
    if Leader.objects.filter(user=user).exists():
        raise CopyRejected("you already lead")
    if Leader.objects.filter(display_name__iexact=display_name).exists():
        raise CopyRejected("that name is taken")
    account = main_account(user)
    # the fills from before leading are never copied: the catch-up starts above them
    last_execution = Execution.objects.filter(account=account).order_by("-pk").values_list("pk", flat=True).first()
    try:
        with transaction.atomic():
            leader = Leader.objects.create(user=user, account=account, display_name=display_name,
                                           copied_through=last_execution or 0, **fields)
            LeaderStats.objects.create(leader=leader)
    except IntegrityError:
        # a concurrent application committed first (the unique index made this insert wait for it)
        if Leader.objects.filter(user=user).exists():
            raise CopyRejected("you already lead") from None
        raise CopyRejected("that name is taken") from None
    hooks.forget_leaders()
    return leader


@transaction.atomic
def update_leader(*, leader: Leader, profit_share_rate=None, description: str | None = None, tags=None,
                  is_public: bool | None = None, follower_cap: int | None = None) -> Leader:
    """A raised profit-share rate applies to new followers only; a lowered one to everyone."""
    leader = Leader.objects.select_for_update().get(pk=leader.pk)
    if profit_share_rate is not None:
        rate = _rate(profit_share_rate)
        if rate < leader.profit_share_rate:
            leader.follows.exclude(status=Follow.Status.STOPPED).filter(profit_share_rate__gt=rate).update(
                profit_share_rate=rate)
        leader.profit_share_rate = rate
    if description is not None:
        leader.description = _text(description, "description")
    if tags is not None:
        leader.tags = _tags(tags)
    if is_public is not None:
        leader.is_public = _flag(is_public, "public")
    if follower_cap is not None:
        leader.follower_cap = _cap(follower_cap)
    leader.save()
    return leader


# ---------- following ----------

FOLLOW_SETTINGS = {"sizing", "ratio", "fixed_notional", "max_order_notional", "max_position_notional", "leverage",
                   "symbols", "slippage", "take_profit", "stop_loss", "equity_stop"}


def _check_settings(values: dict) -> dict:
    unknown = set(values) - FOLLOW_SETTINGS
    if unknown:
        raise CopyRejected(f"unknown setting(s): {', '.join(sorted(unknown))}")
    clean = {}
    for name, value in values.items():
        if value is None or value == "":
            clean[name] = None if name not in ("symbols",) else []
            continue
        if name == "sizing":
            if value not in Follow.Sizing.values:
                raise CopyRejected(f"sizing is one of {', '.join(Follow.Sizing.values)}")
            clean[name] = value
        elif name == "symbols":
            symbols = [value] if isinstance(value, str) else value
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                raise CopyRejected("symbols is a list of symbols")
            unknown_symbols = set(symbols) - set(Instrument.objects.values_list("symbol", flat=True))
            if unknown_symbols:
                raise CopyRejected(f"unknown symbol(s): {', '.join(sorted(unknown_symbols))}")
            clean[name] = symbols
        else:
            try:
                number = Decimal(str(value))
            except ArithmeticError:
                raise CopyRejected(f"{name} must be a number") from None
            if not number.is_finite() or number < 0:
                raise CopyRejected(f"{name} must be a positive number")
            limits = {"slippage": Decimal("0.10"), "take_profit": Decimal(10), "stop_loss": Decimal(1),
                      "leverage": Decimal(100)}
            if name in limits and number > limits[name]:
                raise CopyRejected(f"{name} is at most {limits[name]}")
            if name in ("ratio", "leverage", "fixed_notional") and number == 0:
                raise CopyRejected(f"{name} must be positive")
            _fits_column(number, name, Follow, name)
            clean[name] = number
    for required in ("ratio", "fixed_notional", "slippage", "sizing"):
        if required in clean and clean[required] is None:
            del clean[required]  # keep the default
    return clean


def follow(*, user, leader: Leader, amount, asset: str = "USDT", invite_code: str = "", **settings) -> Follow:
    """Moves `amount` from the main account into a new copy sub-account and starts copying the
    leader's new trades (open_leader_positions also opens the ones the leader holds now)."""
    if leader.user_id == user.pk:
        raise CopyRejected("you cannot follow yourself")
    if leader.status != Leader.Status.ACTIVE:
        raise CopyRejected("this leader no longer leads")
    if not leader.is_public and invite_code != leader.invite_code:
        raise CopyRejected("this leader is private: an invite code is needed")
    clean = _check_settings(settings)
    asset_row = asset_named(asset)
    if asset_row is None:
        raise CopyRejected(f"unknown asset {asset}")
    try:
        with transaction.atomic():
            locked = Leader.objects.select_for_update().get(pk=leader.pk)  # the follower cap under races
            live = locked.follows.exclude(status=Follow.Status.STOPPED)
            if live.filter(follower=user).exists():
                raise CopyRejected("you already follow this leader")
            if live.count() >= locked.follower_cap:
                raise CopyRejected("this leader has reached the follower cap")
            account = Account.objects.create(user=user, kind=Account.Kind.COPY,
                                             name=f"leader:{leader.pk}:{timezone.now().timestamp():.6f}")
            transfer(source=main_account(user), target=account, asset=asset_row, amount=amount,
                     reference=f"follow:{leader.pk}")
            follow = Follow.objects.create(follower=user, leader=locked, account=account, asset=asset_row,
                                           allocated=Decimal(str(amount)),
                                           profit_share_rate=locked.profit_share_rate, **clean)
    except IntegrityError:
        raise CopyRejected("you already follow this leader") from None
    return follow


@dataclass(frozen=True)
class OpenedCopy:
    """What one of the leader's open positions became for a new copy: a market order, or the reason
    there is none."""
    symbol: str
    side: str
    qty: int  # the copy order's size; 0 when refused
    order_pk: int | None = None
    reason: str = ""  # why no order was placed


def open_leader_positions(*, follow: Follow) -> list[OpenedCopy]:
    """Opens, at market, the follower's share of each position the leader holds now (at today's
    prices, not the leader's entries); returns each position's outcome, refusals with their reason."""
    leader = follow.leader
    outcomes = []
    positions = Position.objects.select_related("instrument", "instrument__settle_asset").filter(
        account_id=leader.account_id, instrument__settle_asset_id=follow.asset_id).exclude(current_qty=0)
    for position in positions.order_by("instrument__symbol"):
        instrument = position.instrument
        side = Side.BUY if position.current_qty > 0 else Side.SELL
        if follow.symbols and instrument.symbol not in follow.symbols:
            outcomes.append(OpenedCopy(instrument.symbol, side, 0, reason="not among the copy's symbols"))
            continue
        price = instrument.last_price or instrument.mark_price
        if price is None:
            outcomes.append(OpenedCopy(instrument.symbol, side, 0, reason="no price to size the copy at"))
            continue
        equities = selectors.equities(account_ids=[leader.account_id, follow.account_id], asset=follow.asset_id)
        (sized,) = [o for o in calculations.follower_quantities(
            calculations.LeaderFill(side=side, qty=abs(position.current_qty), price=price, position_before=0,
                                    equity=equities[leader.account_id]),
            [calculations.FollowTerms(follow_id=follow.pk, mode=follow.sizing, ratio=follow.ratio,
                                      fixed_notional=follow.fixed_notional, equity=equities[follow.account_id],
                                      position=0, max_order_notional=follow.max_order_notional,
                                      max_position_notional=follow.max_position_notional)],
            instrument.lot_size, instrument.terms) if not o.reduce_only]
        if sized.skip_reason:
            outcomes.append(OpenedCopy(instrument.symbol, side, 0, reason=sized.skip_reason))
            continue
        (result,) = submit_orders_bulk(instrument=instrument, orders=[BulkOrder(
            account_id=follow.account_id, side=side, order_qty=sized.qty, ord_type=OrdType.MARKET, price=None,
            time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL, cl_ord_id=f"open-{follow.pk}-{instrument.pk}",
            text="copy of the leader's open position, at market")])
        if result.order_pk is None:
            outcomes.append(OpenedCopy(instrument.symbol, side, 0, reason=result.reason or "refused"))
        else:
            outcomes.append(OpenedCopy(instrument.symbol, side, sized.qty, order_pk=result.order_pk))
    return outcomes


def _settings_update(follow: Follow, settings: dict) -> None:
    for name, value in _check_settings(settings).items():
        setattr(follow, name, value)


@transaction.atomic
def update_follow(*, follow: Follow, **settings) -> Follow:
    follow = Follow.objects.select_for_update().get(pk=follow.pk)
    if follow.status == Follow.Status.STOPPED:
        raise CopyRejected("this copy has stopped")
    _settings_update(follow, settings)
    follow.save()
    return follow


def set_status(*, follow: Follow, status: str) -> Follow:
    """Pause or resume copying; while paused the leader's trades are recorded as skipped."""
    if status not in (Follow.Status.ACTIVE, Follow.Status.PAUSED):
        raise CopyRejected("a copy is paused or resumed; unfollow to stop it")
    updated = Follow.objects.filter(pk=follow.pk).exclude(status=Follow.Status.STOPPED).update(status=status)
    if not updated:
        raise CopyRejected("this copy has stopped")
    follow.refresh_from_db()
    return follow


def unfollow(*, follow: Follow, close_positions: bool = True, reason: str = "unfollowed") -> Follow:
    """Stops copying at once; then cancels the copy account's orders, closes its positions at market
    (or keeps them) and settles the profit share. The stop is stored first, as `closing`: a worker
    that dies in the middle leaves the rest to `close_stopped_copies`, and a repeated unfollow
    carries on from where the first one stopped."""
    with transaction.atomic():
        follow = Follow.objects.select_for_update().get(pk=follow.pk)
        if follow.status != Follow.Status.STOPPED:
            follow.status = Follow.Status.STOPPED
            follow.stopped_at = timezone.now()
            follow.stop_reason = reason
            follow.closing = True
            follow.close_positions = close_positions
            follow.save(update_fields=["status", "stopped_at", "stop_reason", "closing", "close_positions"])
    if follow.closing:
        close_stopped_copy(follow=follow)
        follow.refresh_from_db()
    return follow


def close_stopped_copy(*, follow: Follow) -> bool:
    """One step of closing a stopped copy, safe to repeat: cancels its open orders and closes its
    positions at market (unless kept); once the engine has left nothing open, settles the profit
    share and ends `closing` in ONE transaction, so the stop is settled once. True when closed."""
    follow = Follow.objects.select_related("account").filter(pk=follow.pk, closing=True).first()
    if follow is None:
        return True
    prefix = _close_prefix(follow)
    open_orders = list(Order.objects.select_related("instrument").filter(account_id=follow.account_id,
                                                                          ord_status__in=OPEN_STATUSES))
    others = [o for o in open_orders if not o.cl_ord_id.startswith(prefix)]
    if others:
        # repeated before the engine applied the first, a cancel is refused by it: harmless
        cancel_orders(orders=others, text="Canceled: copy stopped", wait=0)
    if follow.close_positions:
        close_copy_positions(follow=follow, text=f"copy stopped: {follow.stop_reason}"[:200])
    if open_orders:
        return False  # the engine has yet to apply the cancels and closes: a later step settles
    with transaction.atomic():
        follow = Follow.objects.select_for_update().get(pk=follow.pk)
        if not follow.closing:
            return True
        if Order.objects.filter(account_id=follow.account_id, ord_status__in=OPEN_STATUSES).exists() or (
                follow.close_positions and _open_positions(follow).exists()):
            return False
        settle_profit_share(follow=follow, reason="unfollow")
        follow.closing = False
        follow.save(update_fields=["closing"])
    return True


def close_stopped_copies() -> int:
    """Carries on closing every stopped copy still `closing` (celery beat); returns how many closed.
    One that fails is logged and tried again at the next run; it never blocks the others."""
    closed = 0
    for follow in Follow.objects.filter(closing=True).order_by("pk"):
        try:
            closed += close_stopped_copy(follow=follow)
        except Exception:
            log.exception("could not close stopped copy %s", follow.pk)
    return closed


def _close_prefix(follow: Follow) -> str:
    return f"close-{follow.pk}-"


def _open_positions(follow: Follow):
    return Position.objects.select_related("instrument", "instrument__settle_asset").filter(
        account_id=follow.account_id).exclude(current_qty=0)


def close_copy_positions(*, follow: Follow, text: str) -> None:
    """A market Close order for each open position of the copy that has none on its way to the engine.
    Under the follow's lock, so two closers at once (unfollow and the periodic task) place one."""
    prefix = _close_prefix(follow)
    with transaction.atomic():  # the orders go to the engine after the commit
        Follow.objects.select_for_update().values_list("pk", flat=True).get(pk=follow.pk)
        closing = set(Order.objects.filter(account_id=follow.account_id, ord_status__in=OPEN_STATUSES,
                                           cl_ord_id__startswith=prefix).values_list("instrument_id", flat=True))
        for position in _open_positions(follow).exclude(instrument_id__in=closing):
            side = Side.SELL if position.current_qty > 0 else Side.BUY
            # a new clOrdID per attempt: one the book canceled unfilled is followed by another
            submit_orders_bulk(instrument=position.instrument, orders=[BulkOrder(
                account_id=follow.account_id, side=side, order_qty=abs(position.current_qty), ord_type=OrdType.MARKET,
                price=None, time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL, exec_inst="Close",
                cl_ord_id=f"{prefix}{position.instrument_id}-{time.time_ns() // 1_000_000}", text=text)])


# ---------- the fan-out ----------

def copy_leader_executions(*, execution_ids: list[int]) -> int:
    """Copies each leader execution to every follower, a chunk of COPY_CHUNK followers at a time: each
    chunk's orders are sized in one pass, stored in bulk and queued. Exactly once: a repeated call
    finds the orders (deterministic clOrdID) and CopiedOrder rows already there. Returns orders placed."""
    placed = 0
    for execution in _leader_executions(execution_ids):
        placed += _copy_execution(execution)
    return placed


def _leader_executions(execution_ids: list[int]):
    return (Execution.objects.select_related("instrument", "instrument__settle_asset", "account__leader")
            .filter(pk__in=execution_ids, account__leader__status=Leader.Status.ACTIVE).order_by("pk"))


WARM_UP_TIMEOUT_MS = 500  # a pool process that takes 4 s to start is killed by Celery


def warm_up_fan_out() -> None:
    """Does, as a worker process starts or its database connection is renewed, what its next copy
    would otherwise do on a leader's clock: make its Redis client (no I/O), learn the order keys'
    sequence step, and run the fan-out's reads over no follower, so that the database session has
    the tables' catalog entries loaded. Bounded in time: a locked table or a slow server makes it
    fail, and the copy does it then."""
    streams.client()
    with transaction.atomic():
        persistence.set_local_timeouts(WARM_UP_TIMEOUT_MS)
        persistence.next_ids("matching_order", 1)  # the rest of the block serves this process's next orders
        list(_leader_executions([0]))
        selectors.follows_to_copy(leader=Leader(pk=0), followed_before=timezone.now())
        instrument = Instrument.objects.select_related("settle_asset").first()
        if instrument is not None:
            selectors.equities(account_ids=[0], asset=instrument.settle_asset_id)
            trading_selectors.account_positions(instrument=instrument, account_ids=[0])
            persistence.existing_cl_ord_ids([(0, "")])


def copy_missed_executions(*, older_than: timedelta = timedelta(seconds=5),
                           window: timedelta = timedelta(minutes=10)) -> int:
    """Copies the leader executions the fan-out never handled: the engine stopped between committing
    them and announcing them, or the announcement failed. Those above each leader's mark that are
    older than `older_than` and have no CopiedExecution row are copied (exactly once as ever:
    clOrdIDs), whatever later fills were copied meanwhile; older than `window` a trade is not copied
    any more. The mark then moves past them, so each run reads seconds of fills, however long the
    leader's history. Also brings the leaders' statistics up to their last execution."""
    now = timezone.now()
    rows = selectors.executions_above_marks(before=now - older_than)
    missed = [(r.execution_id, r.leader_id) for r in rows if not r.copied and r.created_at >= now - window]
    expired = sum(1 for r in rows if not r.copied and r.created_at < now - window)
    if expired:
        log.warning("%d leader executions older than %s were never copied and no longer will be", expired, window)
    if missed:
        log.warning("copying %d leader executions that were never announced", len(missed))
    copied = len(missed)
    failed = set()  # a leader whose missed fill could not be copied keeps its mark: the next run tries again
    for pk, leader_id in missed:
        try:
            copy_leader_executions(execution_ids=[pk])
        except Exception:
            log.exception("could not copy leader execution %s", pk)
            failed.add(leader_id)
            copied -= 1
    marks = {r.leader_id: r.execution_id for r in rows if r.leader_id not in failed}  # rows ascend: the last
    for leader_id, pk in marks.items():
        Leader.objects.filter(pk=leader_id, copied_through__lt=pk).update(copied_through=pk)
    # the rows of executions long past the window: no run reads them again
    CopiedExecution.objects.filter(created_at__lt=now - 2 * window).delete()
    for leader_id in selectors.leaders_with_uncounted_executions(before=now - older_than):
        update_leader_stats(leader_id=leader_id)
    return copied


def _record_copied(execution: Execution) -> None:
    """Every outcome of the execution is stored: the catch-up leaves it alone."""
    CopiedExecution.objects.bulk_create([CopiedExecution(execution_id=execution.pk, created_at=timezone.now())],
                                        ignore_conflicts=True)


def _copy_execution(execution: Execution) -> int:
    leader = execution.account.leader
    instrument = execution.instrument
    asset = instrument.settle_asset_id
    follows = selectors.follows_to_copy(leader=leader, followed_before=execution.created_at)
    if not follows:
        _record_copied(execution)
        return 0
    now = timezone.now()
    skipped: list[tuple[selectors.CopyingFollow, str, str, int, bool]] = []  # follow, reason, side, qty, reduce_only
    candidates = []
    for follow in follows:
        if follow.status == Follow.Status.PAUSED:
            skipped.append((follow, "paused", execution.side, 0, False))
        elif follow.symbols and instrument.symbol not in follow.symbols:
            skipped.append((follow, f"{instrument.symbol} is not in your symbol list", execution.side, 0, False))
        elif follow.asset_id != asset:
            skipped.append((follow, f"{instrument.symbol} settles in {asset}, your copy capital is in {follow.asset_id}",
                            execution.side, 0, False))
        else:
            candidates.append(follow)
    sign = 1 if execution.side == Side.BUY else -1
    fill = calculations.LeaderFill(side=execution.side, qty=execution.last_qty, price=execution.last_px,
                                   position_before=execution.position_qty - sign * execution.last_qty,
                                   equity=selectors.equities(account_ids=[leader.account_id], asset=asset)
                                   .get(leader.account_id, Decimal(0)))
    leader_leverage = (Position.objects.filter(account_id=execution.account_id, instrument=instrument)
                       .values_list("leverage", flat=True).first())
    # A chunk of followers at a time is read, sized, stored and queued, each chunk in one transaction:
    # the engine matches the first chunk while the next is prepared (10,000 followers: 1.43 s to the
    # last match in one transaction, 1.17-1.27 s in chunks of 1,000 sized all at once). A task that
    # stops between chunks is delivered again and finds the stored ones by their clOrdIDs.
    chunks = [candidates[i:i + COPY_CHUNK] for i in range(0, len(candidates), COPY_CHUNK)] or [[]]
    request_follows, results = [], []
    for number, chunk in enumerate(chunks):
        with transaction.atomic():
            requests, chunk_follows, chunk_skipped, accounts = _size_copies(execution, fill, chunk, instrument,
                                                                            leader_leverage)
            if number == 0:
                chunk_skipped = skipped + chunk_skipped
            placed = submit_orders_bulk(instrument=instrument, orders=requests, accounts=accounts)
            rows = [(f.pk, execution.pk, reduce_only, None, side, qty, CopiedOrder.Status.SKIPPED, reason[:200], now)
                    for f, reason, side, qty, reduce_only in chunk_skipped]
            for (follow, order), result in zip(chunk_follows, placed):
                status = CopiedOrder.Status.PLACED if result.order_pk else CopiedOrder.Status.SKIPPED
                rows.append((follow.pk, execution.pk, order.reduce_only, result.order_pk, order.side, order.qty, status,
                             result.reason[:200], now))
            persistence.insert_ignoring_duplicates("copytrade_copiedorder", COPIED_ORDER_COLUMNS, rows)
            if number == len(chunks) - 1:
                _record_copied(execution)
        request_follows += chunk_follows
        results += placed
    _protect_positions(execution, request_follows, results, instrument)
    return sum(1 for r in results if r.order_pk)


def _size_copies(execution: Execution, fill: calculations.LeaderFill, follows: list[selectors.CopyingFollow],
                 instrument: Instrument, leader_leverage: Decimal | None):
    """The follows' orders for the leader's fill, in one pass, in the caller's transaction: (requests,
    (follow, sized order) of each request, (follow, reason, side, qty, reduce-only) of each follow
    sized to nothing, the accounts locked for the margin check). Positions are read once; flat ones
    take the leverage they will copy at; then the balances are locked (the engine's order), so that
    the sizing and the margin check see the same equity."""
    if not follows:
        return [], [], [], None
    account_ids = [f.account_id for f in follows]
    positions = trading_selectors.account_positions(instrument=instrument, account_ids=account_ids)
    _align_leverage(follows, instrument, leader_leverage=leader_leverage, current=positions.leverages)
    accounts = lock_accounts(instrument=instrument, account_ids=account_ids, positions=positions)
    wallets, unrealized = accounts.balances, positions.unrealized
    terms: ContractTerms = instrument.terms
    sized = calculations.follower_quantities(fill, [calculations.FollowTerms(
        follow_id=f.pk, mode=f.sizing, ratio=f.ratio, fixed_notional=f.fixed_notional,
        equity=wallets[f.account_id][0] + unrealized.get(f.account_id, Decimal(0)),
        position=positions.quantities.get(f.account_id, 0),
        max_order_notional=f.max_order_notional, max_position_notional=f.max_position_notional)
        for f in follows], instrument.lot_size, terms)
    by_pk = {f.pk: f for f in follows}
    requests, request_follows, skipped = [], [], []
    text = f"copy of {execution.exec_id}"
    for order in sized:
        follow = by_pk[order.follow_id]
        if order.skip_reason:
            skipped.append((follow, order.skip_reason, order.side, 0, order.reduce_only))
            continue
        requests.append(_copy_request(execution.pk, execution.last_px, text, follow, order, instrument.tick_size))
        request_follows.append((follow, order))
    return requests, request_follows, skipped, accounts


COPY_CHUNK = 1_000


COPIED_ORDER_COLUMNS = [("follow_id", "bigint"), ("leader_execution_id", "bigint"), ("reduce_only", "boolean"),
                        ("order_id", "bigint"), ("side", "text"), ("qty", "bigint"), ("status", "text"),
                        ("reason", "text"), ("created_at", "timestamptz")]


def _copy_request(execution_pk: int, leader_price: Decimal, text: str, follow: selectors.CopyingFollow, order,
                  tick: Decimal) -> BulkOrder:
    """An opening copy is an IOC limit bounded by the leader's price ± the follower's slippage;
    a reduction is a reduce-only market order, so the copy never keeps what the leader closed."""
    cl_ord_id = f"cp{execution_pk}-{follow.pk}{'r' if order.reduce_only else 'o'}"
    if order.reduce_only:
        return BulkOrder(account_id=follow.account_id, side=order.side, order_qty=order.qty, ord_type=OrdType.MARKET,
                         price=None, time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL, cl_ord_id=cl_ord_id,
                         exec_inst="ReduceOnly", text=text)
    return BulkOrder(account_id=follow.account_id, side=order.side, order_qty=order.qty, ord_type=OrdType.LIMIT,
                     price=slippage_bound(leader_price, order.side, follow.slippage, tick),
                     time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL, cl_ord_id=cl_ord_id, text=text)


def slippage_bound(price: Decimal, side: str, slippage: Decimal, tick: Decimal) -> Decimal:
    """The worst price a copied opening may fill at, on the tick grid, never worse than the limit."""
    if side == Side.BUY:
        return (price * (1 + slippage) / tick).to_integral_value(ROUND_FLOOR) * tick
    return max((price * (1 - slippage) / tick).to_integral_value(ROUND_CEILING), 1) * tick


def _align_leverage(follows: list[selectors.CopyingFollow], instrument: Instrument, leader_leverage: Decimal | None,
                    current: dict[int, Decimal]) -> None:
    """Followers' flat positions take the follow's fixed leverage, or the leader's; only positions
    whose leverage differs (or that do not exist yet) are written, and `current` learns their new one."""
    rows = []
    max_leverage = instrument.max_leverage
    for follow in follows:
        leverage = follow.leverage or leader_leverage
        if leverage:
            leverage = min(leverage, max_leverage)
            if current.get(follow.account_id) != leverage:
                rows.append((follow.account_id, instrument.pk, leverage))
    # in the engine's lock order (positions by key, then balances): no deadlock
    for account_id, _, leverage in persistence.set_flat_position_leverage(sorted(rows)):
        current[account_id] = leverage


def _protect_positions(execution: Execution, request_follows, results, instrument: Instrument) -> None:
    """Take-profit and stop-loss on each copied opening: Close orders around the leader's fill price."""
    by_instrument = []
    for (follow, order), result in zip(request_follows, results):
        if order.reduce_only or not result.order_pk or not (follow.take_profit or follow.stop_loss):
            continue
        closing = Side.SELL if order.side == Side.BUY else Side.BUY
        up = 1 if order.side == Side.BUY else -1
        tick = instrument.tick_size
        for kind, fraction, ord_type in (("tp", follow.take_profit, OrdType.MARKET_IF_TOUCHED),
                                         ("sl", follow.stop_loss, OrdType.STOP)):
            if not fraction:
                continue
            direction = up if kind == "tp" else -up
            stop = (execution.last_px * (1 + direction * fraction) / tick).to_integral_value() * tick
            if stop <= 0:
                continue
            by_instrument.append(BulkOrder(
                account_id=follow.account_id, side=closing, order_qty=0, ord_type=ord_type, price=None,
                time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL, exec_inst="Close",
                cl_ord_id=f"{kind}{execution.pk}-{follow.pk}", text=f"copy {kind}", stop_px=stop))
    if by_instrument:
        _replace_protection(execution.pk, by_instrument, instrument)


PROTECTION_CL_ORD_ID = re.compile(r"(?:tp|sl)(\d+)-\d+")


def _protected_execution(cl_ord_id: str) -> int:
    """The leader execution a take-profit or stop-loss was placed for (0: not one of ours)."""
    match = PROTECTION_CL_ORD_ID.fullmatch(cl_ord_id)
    return int(match.group(1)) if match else 0


def _replace_protection(execution_pk: int, orders: list[BulkOrder], instrument: Instrument) -> None:
    """Cancels the pair an earlier opening placed and places this execution's. The fan-out of one
    execution may run twice (a redelivered task, the catch-up and the queued task): the second run
    finds its own pair (the same clOrdIDs) open and keeps it. A late copy of an older execution
    (the catch-up) leaves a later execution's pair in place and adds none."""
    accounts = {o.account_id for o in orders}
    open_pks = trading_selectors.open_order_pks(instrument=instrument, account_ids=list(accounts))
    placed = list(Order.objects.select_related("instrument").filter(pk__any=open_pks)
                  .filter(Q(cl_ord_id__startswith="tp") | Q(cl_ord_id__startswith="sl")))
    newer = {o.account_id for o in placed if _protected_execution(o.cl_ord_id) > execution_pk}
    stale = [o for o in placed if o.account_id not in newer and _protected_execution(o.cl_ord_id) < execution_pk]
    if stale:
        cancel_orders(orders=stale, text="Canceled: replaced by a new take-profit/stop-loss", wait=0)
    submit_orders_bulk(instrument=instrument, orders=[o for o in orders if o.account_id not in newer])


def check_equity_stops() -> int:
    """Stops (and closes) every copy whose equity fell below its equity stop; returns how many."""
    stopped = 0
    for follow in Follow.objects.filter(status__in=[Follow.Status.ACTIVE, Follow.Status.PAUSED],
                                        equity_stop__isnull=False).select_related("account"):
        equity = selectors.equities(account_ids=[follow.account_id], asset=follow.asset_id).get(follow.account_id)
        if equity is not None and equity < follow.equity_stop:
            unfollow(follow=follow, close_positions=True, reason=f"equity {equity} fell below the stop {follow.equity_stop}")
            stopped += 1
    return stopped


# ---------- profit share ----------

def settle_profit_share(*, follow: Follow, reason: str = "daily") -> ProfitShareSettlement | None:
    """Pays the leader its rate on the copy's net realized profit above the high-water mark."""
    with transaction.atomic():
        follow = Follow.objects.select_for_update(of=("self",)).select_related("asset", "leader").get(pk=follow.pk)
        cumulative = selectors.copy_realized_pnl(follow=follow)
        fee, mark = calculations.profit_share(cumulative, follow.high_water_mark, follow.profit_share_rate)
        fee = fee.quantize(follow.asset.unit, rounding=ROUND_DOWN)
        if mark == follow.high_water_mark and not fee:
            return None
        tx = None
        if fee > 0:
            tx = post_transaction(kind=LedgerEntry.Kind.PROFIT_SHARE, reference=f"follow:{follow.pk}",
                                  legs=[(follow.account_id, follow.asset_id, -fee),
                                        (follow.leader.account_id, follow.asset_id, fee)])
        settlement = ProfitShareSettlement.objects.create(
            follow=follow, cumulative_pnl=cumulative, high_water_mark_before=follow.high_water_mark, amount=fee,
            transaction=tx, reason=reason)
        follow.high_water_mark = mark
        follow.profit_share_paid += fee
        follow.save(update_fields=["high_water_mark", "profit_share_paid"])
    return settlement


def settle_all_profit_shares() -> int:
    settled = 0
    for follow in Follow.objects.filter(Q(status__in=[Follow.Status.ACTIVE, Follow.Status.PAUSED])
                                        | Q(stopped_at__gte=timezone.now() - timezone.timedelta(days=7))):
        if settle_profit_share(follow=follow):
            settled += 1
    return settled


# ---------- leader statistics ----------

def record_leader_executions(*, execution_ids: list[int]) -> None:
    """Adds new executions of leaders to their running statistics (each execution counted once)."""
    for leader_id in (Execution.objects.filter(pk__in=execution_ids, account__leader__isnull=False)
                      .values_list("account__leader", flat=True).distinct()):
        update_leader_stats(leader_id=leader_id)


@transaction.atomic
def update_leader_stats(*, leader_id: int) -> LeaderStats:
    """Folds the leader's executions newer than the last counted one into its running statistics and
    its days; nothing is recomputed from history."""
    stats = LeaderStats.objects.select_for_update(of=("self",)).select_related("leader").get(leader_id=leader_id)
    leader = stats.leader
    new = list(Execution.objects.filter(account_id=leader.account_id, pk__gt=stats.last_execution_id,
                                        instrument__settle_asset_id=leader.stats_asset_id).order_by("pk"))
    if not new:
        return stats
    equity = Balance.objects.filter(account_id=leader.account_id, asset_id=leader.stats_asset_id).values_list(
        "amount", flat=True).first() or Decimal(0)
    days: dict = {}
    for execution in new:
        day = days.setdefault(execution.created_at.date(), [Decimal(0), Decimal(0), 0])
        day[0] += execution.realized_pnl
        day[1] += execution.exec_comm
        day[2] += 1
        _count_trade(stats, execution)
        stats.realized_pnl += execution.realized_pnl
        stats.fees += execution.exec_comm
        stats.first_trade_at = stats.first_trade_at or execution.created_at
    for date, (pnl, fees, trades) in sorted(days.items()):
        row, created = LeaderDay.objects.get_or_create(leader=leader, day=date)
        if created:
            previous = (LeaderDay.objects.filter(leader=leader, day__lt=date).order_by("-day")
                        .values_list("equity", flat=True).first())
            if previous:  # the day before closed: its return joins the Sharpe ratio's sums
                daily_return = (equity - previous) / previous
                stats.returns_count += 1
                stats.returns_sum += daily_return
                stats.returns_sum_squares += daily_return * daily_return
        row.realized_pnl += pnl
        row.fees += fees
        row.trades += trades
        row.equity = equity
        row.save()
    stats.peak_equity = max(stats.peak_equity, equity)
    if stats.peak_equity > 0:
        stats.max_drawdown = max(stats.max_drawdown, (stats.peak_equity - equity) / stats.peak_equity)
    stats.last_execution_id = new[-1].pk
    stats.save()
    return stats


def _count_trade(stats: LeaderStats, execution: Execution) -> None:
    """A fill that closes or flips a position ends a trade: won if its realized PnL is positive,
    held since the position opened."""
    key = str(execution.instrument_id)
    after = execution.position_qty
    before = after - (1 if execution.side == Side.BUY else -1) * execution.last_qty
    closed = before != 0 and (after == 0 or (before > 0) != (after > 0))
    if closed:
        stats.closed_trades += 1
        stats.winning_trades += 1 if execution.realized_pnl > 0 else 0
        opened = stats.open_since.pop(key, None)
        if opened:
            stats.holding_seconds += int((execution.created_at - datetime.fromisoformat(opened)).total_seconds())
    if after and (before == 0 or closed):
        stats.open_since[key] = execution.created_at.isoformat()
