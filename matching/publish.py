"""After each committed engine batch: market data and account updates go out on the channel layer.

Public, per symbol (group `market.<symbol>`): the batch's trades and the L2 levels it changed
(size 0: the level is gone). Private, per account (group `account.<id>`): the ids of the orders,
executions and positions the batch changed; the websocket consumer reads them back and sends
BitMEX rows. Private messages go only to accounts with a live connection (the Redis set
SUBSCRIBED_ACCOUNTS, kept by the consumers), so a batch of 10,000 orders costs a few messages.
"""
import asyncio
import logging
import threading
import time
from functools import lru_cache

import redis
from channels.layers import get_channel_layer
from django.conf import settings
from django.dispatch import receiver

from matching import rows, streams
from matching.signals import batch_committed

log = logging.getLogger(__name__)


def subscribed_accounts_key() -> str:
    return f"{settings.ENGINE_STREAM_PREFIX}:ws:accounts"


def market_group(symbol: str) -> str:
    return f"market.{symbol}"


def account_group(account_id: int) -> str:
    return f"account.{account_id}"


def level_changes(previous: dict, bids, asks, tick, lot: int) -> tuple[dict, list[tuple[str, object, int]]]:
    """The current L2 (from depth, in ticks and lots) and what changed since `previous`:
    (side, price, size in contracts), size 0 when the level is gone."""
    current = {("Buy", p): q for p, q, _ in bids}
    current.update({("Sell", p): q for p, q, _ in asks})
    changes = [(side, price * tick, lots * lot) for (side, price), lots in current.items()
               if previous.get((side, price)) != lots]
    changes += [(side, price * tick, 0) for (side, price) in previous.keys() - current.keys()]
    return current, changes


class Publisher:
    """Sends messages from one background event loop, in the order given, so that the engine never
    waits for the channel layer. Market data is best effort (the database has everything): when
    the layer falls behind by MAX_QUEUED messages, new ones are dropped, with one warning per
    WARN_EVERY seconds that counts them (a stalled layer would otherwise log every message)."""

    MAX_QUEUED = 10_000
    WARN_EVERY = 10.0

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue | None = None
        self.dropped = 0  # since the last warning
        self.warned_at = float("-inf")
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), name="publisher", daemon=True).start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue()
        self.loop.create_task(self._drain())
        started.set()
        self.loop.run_forever()

    async def _drain(self) -> None:
        while True:
            layer, group, message = await self.queue.get()
            try:
                await layer.group_send(group, message)
            except (redis.RedisError, OSError) as error:
                log.warning("could not publish to %s: %s", group, error)
            except Exception:
                log.exception("could not publish to %s", group)

    def send_all(self, layer, messages: list[tuple[str, dict]]) -> None:
        """(group, message) pairs, in order, with one wake-up of the loop: each wake-up writes to its
        pipe, which took half of the engine's time spent on market data."""
        room = max(self.MAX_QUEUED - self.queue.qsize(), 0)
        for group, _ in messages[room:]:
            self._drop(group)
        if messages[:room]:
            self.loop.call_soon_threadsafe(self._put_all, [(layer, group, message) for group, message in messages[:room]])

    def _put_all(self, items: list) -> None:
        for item in items:
            self.queue.put_nowait(item)

    def _drop(self, group: str) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self.warned_at >= self.WARN_EVERY:
            log.warning("the channel layer is behind: %d message(s) dropped, the last to %s", self.dropped, group)
            self.dropped, self.warned_at = 0, now


@lru_cache(maxsize=1)
def publisher() -> Publisher:
    return Publisher()


@receiver(batch_committed, dispatch_uid="matching.publish")
def publish_batch(sender, batch, engine, **kwargs) -> None:
    layer = get_channel_layer()
    if layer is None:
        return

    messages: list[tuple[str, dict]] = []

    def send(group: str, message: dict) -> None:
        messages.append((group, message))

    try:
        _publish_market(engine, batch, send)
        _publish_accounts(batch, send)
    except (redis.RedisError, OSError) as error:  # the set of live accounts is read here
        log.warning("could not publish a batch: %s", error)
    if messages:  # the market data even when the accounts could not be read
        publisher().send_all(layer, messages)


def _publish_market(engine, batch, send) -> None:
    trades: dict[int, list] = {}
    stamp = rows.iso(batch.now)  # the time of all the batch's executions
    for row in batch.executions:
        if row.last_liquidity_ind == "RemovedLiquidity":  # the taker's side is the public trade
            trades.setdefault(row.instrument_id, []).append({
                "timestamp": stamp, "side": row.side, "size": row.last_qty,
                "price": rows.number(row.last_px), "trdMatchID": str(row.trd_match_id)})
    for instrument_pk in batch.instruments | set(trades) | batch.touched_books:
        state = engine.states[instrument_pk]
        # as the batch left the book: by now the engine may have matched the next one
        bids, asks = batch.depth.get(instrument_pk) or state.book.depth(settings.PUBLISHED_DEPTH)
        state.published_levels, changes = level_changes(state.published_levels, bids, asks, state.terms.tick_size,
                                                             state.terms.lot_size)
        symbol = state.instrument.symbol
        for trade in trades.get(instrument_pk, []):
            trade["symbol"] = symbol
        if changes or trades.get(instrument_pk):
            send(market_group(symbol), {
                "type": "market.batch", "symbol": symbol, "trades": trades.get(instrument_pk, []),
                "levels": [{"side": side, "price": rows.number(price), "size": size,
                            "id": rows.l2_id(state.instrument, side, price)} for side, price, size in changes]})


def _publish_accounts(batch, send) -> None:
    # few accounts have a live connection at a time: read that set, not each touched account
    subscribed = {int(account_id) for account_id in streams.client().smembers(subscribed_accounts_key())}
    if not subscribed:
        return
    touched: dict[int, dict] = {}
    for order in batch.orders.values():
        if order.account_id in subscribed:
            touched.setdefault(order.account_id, {"orders": [], "executions": []})["orders"].append(order.pk)
    for execution_id, row in zip(batch.execution_ids, batch.executions):
        if row.account_id in subscribed:
            touched.setdefault(row.account_id, {"orders": [], "executions": []})["executions"].append(execution_id)
    for account_id, changes in touched.items():
        send(account_group(account_id), {"type": "account.batch", **changes})
