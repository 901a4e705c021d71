"""Reads of the trading core."""
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from itertools import zip_longest
from typing import NamedTuple

from django.apps import apps
from django.db import connection
from django.db.models import F, Max, Min, Q, Sum
from django.utils import timezone

from accounts.selectors import dangling_references, ledger_problems
from config.rawsql import array_text, fetch_all
from matching import contracts
from matching.models import (
    HELD_STATUSES, OPEN_STATUSES, Execution, HeldOrder, Instrument, Order, OrdStatus, Position, Side,
)


class AccountPositions(NamedTuple):
    """What an order check reads of many accounts' positions, in one query: quantity and leverage
    on one instrument (absent where there is no position), and unrealized PnL over every instrument
    settled in the same asset."""

    quantities: dict[int, int]
    leverages: dict[int, Decimal]
    unrealized: dict[int, Decimal]


def account_positions(*, instrument, account_ids) -> AccountPositions:
    marks = _marks(instrument.settle_asset_id)
    rows = _position_rows(account_ids, marks, ", leverage")
    quantities, leverages = {}, {}
    for account_id, instrument_pk, qty, _, _, _, leverage in rows:
        if instrument_pk == instrument.pk:
            quantities[account_id], leverages[account_id] = qty, leverage
    return AccountPositions(quantities, leverages, _unrealized(rows, marks))


def engine_positions(instrument_pk: int):
    """(account_id, qty, entry_value, realized_pnl, cum_realized_pnl, opened_at) of every position with history."""
    return (Position.objects.filter(instrument_id=instrument_pk)
            .exclude(current_qty=0, cum_realized_pnl=0)
            .values_list("account_id", "current_qty", "entry_value", "realized_pnl", "cum_realized_pnl", "opened_at"))


def _marks(asset_code: str) -> dict[int, tuple[Decimal | None, contracts.ContractTerms]]:
    """instrument pk -> (mark price, contract terms) of the instruments settled in asset_code."""
    return {i.pk: (i.mark_price or i.last_price, i.terms)
            for i in Instrument.objects.select_related("settle_asset").filter(settle_asset_id=asset_code)}


def unrealized_pnl_by_account(*, account_ids, asset_code: str) -> dict[int, Decimal]:
    """Unrealized PnL at the mark price of each account's open positions settled in asset_code.
    Positions are read as plain rows and instruments once: a copy fan-out asks for ten thousand
    accounts, where model instances cost seconds."""
    marks = _marks(asset_code)
    return _unrealized(_position_rows(account_ids, marks, where=" AND current_qty <> 0"), marks) if marks else {}


def _position_rows(account_ids, marks: dict, more: str = "", where: str = "") -> list[tuple]:
    """(account, instrument, qty, entry value, cross margin, margin, *more columns) of the accounts'
    positions on these instruments."""
    return fetch_all(f"SELECT account_id, instrument_id, current_qty, entry_value, cross_margin, margin{more} "
                     f"FROM matching_position WHERE account_id = ANY(%s::bigint[]) AND instrument_id = ANY(%s::bigint[])"
                     f"{where}", [array_text(account_ids), array_text(marks)])


def _unrealized(rows, marks: dict) -> dict[int, Decimal]:
    """Each account's unrealized PnL over _position_rows. An isolated position's loss counts in full
    too: only a liquidation at its margin would end it there, and until the risk engine liquidates, a
    loss beyond the margin is the wallet's, not money to withdraw."""
    totals: dict[int, Decimal] = {}
    for account_id, instrument_pk, qty, entry_value, *_ in rows:
        if qty:
            pnl = contracts.unrealized_pnl(qty, entry_value, *marks[instrument_pk])
            totals[account_id] = totals.get(account_id, Decimal(0)) + pnl
    return totals


class MarginPosition(NamedTuple):
    qty: int  # the position as an order on one side may reduce it (position_for_margin)
    leverage: Decimal


def position_for_margin(*, account_id: int, instrument_id: int, side: str, excluding: int | None = None
                        ) -> MarginPosition:
    """The account's position and leverage as a new (or amended) order's margin sees them: the
    position less what the account's other open orders on that side would reduce first, so that
    two orders never both count the same position as theirs to reduce. One statement reads them
    all, at one moment (the engine commits a batch's positions and orders together); its open
    orders come from HeldOrder and PendingOrder, by account, never from its whole history."""
    (position_qty, leverage, same_side), = fetch_all(
        "SELECT p.current_qty, p.leverage, "
        "COALESCE((SELECT sum(h.leaves_qty) FROM matching_heldorder h WHERE h.account_id = p.account_id "
        "  AND h.instrument_id = p.instrument_id AND h.side = %s AND h.order_id <> %s), 0)::bigint "
        "+ COALESCE((SELECT sum(o.leaves_qty) FROM matching_pendingorder q JOIN matching_order o ON o.id = q.order_id "
        "  WHERE o.account_id = p.account_id AND o.instrument_id = p.instrument_id AND o.side = %s AND o.id <> %s), 0)::bigint "
        "FROM matching_position p WHERE p.account_id = %s AND p.instrument_id = %s",
        [side, excluding or 0, side, excluding or 0, account_id, instrument_id])
    return MarginPosition(position_left(int(position_qty), side, same_side), leverage)


def position_left(position_qty: int, side: str, same_side: int) -> int:
    """The position as an order on `side` may reduce it, once the account's other open orders on
    that side (`same_side` in all) have reduced it first."""
    if side == Side.SELL and position_qty > 0:
        return max(position_qty - same_side, 0)
    if side == Side.BUY and position_qty < 0:
        return min(position_qty + same_side, 0)
    return position_qty


def open_leaves_by_side(*, instrument_id: int, account_ids) -> dict[tuple[int, str], int]:
    """(account, side) -> the leaves of the accounts' open orders on the instrument, through
    HeldOrder and PendingOrder (position_for_margin's count, for many accounts at once)."""
    if not account_ids:
        return {}
    accounts = array_text(sorted(set(account_ids)))
    rows = fetch_all(
        "SELECT account_id, side, sum(leaves_qty)::bigint FROM ("
        "  SELECT account_id, side, leaves_qty FROM matching_heldorder"
        "  WHERE account_id = ANY(%s::bigint[]) AND instrument_id = %s"
        "  UNION ALL SELECT o.account_id, o.side, o.leaves_qty FROM matching_pendingorder q"
        "  JOIN matching_order o ON o.id = q.order_id"
        "  WHERE o.account_id = ANY(%s::bigint[]) AND o.instrument_id = %s) AS open_orders "
        "GROUP BY account_id, side", [accounts, instrument_id, accounts, instrument_id])
    return {(account_id, side): int(leaves) for account_id, side, leaves in rows}


def has_margined_open_orders(*, account_id: int, instrument_id: int) -> bool:
    """Whether the account has open orders on the instrument that hold margin (through HeldOrder and
    PendingOrder, by account: never a walk through its whole history)."""
    (found,), = fetch_all(
        "SELECT EXISTS (SELECT 1 FROM matching_order o WHERE o.margin_reserved > 0 AND o.id IN ("
        "  SELECT order_id FROM matching_heldorder WHERE account_id = %s AND instrument_id = %s "
        "  UNION ALL SELECT q.order_id FROM matching_pendingorder q JOIN matching_order p ON p.id = q.order_id "
        "  WHERE p.account_id = %s AND p.instrument_id = %s))",
        [account_id, instrument_id, account_id, instrument_id])
    return found


def account_unrealized_pnl(*, account_id: int, asset_code: str) -> Decimal:
    """Unrealized PnL at the mark price of the account's open positions settled in asset_code."""
    return unrealized_pnl_by_account(account_ids=[account_id], asset_code=asset_code).get(account_id, Decimal(0))


@dataclass(frozen=True)
class DemoLevel:
    price: Decimal
    qty: int
    orders: int


@dataclass(frozen=True)
class DemoFill:
    taker: int
    maker: int
    side: str
    price: Decimal
    qty: int


@dataclass(frozen=True)
class DemoBook:
    symbol: str
    orders_placed: int
    bids: list[DemoLevel]
    asks: list[DemoLevel]
    fills: list[DemoFill]

    @property
    def rows(self) -> list[tuple[DemoLevel | None, DemoLevel | None]]:
        return list(zip_longest(self.bids, self.asks))


def demo_book_depth(levels: int = 10) -> DemoBook:
    """A C order book filled with a deterministic ladder of orders around 60,000, some crossing."""
    from matching.book import BUY, EV_FILL, SELL, OrderBook

    tick = Decimal("0.5")
    mid = 120_000  # ticks: 60,000.0
    rng = random.Random(7)
    book = OrderBook()
    fills = []
    count = 60
    for order_id in range(1, count + 1):
        side = BUY if order_id % 2 else SELL
        # most orders rest near the mid; every fifth one crosses the spread
        offset = rng.randint(1, 12) if order_id % 5 else -rng.randint(0, 3)
        price = mid - offset if side == BUY else mid + offset
        for kind, taker, maker, fill_price, qty, _ in book.place(order_id, order_id % 7, side, price,
                                                                 rng.randint(1, 20) * 100):
            if kind == EV_FILL:
                fills.append(DemoFill(taker, maker, "Buy" if side == BUY else "Sell", fill_price * tick, qty))
    bids, asks = book.depth(levels)
    return DemoBook("XBTUSD", count, [DemoLevel(p * tick, q, n) for p, q, n in bids],
                    [DemoLevel(p * tick, q, n) for p, q, n in asks], fills)


def margin_problems() -> list[str]:
    """Order and position margin held on balances must equal what the orders and positions hold."""
    sql = """
        WITH held AS (
            SELECT o.account_id, i.settle_asset_id AS asset_id, o.margin_reserved AS order_margin, 0 AS position_margin
              FROM matching_order o JOIN matching_instrument i ON i.id = o.instrument_id
             WHERE o.ord_status IN ('PendingNew', 'New', 'PartiallyFilled', 'Untriggered')
            UNION ALL
            SELECT o.account_id, i.settle_asset_id, c.margin_delta, 0
              FROM matching_ordercommand c JOIN matching_order o ON o.id = c.order_id
              JOIN matching_instrument i ON i.id = o.instrument_id
             WHERE c.status = 'pending'
            UNION ALL
            SELECT p.account_id, i.settle_asset_id, 0, p.margin
              FROM matching_position p JOIN matching_instrument i ON i.id = p.instrument_id
        ), expected AS (
            SELECT account_id, asset_id, SUM(order_margin) AS order_margin, SUM(position_margin) AS position_margin
              FROM held GROUP BY account_id, asset_id
        )
        SELECT COALESCE(b.account_id, e.account_id), COALESCE(b.asset_id, e.asset_id),
               COALESCE(b.order_margin, 0), COALESCE(e.order_margin, 0),
               COALESCE(b.position_margin, 0), COALESCE(e.position_margin, 0)
          FROM accounts_balance b FULL OUTER JOIN expected e
            ON e.account_id = b.account_id AND e.asset_id = b.asset_id
         WHERE COALESCE(b.order_margin, 0) <> COALESCE(e.order_margin, 0)
            OR COALESCE(b.position_margin, 0) <> COALESCE(e.position_margin, 0)
         ORDER BY 1, 2 LIMIT 100"""
    with connection.cursor() as cursor:
        cursor.execute(sql)
        rows = cursor.fetchall()
    return [f"account {account} {asset}: order margin {om} held, orders say {eom}; "
            f"position margin {pm} held, positions say {epm}"
            for account, asset, om, eom, pm, epm in rows]


def execution_problems() -> list[str]:
    """Executions, orders and positions whose order, account or instrument does not exist."""
    return (dangling_references("matching_execution", "execution", [
                ("order_id", "matching_order", "id"), ("account_id", "accounts_account", "id"),
                ("instrument_id", "matching_instrument", "id")])
            + dangling_references("matching_order", "order", [
                ("account_id", "accounts_account", "id"), ("instrument_id", "matching_instrument", "id")])
            + dangling_references("matching_position", "position", [
                ("account_id", "accounts_account", "id"), ("instrument_id", "matching_instrument", "id")]))


def open_order_problems() -> list[str]:
    """Open orders missing from PendingOrder or HeldOrder, where the engine's restart, its sweep and
    the public order book look for them, held rows that do not say what their order says, and an
    unmargined part beyond what an order leaves open."""
    sql = """
        SELECT o.id, o.ord_status, h.order_id IS NOT NULL FROM matching_order o
          LEFT JOIN matching_heldorder h ON h.order_id = o.id
         WHERE (o.ord_status = 'PendingNew'
                AND NOT EXISTS (SELECT 1 FROM matching_pendingorder p WHERE p.order_id = o.id))
            OR (o.ord_status = ANY(%s::text[])
                AND (h.order_id IS NULL OR (h.account_id, h.instrument_id, h.side, h.leaves_qty, h.ord_status)
                     <> (o.account_id, o.instrument_id, o.side, o.leaves_qty, o.ord_status)
                     OR h.price IS DISTINCT FROM o.price))
         ORDER BY o.id LIMIT 100"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [array_text(HELD_STATUSES, "text")])
        problems = [f"order {pk} is {status} but its held row says otherwise" if listed else
                    f"order {pk} is {status} but not listed as {'pending' if status == 'PendingNew' else 'held'}"
                    for pk, status, listed in cursor.fetchall()]
        # the engine's own orders: those it holds and those it has not applied yet
        cursor.execute("SELECT o.id, o.unmargined_qty, o.leaves_qty FROM matching_order o WHERE o.id IN ("
                       "SELECT order_id FROM matching_heldorder UNION ALL SELECT order_id FROM matching_pendingorder) "
                       "AND (o.unmargined_qty < 0 OR o.unmargined_qty > o.leaves_qty) ORDER BY o.id LIMIT 100")
        return problems + [f"order {pk} has an unmargined part of {part} but leaves {leaves}"
                           for pk, part, leaves in cursor.fetchall()]


def book_problems() -> list[str]:
    """Everything check_ledger verifies: the ledger, margins, the hot tables' references, and what
    an installed app adds (an AppConfig's own `book_problems`)."""
    problems = ledger_problems() + margin_problems() + execution_problems() + open_order_problems()
    for app in apps.get_app_configs():
        if hasattr(app, "book_problems"):
            problems += app.book_problems()
    return problems


# ---------- API reads ----------

def _flag(value, name: str) -> bool:
    """A filter's true or false (1 and 0 are not: 1 == True in Python)."""
    if value is True or value == "true":
        return True
    if value is False or value == "false":
        return False
    raise ValueError(f"filter {name} must be true or false")


def _filtered(queryset, query, time_field: str, filter_fields: dict):
    if query.symbol:
        queryset = queryset.filter(instrument__symbol=query.symbol)
    for key, value in query.filter.items():
        if key == "open":
            queryset = queryset.filter(ord_status__in=OPEN_STATUSES) if _flag(value, key) else queryset.exclude(
                ord_status__in=OPEN_STATUSES)
        elif key in filter_fields:
            values = value if isinstance(value, list) else [value]
            queryset = queryset.filter(**{f"{filter_fields[key]}__in": values})
        else:
            raise ValueError(f"Unsupported filter field: {key}")
    if query.start_time:
        queryset = queryset.filter(**{f"{time_field}__gte": query.start_time})
    if query.end_time:
        queryset = queryset.filter(**{f"{time_field}__lte": query.end_time})
    order = ("-" if query.reverse else "") + time_field
    return queryset.order_by(order, ("-" if query.reverse else "") + "pk")[query.start:query.start + query.count]


ORDER_FILTERS = {"orderID": "order_id", "clOrdID": "cl_ord_id", "ordStatus": "ord_status", "side": "side",
                 "ordType": "ord_type", "symbol": "instrument__symbol"}
EXECUTION_FILTERS = {"orderID": "order__order_id", "clOrdID": "order__cl_ord_id", "execType": "exec_type",
                     "side": "side", "ordStatus": "ord_status", "ordType": "order__ord_type",
                     "symbol": "instrument__symbol"}


def orders_for(*, account, query) -> list[Order]:
    if "orderID" in query.filter:
        _check_uuids(query.filter["orderID"], "orderID")
    orders = Order.objects.select_related("instrument", "instrument__settle_asset").filter(account=account)
    return list(_filtered(orders, query, "created_at", ORDER_FILTERS))


def executions_for(*, account, query) -> list[Execution]:
    if "orderID" in query.filter:
        _check_uuids(query.filter["orderID"], "orderID")
    executions = Execution.objects.select_related("order", "instrument", "instrument__settle_asset").filter(
        account=account)
    return list(_filtered(executions, query, "created_at", EXECUTION_FILTERS))


def public_trades(*, query) -> list[Execution]:
    """The taker's execution of each match is the public trade."""
    trades = Execution.objects.select_related("instrument", "instrument__settle_asset").filter(
        last_liquidity_ind=Execution.Liquidity.REMOVED)
    return list(_filtered(trades, query, "created_at", {"side": "side", "symbol": "instrument__symbol"}))


def _check_uuids(value, field: str) -> None:
    for item in value if isinstance(value, list) else [value]:
        try:
            uuid.UUID(str(item))
        except ValueError:
            raise ValueError(f"Invalid {field}: {item}") from None


POSITION_FILTERS = {"symbol": "instrument__symbol", "currency": "instrument__settle_asset__currency"}


def positions_for(*, account, query=None) -> list[Position]:
    """The account's positions by symbol; a list query's `symbol`, `count` and `filter` (symbol,
    currency, isOpen) narrow them."""
    positions = Position.objects.select_related("instrument", "instrument__settle_asset").filter(account=account)
    if query is None:
        return list(positions.order_by("instrument__symbol"))
    if query.symbol:
        positions = positions.filter(instrument__symbol=query.symbol)
    for key, value in query.filter.items():
        if key == "isOpen":
            positions = positions.exclude(current_qty=0) if _flag(value, key) else positions.filter(current_qty=0)
        elif key in POSITION_FILTERS:
            positions = positions.filter(**{f"{POSITION_FILTERS[key]}__in": value if isinstance(value, list) else [value]})
        else:
            raise ValueError(f"Unsupported filter field: {key}")
    return list(positions.order_by("instrument__symbol")[:query.count])


def instruments(*, symbol: str | None = None, active_only: bool = False) -> list[Instrument]:
    rows = Instrument.objects.select_related("settle_asset").order_by("symbol")
    if symbol:
        rows = rows.filter(Q(symbol=symbol) | Q(root_symbol=symbol))
    if active_only:
        rows = rows.filter(state="Open")
    return list(rows)


def instrument_stats(instrument_pks: list[int]) -> dict[int, dict]:
    """24-hour open, high, low, VWAP and volumes from the public trades."""
    since = timezone.now() - timedelta(hours=24)
    stats = {}
    trades = (Execution.objects.filter(instrument_id__in=instrument_pks, created_at__gte=since,
                                       last_liquidity_ind=Execution.Liquidity.REMOVED)
              .values("instrument_id")
              .annotate(high=Max("last_px"), low=Min("last_px"), volume=Sum("last_qty"),
                        notional=Sum(F("last_px") * F("last_qty")), first=Min("pk")))
    opens = dict(Execution.objects.filter(pk__in=[t["first"] for t in trades]).values_list("instrument_id", "last_px"))
    by_pk = {i.pk: i for i in Instrument.objects.filter(pk__in=instrument_pks)}
    for t in trades:
        instrument = by_pk[t["instrument_id"]]
        vwap = (t["notional"] / t["volume"]).quantize(instrument.tick_size)
        if instrument.is_inverse:  # contracts are quote units: the base amount is approximated at the VWAP
            foreign = t["volume"] * instrument.contract_size
            home = foreign / vwap
        else:
            home = t["volume"] * instrument.contract_size
            foreign = t["notional"] * instrument.contract_size
        stats[instrument.pk] = {"open": opens.get(instrument.pk), "high": t["high"], "low": t["low"],
                                "vwap": vwap, "volume": t["volume"], "home": home, "foreign": foreign}
    return stats


def open_order_pks(*, instrument: Instrument, account_ids: list[int]) -> list[int]:
    """The orders of these accounts on the instrument that are pending or held by the engine, found
    through PendingOrder and HeldOrder: never a walk through every order the accounts ever placed."""
    held = Order.objects.filter(held__instrument=instrument, account_id__any=account_ids,
                                ord_status__in=HELD_STATUSES).values_list("pk", flat=True)
    pending = Order.objects.filter(pending__isnull=False, instrument=instrument, account_id__any=account_ids,
                                   ord_status=OrdStatus.PENDING_NEW).values_list("pk", flat=True)
    return list(held.union(pending))


def order_book_l2(*, instrument: Instrument, depth: int = 0) -> list[tuple[str, Decimal, int]]:
    """(side, price, size) of every resting level as last committed by the engine: asks high to low, then bids."""
    # from HeldOrder alone, which repeats each resting order's side, price and size: no join to the
    # orders (20,000 resting orders: 51-74 ms joined, 8-12 ms through the partial index there was)
    levels = (HeldOrder.objects.filter(instrument=instrument, ord_status__in=[OrdStatus.NEW, OrdStatus.PARTIALLY_FILLED])
              .values("side", "price").annotate(size=Sum("leaves_qty")))
    asks = sorted((lv for lv in levels if lv["side"] == Side.SELL), key=lambda lv: lv["price"])
    bids = sorted((lv for lv in levels if lv["side"] == Side.BUY), key=lambda lv: lv["price"], reverse=True)
    if depth:
        asks, bids = asks[:depth], bids[:depth]
    return [(lv["side"], lv["price"], lv["size"]) for lv in [*reversed(asks), *bids]]


def balances_for(*, account) -> list[dict]:
    """Per asset: wallet amount, margins, unrealized and realized PnL, for user/margin."""
    from accounts.models import Asset, Balance

    balances = {b.asset_id: b for b in Balance.objects.filter(account=account)}
    realized = dict(Position.objects.filter(account=account).values("instrument__settle_asset_id")
                    .annotate(total=Sum("cum_realized_pnl")).values_list("instrument__settle_asset_id", "total"))
    rows = []
    for asset in Asset.objects.order_by("code"):
        balance = balances.get(asset.code)
        amount, order_margin, position_margin = (
            (balance.amount, balance.order_margin, balance.position_margin) if balance else (Decimal(0),) * 3)
        unrealized = account_unrealized_pnl(account_id=account.pk, asset_code=asset.code)
        rows.append({
            "asset": asset, "amount": amount, "order_margin": order_margin, "position_margin": position_margin,
            "unrealized": unrealized, "realized": realized.get(asset.code) or Decimal(0),
            # the same rule as accounts.selectors.available_balance: unrealized losses count, profits do not
            "available": max(amount - order_margin - position_margin + min(unrealized, Decimal(0)), Decimal(0)),
        })
    return rows


def open_orders_for(*, account, limit: int = 100) -> list[Order]:
    return list(Order.objects.select_related("instrument").filter(account=account, ord_status__in=OPEN_STATUSES)
                .order_by("-pk")[:limit])


def recent_executions_for(*, account, limit: int = 50) -> list[Execution]:
    return list(Execution.objects.select_related("instrument", "order").filter(account=account).order_by("-pk")[:limit])


def recent_trades(*, instrument: Instrument, limit: int = 20) -> list[Execution]:
    return list(Execution.objects.filter(instrument=instrument, last_liquidity_ind=Execution.Liquidity.REMOVED)
                .order_by("-pk")[:limit])


def market_overview(levels: int = 8) -> list[dict]:
    """Per open instrument: last price, the top of the L2 book and the latest trades, for the home page."""
    overview = []
    for instrument in instruments(active_only=True):
        book = order_book_l2(instrument=instrument, depth=levels)
        overview.append({
            "instrument": instrument,
            "asks": [(price, size) for side, price, size in book if side == Side.SELL],
            "bids": [(price, size) for side, price, size in book if side == Side.BUY],
            "trades": recent_trades(instrument=instrument, limit=8),
        })
    return overview
