"""Reads of the trading core."""
import random
from dataclasses import dataclass
from decimal import Decimal
from itertools import zip_longest

from django.db import connection

from matching import contracts
from matching.models import Instrument, Position


def engine_positions(instrument_pk: int):
    """(account_id, qty, entry_value, realized_pnl, cum_realized_pnl, opened_at) of every position with history."""
    return (Position.objects.filter(instrument_id=instrument_pk)
            .exclude(current_qty=0, cum_realized_pnl=0)
            .values_list("account_id", "current_qty", "entry_value", "realized_pnl", "cum_realized_pnl", "opened_at"))


def account_unrealized_pnl(*, account_id: int, asset_code: str) -> Decimal:
    """Unrealized PnL at the mark price of the account's open positions settled in asset_code."""
    total = Decimal(0)
    positions = (Position.objects.select_related("instrument", "instrument__settle_asset")
                 .filter(account_id=account_id, instrument__settle_asset_id=asset_code).exclude(current_qty=0))
    for position in positions:
        instrument: Instrument = position.instrument
        mark = instrument.mark_price or instrument.last_price
        total += contracts.unrealized_pnl(position.current_qty, position.entry_value, mark, instrument.terms)
    return total


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
