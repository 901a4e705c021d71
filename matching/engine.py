"""The engine: applies queued orders and commands to the C books and writes their effects.

One engine owns each symbol. It reads entries from the symbols' Redis Streams in batches,
applies each to the book, and writes the whole batch's effects (orders, executions, positions,
ledger entries, margin) in ONE database transaction before it acknowledges the entries. The
database is the truth: on start, and after any failure, the books are rebuilt from the open
orders, and commands are applied only while their rows are still pending (or, while a batch is
committing, not already applied by it), so a crash or a redelivered entry never loses or repeats
anything (docs/ENGINE.md).
"""
import logging
import sys
import time
from array import array
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Callable

import redis
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from accounts.models import LedgerEntry, SystemAccount
from accounts.services import system_account
from config.heap import freeze_long_lived
from matching import contracts, streams
from matching.book import (
    BUY, CR_FOK, CR_POST_ONLY, CR_STP, CR_UNFILLED, CR_USER, EV_AMEND, EV_CANCEL, EV_FILL, EV_REST, FOK, GTC,
    IOC, SELL, STP_CANCEL_RESTING, OrderBook, command_flags,
)
from matching.models import (
    HELD_STATUSES, Execution, Instrument, Order, OrderCommand, OrdStatus, OrdType, Side, TimeInForce, triggers_rising,
)
from matching import persistence, selectors
from matching.ids import time_ordered_uuid_texts
from matching.persistence import BatchWrite, ExecutionRow
from matching.signals import batch_committed, engine_started

log = logging.getLogger(__name__)

ADDED, REMOVED = Execution.Liquidity.ADDED.value, Execution.Liquidity.REMOVED.value
FEE, REALIZED_PNL = LedgerEntry.Kind.FEE.value, LedgerEntry.Kind.REALIZED_PNL.value
ZERO = Decimal(0)
FILLED, PARTIALLY_FILLED = OrdStatus.FILLED.value, OrdStatus.PARTIALLY_FILLED.value
# plain strings: an enum member is looked up on its class at every use, on the fill path ten thousand times
BUY_SIDE = Side.BUY.value
CONDITIONAL_TYPES = frozenset(t.value for t in (OrdType.STOP, OrdType.STOP_LIMIT, OrdType.MARKET_IF_TOUCHED,
                                                OrdType.LIMIT_IF_TOUCHED))
MARKET_TYPES = frozenset(t.value for t in (OrdType.MARKET, OrdType.STOP, OrdType.MARKET_IF_TOUCHED))
# While the streams still hold entries the sweep waits: an order stored seconds ago may simply be
# queued behind a long fan-out, and the stream brings it anyway. A lost entry waits at most this long.
MAX_SWEEP_INTERVAL = 10.0
# A batch holds at most this many orders and commands. A busy stream fills it; a quiet one makes
# small batches, so the limit costs no latency at a rate the engine keeps up with. Large batches
# write each trader's position and balance once for all their orders, and a copy fan-out of ten
# thousand orders in one transaction (1,000: 8,500 orders/s saturated; 10,000: 15,300).
DEFAULT_BATCH_SIZE = 10_000
# A batch this large means a backlog: the next one is matched while it commits (Engine.write).
BACKLOG_BATCH = 1_000
TIF_CODES = {TimeInForce.GOOD_TILL_CANCEL: GTC, TimeInForce.IMMEDIATE_OR_CANCEL: IOC, TimeInForce.FILL_OR_KILL: FOK}
CANCEL_TEXT = {
    CR_USER: "Canceled: Cancel from user",
    CR_UNFILLED: "Canceled: not fully filled at once (ImmediateOrCancel or market order)",
    CR_FOK: "Canceled: FillOrKill order could not be filled entirely",
    CR_POST_ONLY: "Canceled: Order had execInst of ParticipateDoNotInitiate",
    CR_STP: "Canceled: self-trade prevention",
}
# An order that meets a resting order of its own account cancels that one and goes on: the newer
# intention wins (a market maker's new quote replaces its old one, a triggered stop-loss is not cut
# short by the account's own bid), and there is no wash trade, no fee paid to oneself, and no account
# setting the last price, which marks every position, by trading with itself.
SELF_TRADE_PREVENTION = STP_CANCEL_RESTING
AMENDED_AWAY = "Canceled: amended to no more than its filled quantity, or than its position (ReduceOnly)"
# How many price levels a taker's reach is looked for in (Engine._levels_reached); beyond them, its limit
REACH_LEVELS = 200
# An order's part that only reduced the position holds no margin (docs/ENGINE.md, "Positions and margin")
REDUCE_ONLY_EXCEEDED = "Canceled: ReduceOnly order exceeded the position"
UNMARGINED_CUT = "Quantity cut: the position it would have reduced is smaller now, and it holds no margin to open one"
UNMARGINED_GONE = "Canceled: the position it would have reduced is gone, and it holds no margin to open one"
GAPPED_CUT = "Quantity cut: the price gapped past its trigger to where its margin covers less"
GAPPED_GONE = "Canceled: the price gapped past its trigger to where its margin covers none of it"


LIVE_ORDER_FIELDS = (
    "pk", "account_id", "side", "ord_type", "time_in_force", "exec_inst", "price", "stop_px", "protect_price",
    "peg_offset_value", "order_qty", "leaves_qty", "cum_qty", "cum_notional", "ord_status", "triggered",
    "margin_reserved", "priority", "text", "ord_rej_reason", "working_indicator", "instrument_id", "unmargined_qty",
)


@dataclass(slots=True)
class Command:
    """A cancel or amend as the engine reads it."""

    pk: int
    kind: str
    order_id: int
    instrument_id: int
    account_id: int
    order_status: str
    new_price: Decimal | None
    new_stop_px: Decimal | None
    new_order_qty: int | None  # an amend's size: the order's total, whatever has filled since
    margin_delta: Decimal
    new_margin: Decimal | None
    new_unmargined_qty: int | None  # with new_margin: the part of the order it does not cover
    new_peg_offset_value: Decimal | None
    text: str


@dataclass(slots=True)
class LiveOrder:
    """The engine's copy of an open order; the engine is its only writer while it runs."""

    pk: int
    account_id: int
    side: str
    ord_type: str
    time_in_force: str
    exec_inst: frozenset
    price: Decimal | None
    stop_px: Decimal | None
    protect_price: Decimal | None
    peg_offset_value: Decimal | None
    order_qty: int
    leaves_qty: int
    cum_qty: int
    cum_notional: Decimal
    ord_status: str
    triggered: str
    margin_reserved: Decimal
    priority: int | None
    text: str = ""
    ord_rej_reason: str = ""
    working: bool = False
    instrument_id: int = 0
    unmargined_qty: int = 0  # the part of leaves_qty that only reduces the position: it holds no margin

    @classmethod
    def load(cls, orders) -> list["LiveOrder"]:
        """The live copies of a queryset of orders, read as plain values (no model instances)."""
        return cls.from_rows(orders.values_list(*LIVE_ORDER_FIELDS))

    @classmethod
    def from_rows(cls, rows) -> list["LiveOrder"]:
        return [cls(pk, account_id, side, ord_type, tif, frozenset(filter(None, exec_inst.split(","))), *rest)
                for pk, account_id, side, ord_type, tif, exec_inst, *rest in rows]

    @property
    def reduce_only(self) -> bool:
        return "ReduceOnly" in self.exec_inst or "Close" in self.exec_inst

    @property
    def is_conditional(self) -> bool:
        return self.ord_type in CONDITIONAL_TYPES

    @property
    def avg_px(self) -> Decimal | None:
        return (self.cum_notional / self.cum_qty).quantize(Decimal("1e-8")) if self.cum_qty else None

    @property
    def sign(self) -> int:
        return 1 if self.side == BUY_SIDE else -1


@dataclass(slots=True)
class LivePosition:
    account_id: int
    qty: int = 0
    entry_value: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)
    cum_realized_pnl: Decimal = Decimal(0)
    opened_at: object = None


@dataclass
class Batch:
    """Everything one batch changes, written in one transaction."""

    orders: dict = field(default_factory=dict)  # pk -> LiveOrder
    now: object = field(default_factory=timezone.now)  # the time of the batch's executions
    stamp: str = ""  # now as ISO text: COPY writes it as it is, where it formats a datetime per row
    executions: list = field(default_factory=list)  # persistence.ExecutionRow
    touched_books: set = field(default_factory=set)  # instruments whose book changed
    execution_ids: list = field(default_factory=list)  # filled in when written
    positions: dict = field(default_factory=dict)  # (instrument_pk, account_id) -> LivePosition
    # (account_id, asset) -> [amount, order_margin, position_margin] deltas; margins also from positions
    balances: dict = field(default_factory=dict)
    # one ledger transaction per batch: the traders' entries, one per order and kind (naming the
    # execution, or the order when the batch filled it more than once), and per exchange account,
    # asset and kind one entry with the other side of all of them
    ledger: list = field(default_factory=list)  # (account, asset, amount, kind, reference)
    order_entries: dict = field(default_factory=dict)  # (order pk, kind) -> its entry's index in ledger
    system_ledger: dict = field(default_factory=dict)  # (account, asset, kind) -> amount
    commands: dict = field(default_factory=dict)  # pk -> (status, reason)
    instruments: set = field(default_factory=set)  # where something traded
    depth: dict = field(default_factory=dict)  # instrument -> its book's published depth when the batch was matched
    applied: list = field(default_factory=list)  # ("order" | "command", pk) applied by this batch
    new_orders: set = field(default_factory=set)  # orders that were PendingNew until this batch
    waiting: set = field(default_factory=set)  # the applied entries whose requests wait for a reply
    new_id: Callable[[], str] = field(default_factory=time_ordered_uuid_texts)  # execution and match ids (UUIDv7 text)

    def __post_init__(self):
        self.stamp = self.now.isoformat()

    def balance(self, account_id: int, asset: str) -> list:
        deltas = self.balances.get((account_id, asset))
        if deltas is None:  # not setdefault: its default list would be built on every call
            deltas = self.balances[(account_id, asset)] = [ZERO, ZERO, ZERO]
        return deltas


class SymbolState:
    """One instrument's book, its open and conditional orders, and its positions."""

    def __init__(self, instrument: Instrument):
        self.instrument = instrument
        self.pk = instrument.pk  # a model's .pk is a method call; the fill path reads it several times
        self.fees = (instrument.maker_fee, instrument.taker_fee)
        self.terms = instrument.terms
        self.asset = instrument.settle_asset_id
        self.unit = self.terms.settle_places
        self.book = OrderBook()
        self.orders: dict[int, LiveOrder] = {}  # resting in the book
        self.conditional: dict[int, LiveOrder] = {}  # waiting for their trigger
        # account -> its resting orders that lean on its position: reduce-only ones, and those with an
        # unmargined part; checked when the account's position moves (Engine._enforce_position_cover)
        self.leaning: dict[int, set[int]] = {}
        self.moved: set[int] = set()  # accounts to check: their position moved, or an order leans on it anew
        self.by_account: dict[int, set[int]] = {}  # account -> its orders in the book
        # resting reduce-only orders by side and price (ticks): a taker looks at the levels it reaches
        self.reduce_only_at: dict[str, dict[int, set[int]]] = {Side.BUY.value: {}, Side.SELL.value: {}}
        self.positions: dict[int, LivePosition] = {}
        self.last_price: Decimal | None = instrument.last_price
        self.triggers_checked_at = object()  # the last price every conditional order was checked against
        self.next_priority = 1
        self.published_levels: dict = {}  # the L2 last sent on the channel layer (matching.publish)
        self.ticks_of: dict[Decimal, int] = {}  # price -> ticks, for prices already checked

    def ticks(self, price: Decimal) -> int:
        ticks = self.ticks_of.get(price)
        if ticks is None:  # the exact conversion costs a few Decimal operations; prices repeat
            if len(self.ticks_of) >= 100_000:
                self.ticks_of.clear()
            ticks = self.ticks_of[price] = contracts.price_to_ticks(price, self.terms)
        return ticks

    def lots(self, qty: int) -> int:
        return qty // self.terms.lot_size

    def hold(self, order: LiveOrder) -> None:
        """An order goes into the book."""
        self.orders[order.pk] = order
        self.by_account.setdefault(order.account_id, set()).add(order.pk)
        self.list_reduce_only(order)
        self.lean(order)

    def release(self, order: LiveOrder) -> None:
        """An order leaves the book."""
        if self.orders.pop(order.pk, None) is not None:
            mine = self.by_account[order.account_id]
            mine.discard(order.pk)
            if not mine:
                del self.by_account[order.account_id]
            self.unlist_reduce_only(order)

    def list_reduce_only(self, order: LiveOrder) -> None:
        if order.reduce_only and order.price is not None:  # a market order never rests
            self.reduce_only_at[order.side].setdefault(self.ticks(order.price), set()).add(order.pk)

    def unlist_reduce_only(self, order: LiveOrder) -> None:
        if order.reduce_only and order.price is not None:
            at = self.reduce_only_at[order.side]
            ticks = self.ticks(order.price)
            pks = at.get(ticks)
            if pks is not None:
                pks.discard(order.pk)
                if not pks:
                    del at[ticks]

    def lean(self, order: LiveOrder) -> None:
        """A resting order that relies on its account's position to reduce it."""
        if order.reduce_only or order.unmargined_qty:
            self.leaning.setdefault(order.account_id, set()).add(order.pk)
            self.moved.add(order.account_id)

    def leaning_orders(self, account_id: int) -> list[LiveOrder]:
        """The account's resting orders that lean on its position."""
        pks = self.leaning.get(account_id)
        if not pks:
            return []
        pks.intersection_update(self.orders.keys())  # forget the ones that left the book
        if not pks:
            del self.leaning[account_id]
        return [self.orders[pk] for pk in pks]

    def reducible(self, order: LiveOrder) -> int:
        """What the position lets an order on its side reduce (negative: nothing, it is on that side)."""
        return -order.sign * self.position(order.account_id).qty

    def position(self, account_id: int) -> LivePosition:
        position = self.positions.get(account_id)
        if position is None:
            position = self.positions[account_id] = LivePosition(account_id)
        return position


@dataclass(slots=True)
class InFlight:
    """A batch handed to the writer thread: committed, then acknowledged and announced."""

    batch: Batch
    acks: dict | None
    entries: set  # its entries, and orders it applied ahead of their own entries
    commit: object = None  # the writer thread's two jobs (futures), run in this order
    announcement: object = None


# Prepared on the server once used this many times: psycopg's default, which Django turns off
# unless OPTIONS["prepare_threshold"] asks for it.
PREPARE_THRESHOLD = 5


def prepare_statements_on_the_server() -> None:
    """For this process's connections from now on (the engine's: one per thread). An engine sends the
    same few statements batch after batch; prepared, a paced batch skips parsing and planning them
    (paced p50 at 8,000 orders/s 16.9-17.3 -> 14.2-14.7 ms). Their results never change shape (named
    columns), so a migration that adds a column does not break them; one that changes a type they
    return needs the engine restarted, as it would anyway."""
    connections["default"].settings_dict.setdefault("OPTIONS", {}).setdefault("prepare_threshold", PREPARE_THRESHOLD)
    connections.close_all()


# pg_try_advisory_lock(ENGINE_LOCK_SPACE, instrument pk): held by the engine that owns the instrument
ENGINE_LOCK_SPACE = 0x454E47  # "ENG"


class SymbolTaken(RuntimeError):
    """Another engine owns one of the symbols."""


class SymbolLocks:
    """Each instrument's engine lock, held for as long as the engine runs: two engines on one book
    would each match and write it, filling orders twice and overwriting each other's positions.
    Session locks on a connection of their own, in autocommit (a transaction left open would make
    CREATE INDEX CONCURRENTLY wait for it for ever): a killed engine frees its symbols with its
    connection, and the engine stops if the connection is lost (held()). A pooler in transaction
    mode does not keep a session's locks: the engine connects directly, or through session mode."""

    CHECK_INTERVAL = 5.0  # seconds between checks that the locks are still held

    def __init__(self, instruments: list[Instrument]):
        import psycopg

        params = {k: v for k, v in connections["default"].get_connection_params().items()
                  if k not in ("cursor_factory", "context")}  # Django's own adaptation: not needed here
        self.connection = psycopg.connect(**params, autocommit=True)
        taken = [i.symbol for i in instruments if not self.connection.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", [ENGINE_LOCK_SPACE, i.pk]).fetchone()[0]]
        if taken:
            self.close()
            raise SymbolTaken(f"another engine is running {', '.join(taken)}")
        self.checked = time.monotonic()
        self.lost = False

    def held(self) -> bool:
        """False once the locks' connection is gone (checked every CHECK_INTERVAL seconds)."""
        if not self.lost and time.monotonic() - self.checked >= self.CHECK_INTERVAL:
            self.checked = time.monotonic()
            try:
                self.connection.execute("SELECT 1")
            except Exception:  # noqa: BLE001 - any failure means the locks may be gone
                log.error("the connection holding this engine's symbol locks is lost")
                self.lost = True
        return not self.lost

    def close(self) -> None:
        self.connection.close()


class Engine:
    def __init__(self, symbols: list[str] | None = None, consumer: str = "engine", batch_size: int = DEFAULT_BATCH_SIZE,
                 block_ms: int = 20, pipelined: bool = False):
        instruments = Instrument.objects.select_related("settle_asset").order_by("symbol")
        if symbols:
            instruments = instruments.filter(symbol__in=symbols)
            missing = set(symbols) - {i.symbol for i in instruments}
            if missing:
                raise ValueError(f"unknown symbols: {', '.join(sorted(missing))}")
        self.instrument_rows = list(instruments)
        if not self.instrument_rows:
            raise ValueError("no instruments to trade: run `manage.py create_instruments` first")
        self.consumer = consumer
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.states: dict[int, SymbolState] = {}
        self.by_symbol: dict[str, SymbolState] = {}
        self.last_sweep = 0.0
        self.suspects: set[tuple[str, int]] = set()  # the entries of the batch that failed last
        self.stale = True  # the books do not match the database until rebuild()
        self.pipelined = pipelined  # run() commits on a writer thread (its own database connection)
        self.writer: ThreadPoolExecutor | None = None  # commits batches while run() matches the next
        self.in_flight: InFlight | None = None  # the batch the writer is committing

    # ---------- start and recovery ----------

    def rebuild(self) -> None:
        """Loads every book, conditional order and position from the database."""
        self.states = {i.pk: SymbolState(i) for i in Instrument.objects.select_related("settle_asset")
                       .filter(pk__in=[i.pk for i in self.instrument_rows])}
        self.by_symbol = {s.instrument.symbol: s for s in self.states.values()}
        persistence.forget_closed_orders(list(self.states))
        for state in self.states.values():
            held = Order.objects.filter(held__instrument=state.instrument)
            resting = held.filter(ord_status__in=[OrdStatus.NEW, OrdStatus.PARTIALLY_FILLED]).order_by("priority", "pk")
            records = []
            for order in LiveOrder.load(resting):
                state.hold(order)
                flags = command_flags(post_only="ParticipateDoNotInitiate" in order.exec_inst, stp=SELF_TRADE_PREVENTION)
                records.extend((order.pk, order.account_id, BUY if order.side == Side.BUY else SELL,
                                state.ticks(order.price), state.lots(order.leaves_qty), flags))
                state.next_priority = max(state.next_priority, (order.priority or 0) + 1)
            state.book.restore(array("q", records).tobytes())
            bids, asks = state.book.depth(settings.PUBLISHED_DEPTH)
            state.published_levels = {**{("Buy", p): q for p, q, _ in bids}, **{("Sell", p): q for p, q, _ in asks}}
            untriggered = held.filter(ord_status=OrdStatus.UNTRIGGERED)
            for order in LiveOrder.load(untriggered.order_by("pk")):
                state.conditional[order.pk] = order
            for account_id, qty, entry, realized, cum, opened in selectors.engine_positions(state.instrument.pk):
                state.positions[account_id] = LivePosition(account_id, qty, entry, realized, cum, opened)
        self.write_terms = {pk: (state.terms, state.asset, min(settings.DEFAULT_LEVERAGE, state.instrument.max_leverage))
                            for pk, state in self.states.items()}
        self.fees_account_id = system_account(SystemAccount.FEES).pk
        self.clearing_account_id = system_account(SystemAccount.CLEARING).pk
        self._ensure_groups()
        self.stale = False
        log.info("engine ready: %s", ", ".join(f"{s.instrument.symbol} ({len(s.orders)} resting)"
                                                for s in self.states.values()))

    def _ensure_groups(self) -> None:
        client = streams.client()
        for symbol in self.by_symbol:
            try:
                client.xgroup_create(streams.stream_key(symbol), streams.GROUP, id="0", mkstream=True)
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    # ---------- the loop ----------

    def run(self, stop=lambda: False) -> None:
        """Applies batches until stop() is true; a failed batch is retried after a rebuild.

        Pipelined (the runengine command): under a backlog (batch N full, the rest of a read that
        took all it asked for, or a batch of BACKLOG_BATCH), a writer thread commits N on its own
        connection while batch N+1 is matched in memory. The halves are about equal: matching is
        Python, the write mostly PostgreSQL, on the other core. Any other batch is committed
        before the next read. The writer thread acknowledges N's stream entries,
        wakes its requests and announces its executions as soon as N commits, and before N+1's;
        if the commit fails, both are rebuilt from the database and come again from the stream."""
        self.stale = True
        replay = True
        engine_started.send_robust(sender=Engine, engine=self)  # a failing receiver must not stop the engine
        if self.pipelined:
            self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-writer")
        try:
            while not stop():
                try:
                    if self.stale:
                        self.drop_in_flight()
                        self.rebuild()
                        # the books' orders and positions live on: collections need not walk them
                        # (p99 latency 62 ms before, 43 ms after; config/heap.py)
                        freeze_long_lived()
                        replay = True
                    if replay:
                        self.process_pending_entries()
                        replay = False
                    self.step()
                except (redis.ConnectionError, redis.TimeoutError):
                    log.warning("redis unavailable; retrying")
                    time.sleep(0.5)
                    replay = True
                except redis.ResponseError as error:
                    if "NOGROUP" not in str(error):
                        raise
                    self._ensure_groups()  # Redis restarted empty: the sweep recovers what was queued
                except Exception:  # rolled back: rebuild, then the unacknowledged entries come again
                    log.exception("engine step failed")
                    time.sleep(1)
                    self.stale = replay = True
            self.finish_in_flight()
        finally:
            self.drop_in_flight()
            if self.writer is not None:
                self.writer.submit(connections.close_all).result()  # the writer thread's own connection
                self.writer.shutdown(wait=True)
                self.writer = None

    def step(self) -> int:
        """Reads and applies new stream entries; returns how many entries it read.

        With a batch committing, the read does not block: if nothing came, that batch is finished
        (acknowledged, announced) at once. Once the stream is drained, a sweep applies what was
        stored but never reached the stream."""
        keys = {streams.stream_key(symbol): ">" for symbol in self.by_symbol}
        read = streams.read_entries(self.consumer, keys, self.batch_size, None if self.in_flight else self.block_ms)
        self.apply_stream_entries(read)
        if not read:
            self.finish_in_flight()
        since_sweep = time.monotonic() - self.last_sweep
        if len(read) < self.batch_size and since_sweep > 1.0 and (
                since_sweep > MAX_SWEEP_INTERVAL or streams.unread(list(keys)) == 0):
            self.sweep()
        return len(read)

    def process_pending_entries(self) -> None:
        """Entries delivered before a crash but never acknowledged are read again from id 0."""
        while True:
            keys = {streams.stream_key(symbol): "0" for symbol in self.by_symbol}
            read = streams.read_entries(self.consumer, keys, self.batch_size)
            if not read:
                return
            self.apply_stream_entries(read)

    def apply_stream_entries(self, read: list[tuple]) -> None:
        """Applies the entries' orders and commands in batches of about batch_size; an entry is
        acknowledged once the batch holding all its ids has committed."""
        # A read that took from a stream as many entries as it asked for left more there: a backlog,
        # even for the read's last batch, which holds only what remained of it (an entry holds a run
        # of orders or of commands, so a read of batch_size entries makes several batches). So is a
        # batch of BACKLOG_BATCH: commands came faster than one match-then-commit cycle took.
        backlog = (len(read) >= self.batch_size
                   and max(Counter(stream for stream, *_ in read).values()) >= self.batch_size)
        entries, acks, waiting = [], {}, set()
        for stream, entry_id, kind, pks, wants_reply in read:
            acks.setdefault(stream, []).append(entry_id)
            if kind in ("order", "command"):
                entries.extend((kind, pk) for pk in pks)
                if wants_reply:
                    waiting.update((kind, pk) for pk in pks)
            if len(entries) >= self.batch_size:  # a full batch: write() overlaps it by its size
                self.apply_batch(entries, waiting, acks)
                entries, acks, waiting = [], {}, set()
        if acks:
            self.apply_batch(entries, waiting, acks, backlog=backlog)

    def apply_batch(self, entries: list[tuple[str, int]], waiting: set, acks: dict | None,
                    backlog: bool = False) -> None:
        """Applies, commits and acknowledges a batch. The entries of a batch that failed come again
        after the rebuild; then each is applied on its own, and one that fails again is rejected,
        so that one bad entry never stops the engine. Under a backlog, the next batch is matched
        while this one commits (write)."""
        if self.suspects.isdisjoint(entries):
            try:
                batch = self.prepare(entries, waiting)
            except Exception:
                self.suspects = set(entries)
                raise
            self.write(batch, entries, acks, backlog)
            return
        self.finish_in_flight()
        for entry in entries:
            try:
                batch = self.prepare([entry], waiting)
                self.commit(batch)
            except Exception:
                log.exception("%s %s cannot be applied: it is rejected", *entry)
                self.rebuild()
                batch = self.reject_entry(*entry)
            self.suspects.discard(entry)
            self.after_commit(batch)
        self.after_commit(Batch(), acks)

    def write(self, batch: Batch, entries: list, acks: dict | None, backlog: bool = False) -> None:
        """Commits the batch: on the writer thread when run() is running, else here and now."""
        if self.writer is None:
            try:
                self.commit(batch)
            except Exception:
                self.suspects = set(entries)
                raise
            self.after_commit(batch, acks)
            return
        try:
            rows = self.write_of(batch)  # plain values now: the next batch changes the live orders
        except Exception:  # it takes keys from the database: the batch is in the books, not written
            self.stale = True
            self.suspects = set(entries)
            raise
        try:
            self.finish_in_flight()  # the previous batch is committed and announced before this one
        except Exception:
            self.stale = True  # this batch is in the books but will not be written: rebuild
            raise
        # what the database will show as pending until this commits: the entries, and any order a
        # command applied ahead of its own entry
        in_flight = self.in_flight = InFlight(batch, acks, set(entries) | set(batch.applied))
        in_flight.commit = self.writer.submit(self.commit, batch, rows)
        # announced as soon as it commits, not once the next batch is matched; one thread does
        # both jobs, so batches are announced in order
        in_flight.announcement = self.writer.submit(self._announce_in_flight, in_flight)
        if not backlog and len(entries) < min(BACKLOG_BATCH, self.batch_size):
            # No backlog: matching the next batch beside this commit would take the second core
            # from PostgreSQL and the order senders (paced at 8,000 orders/s, p99 42-68 ms serial
            # against 64-70 ms overlapped). A backlog (a full batch, the rest of a full read, a
            # batch of BACKLOG_BATCH) is drained faster overlapped: saturated 22,200-25,200 orders/s
            # with only full batches overlapped, 25,500-27,500 now; paced at 14,000/s, p99 626 ->
            # 322 ms. The announcement need not be waited for: the next read goes on beside it.
            wait([in_flight.commit])
            if in_flight.commit.exception() is not None:
                self.finish_in_flight()  # raises it

    def _announce_in_flight(self, in_flight: InFlight) -> None:
        # the commit's job ran before this one, on this thread: its future is done
        if in_flight.commit.exception() is None:
            self.after_commit(in_flight.batch, in_flight.acks)

    def finish_in_flight(self) -> None:
        """Waits until the batch on the writer thread is committed, acknowledged and announced."""
        if self.in_flight is None:
            return
        in_flight, self.in_flight = self.in_flight, None
        try:
            in_flight.commit.result()  # a failed commit raises here, with self.stale set
        except Exception:
            self.suspects = in_flight.entries
            raise
        in_flight.announcement.result()  # if it failed, the entries come again and are skipped

    def drop_in_flight(self) -> None:
        """Lets a committing batch end before the books are rebuilt from the database; if it
        committed but was not announced, it is announced now (its leader executions must be copied)."""
        if self.in_flight is None:
            return
        in_flight, self.in_flight = self.in_flight, None
        wait([in_flight.commit, in_flight.announcement])
        if in_flight.commit.exception() is None and in_flight.announcement.exception() is not None:
            try:
                self.after_commit(in_flight.batch, in_flight.acks)
            except Exception:  # its entries come again and are skipped; the catch-up copies its fills
                log.exception("a committed batch could not be acknowledged or announced")

    def reject_entry(self, kind: str, pk: int) -> Batch:
        """Rejects a pending order or command that the engine cannot apply, releasing its margin."""
        batch = Batch()
        reason = "Rejected: the engine could not apply it (an error is logged)"
        instruments = list(self.states)
        if kind == "order":
            for order in LiveOrder.from_rows(persistence.pending_orders([pk], instruments, LIVE_ORDER_FIELDS)):
                batch.new_orders.add(order.pk)
                self._close(self.states[order.instrument_id], order, batch, OrdStatus.REJECTED, reason, rejected=True)
                batch.applied.append(("order", pk))
        else:
            for row in persistence.pending_commands([pk], instruments):
                command = Command(*row)
                self._reject_command(self.states[command.instrument_id], command, batch, reason)
                batch.applied.append(("command", pk))
        self.commit(batch)
        return batch

    def sweep(self) -> None:
        """Applies stored orders and commands whose stream entry never arrived (lost or Redis restarted)."""
        self.last_sweep = time.monotonic()
        applied = self.apply_stored(older_than=timezone.now() - timedelta(seconds=settings.ENGINE_SWEEP_SECONDS))
        if applied:
            log.info("sweep: applied %d orders and commands that had no stream entry", applied)

    def apply_stored(self, older_than=None) -> int:
        """Applies pending orders and commands straight from the database, in the order they were stored."""
        self.finish_in_flight()  # until it commits, the database shows its orders as still pending
        instruments = list(self.states)
        commands = OrderCommand.objects.filter(order__instrument__in=instruments, status=OrderCommand.Status.PENDING)
        if older_than is not None:
            commands = commands.filter(created_at__lt=older_than)
        stored = [(at, "order", pk) for pk, at in persistence.stored_pending_orders(instruments, older_than, self.batch_size)]
        # by time: commands' keys come in blocks, one per process, so a lower key may be a later command
        stored += [(at, "command", pk) for pk, at in commands.order_by("created_at", "pk")
                   .values_list("pk", "created_at")[:self.batch_size]]
        entries = [(kind, pk) for _, kind, pk in sorted(stored)][:self.batch_size]
        if entries:
            self.apply_batch(entries, set(), None)
        return len(entries)

    # ---------- a batch ----------

    def prepare(self, entries: list[tuple[str, int]], waiting: set = frozenset()) -> Batch:
        """Applies entries to the books in memory; the batch holds everything to write."""
        batch = Batch(waiting=waiting)
        if self.in_flight is not None:  # the database does not know yet what that batch applied
            entries = [entry for entry in entries if entry not in self.in_flight.entries]
        try:
            instruments = list(self.states)
            pending_orders = {o.pk: o for o in LiveOrder.from_rows(persistence.pending_orders(
                [pk for kind, pk in entries if kind == "order"], instruments,
                LIVE_ORDER_FIELDS))}
            commands = {c[0]: Command(*c) for c in persistence.pending_commands(
                [pk for kind, pk in entries if kind == "command"], instruments)}
            for kind, pk in entries:
                if kind == "order" and pk in pending_orders:
                    order = pending_orders.pop(pk)
                    self.apply_new_order(self.states[order.instrument_id], order, batch)
                    batch.applied.append(("order", pk))
                elif kind == "command" and pk in commands:
                    self.apply_command(commands.pop(pk), batch, pending_orders)
                    batch.applied.append(("command", pk))
            for instrument_pk in batch.touched_books | batch.instruments:  # as matched, for publishing
                batch.depth[instrument_pk] = self.states[instrument_pk].book.depth(settings.PUBLISHED_DEPTH)
        except Exception:
            log.exception("batch failed before writing; the books are rebuilt from the database")
            self.stale = True
            raise
        return batch

    def commit(self, batch: Batch, rows: BatchWrite | None = None) -> None:
        """Writes the batch (its rows taken now, unless given) in one transaction."""
        if not batch.applied:
            return
        try:
            with transaction.atomic():
                batch.execution_ids = persistence.write_batch(rows or self.write_of(batch))
        except Exception:
            log.exception("batch failed: nothing of it was written; the books are rebuilt from the database")
            self.stale = True
            raise

    def write_of(self, batch: Batch) -> BatchWrite:
        """The batch's rows as they stand now, keys taken and bulk rows formatted, for
        persistence.write_batch. With the writer thread this runs while the previous batch commits,
        so the writer mostly sends."""
        orders = [(o.pk, o.ord_status, o.leaves_qty, o.cum_qty, o.order_qty, o.cum_notional, o.avg_px, o.price,
                   o.stop_px, o.protect_price, o.triggered, o.working, o.ord_rej_reason[:200], o.text[:200],
                   o.margin_reserved, o.priority, o.unmargined_qty, o.peg_offset_value) for o in batch.orders.values()]
        positions = [(account_id, instrument_pk, p.qty, p.entry_value, p.realized_pnl, p.cum_realized_pnl, p.opened_at)
                     for (instrument_pk, account_id), p in sorted(batch.positions.items())]
        prices = []
        for instrument_pk, state in self.states.items():
            bid, ask = state.book.best_bid(), state.book.best_ask()
            tick = state.terms.tick_size
            prices.append((instrument_pk, state.last_price, state.last_price,
                           bid * tick if bid else None, ask * tick if ask else None))
        # which orders enter, change or leave PendingOrder and HeldOrder: an order the batch did
        # not apply was held before it (the engine's memory holds exactly the HeldOrder rows)
        held_added, held_changed, held_removed = [], [], []
        for order in batch.orders.values():
            if order.ord_status not in HELD_STATUSES:
                if order.pk not in batch.new_orders:
                    held_removed.append(order.pk)
            elif order.pk in batch.new_orders:
                held_added.append((order.pk, order.account_id, order.instrument_id, order.side, order.price,
                                   order.leaves_qty, order.ord_status))
            else:
                held_changed.append((order.pk, order.price, order.leaves_qty, order.ord_status))
        return persistence.prepare_write(
            orders=orders, executions=batch.executions, positions=positions, balances=batch.balances,
            ledger=batch.ledger, system_ledger=batch.system_ledger,
            commands=[(pk, status, reason[:200]) for pk, (status, reason) in batch.commands.items()], prices=prices,
            terms=self.write_terms, open_orders=persistence.OpenOrderChanges(
                sorted(batch.new_orders), sorted(held_added), sorted(held_changed), sorted(held_removed)))

    def after_commit(self, batch: Batch, acks: dict | None = None) -> None:
        """Acknowledges the stream entries, wakes waiting requests and announces the batch."""
        if acks:
            pipe = streams.client().pipeline(transaction=False)
            for stream, ids in acks.items():
                pipe.xack(stream, streams.GROUP, *ids)
                pipe.xdel(stream, *ids)
            pipe.execute()
        replies = [entry for entry in batch.applied if entry in batch.waiting]
        if replies:
            try:
                streams.notify_applied(replies)
            except redis.RedisError:
                pass  # waiting requests time out and read the order from the database
        if batch.applied:
            batch_committed.send(sender=Engine, batch=batch, engine=self)

    # ---------- orders ----------

    def apply_new_order(self, state: SymbolState, order: LiveOrder, batch: Batch) -> None:
        batch.orders[order.pk] = order
        batch.new_orders.add(order.pk)
        if order.is_conditional and not order.triggered:
            self._peg(state, order)
            order.ord_status = OrdStatus.UNTRIGGERED
            state.conditional[order.pk] = order
            self._check_conditional(state, order, batch)
            return
        if not self._fit_to_position(state, order, batch):
            return
        self._send_to_book(state, order, batch)
        self._after_trades(state, batch)

    def _fit_to_position(self, state: SymbolState, order: LiveOrder, batch: Batch) -> bool:
        """An order about to enter the book may rely on the position only as it is now: a reduce-only
        one is cut to it, and so is the part of another that holds no margin. False: nothing is left."""
        if order.reduce_only:
            return self._fit_reduce_only(state, order, batch)
        if order.unmargined_qty:
            excess = order.unmargined_qty - max(state.reducible(order), 0)
            if excess > 0:
                order.unmargined_qty -= excess
                return self._cut_before_entry(state, order, excess, UNMARGINED_CUT, UNMARGINED_GONE, batch)
        return True

    def _cut_before_entry(self, state: SymbolState, order: LiveOrder, qty: int, cut_text: str, gone_text: str,
                          batch: Batch) -> bool:
        """Takes qty off an order about to enter the book; False when that is all of it (canceled)."""
        order.leaves_qty -= qty
        order.order_qty -= qty
        if order.leaves_qty <= 0:
            self._close(state, order, batch, OrdStatus.CANCELED, gone_text)
            return False
        order.text = cut_text
        return True

    def _fit_reduce_only(self, state: SymbolState, order: LiveOrder, batch: Batch) -> bool:
        """A reduce-only order is cut to the position; with nothing to reduce it is canceled. The
        account's other reduce-only orders do not count here: a triggered stop-loss closes the
        position and a take-profit resting beside it is cut then (_enforce_position_cover)."""
        reducible = state.reducible(order)
        if "Close" in order.exec_inst and order.order_qty == 0:
            order.order_qty = order.leaves_qty = max(reducible, 0)
        if reducible <= 0:
            self._close(state, order, batch, OrdStatus.CANCELED,
                        "Canceled: ReduceOnly order would not reduce the position")
            return False
        if order.leaves_qty > reducible:
            order.order_qty -= order.leaves_qty - reducible
            order.leaves_qty = reducible
            order.text = "ReduceOnly: quantity cut to the position"
        return True

    def _send_to_book(self, state: SymbolState, order: LiveOrder, batch: Batch) -> None:
        side = BUY if order.side == BUY_SIDE else SELL
        lots = state.lots(order.leaves_qty)
        tif = TIF_CODES[order.time_in_force]
        try:
            if order.ord_type in MARKET_TYPES:
                protect = order.protect_price
                if protect is None and state.last_price is not None:
                    from matching.services import market_protection_price
                    protect = market_protection_price(state.instrument, order.side, state.last_price)
                    # one that reduces keeps the band of the moment: a stop-loss must execute
                    if order.stop_px is not None and not order.reduce_only and state.reducible(order) <= 0:
                        protect = self._bound_to_its_margin(state, order, protect, batch)
                        if protect is None:
                            return
                        lots = state.lots(order.leaves_qty)
                    order.protect_price = protect
                limit = state.ticks(protect) if protect else 0
                self._keep_reduce_only_in_sweep(state, order, limit, lots, batch)
                events = state.book.market(order.pk, order.account_id, side, lots, limit,
                                           tif if tif != GTC else IOC, SELF_TRADE_PREVENTION)
            else:
                post_only = "ParticipateDoNotInitiate" in order.exec_inst
                if not post_only:
                    self._keep_reduce_only_in_sweep(state, order, state.ticks(order.price), lots, batch)
                events = state.book.place(order.pk, order.account_id, side, state.ticks(order.price), lots, tif,
                                          post_only, SELF_TRADE_PREVENTION)
        except (ValueError, KeyError, TypeError) as error:
            self._close(state, order, batch, OrdStatus.REJECTED, f"Rejected: {error}", rejected=True)
            return
        state.hold(order)
        self._apply_events(state, events, batch)

    def _bound_to_its_margin(self, state: SymbolState, order: LiveOrder, protect: Decimal,
                             batch: Batch) -> Decimal | None:
        """A triggered order that only opens a position holds margin for it at the price its margin was
        reserved at (services.margin_price about its trigger). Where the price gapped past the
        trigger, a fill could make that position worth more: a linear buy or an inverse sell then
        fills no further than that price; a linear sell or an inverse buy, which fills from the best
        opposite price on, is cut to what its margin covers there. Returns the protection price, or
        None when nothing is left (the order is canceled)."""
        from matching.services import margin_price

        reserved_at = margin_price(state.instrument, order.side, price=None, stop_px=order.stop_px)
        buying = order.side == BUY_SIDE
        if buying != state.terms.is_inverse:  # the higher (linear) or lower (inverse) the fill, the more
            return min(protect, reserved_at) if buying else max(protect, reserved_at)
        best = state.book.best_ask() if buying else state.book.best_bid()
        if not best:
            return protect
        price = best * state.terms.tick_size
        covered = price / reserved_at if buying else reserved_at / price  # the value there against the margin's
        if covered >= 1:
            return protect
        cut = order.leaves_qty - int(state.lots(order.leaves_qty) * covered) * state.terms.lot_size
        return protect if self._cut_before_entry(state, order, cut, GAPPED_CUT, GAPPED_GONE, batch) else None

    def _keep_reduce_only_in_sweep(self, state: SymbolState, taker: LiveOrder, limit: int, lots: int,
                                   batch: Batch) -> None:
        """One taker fills an account's resting orders in book order, several at once, and the cut
        after its trades comes too late for a reduce-only order behind the account's other orders
        that reduce the same position: it would fill once that position is gone and open one. So,
        before the taker goes in, the reduce-only orders it can reach are cut to what the account's
        orders ahead of them in the book leave of the position."""
        makers_side = Side.SELL.value if taker.side == BUY_SIDE else BUY_SIDE
        at = state.reduce_only_at[makers_side]
        if not at:
            return
        crossed, beyond = self._levels_reached(state, taker, limit, lots)
        if not crossed:
            return
        buying = taker.side == BUY_SIDE
        farthest = crossed[-1] if beyond is None else beyond

        def reached(ticks: int) -> bool:
            return ticks <= farthest if buying else ticks >= farthest

        accounts = set()
        for ticks in (crossed if beyond is None else [t for t in at if reached(t)]):
            for pk in at.get(ticks, ()):
                accounts.add(state.orders[pk].account_id)
        accounts.discard(taker.account_id)  # its own orders meet self-trade prevention instead
        for account_id in accounts:
            mine = [o for o in (state.orders[pk] for pk in state.by_account[account_id])
                    if o.side == makers_side and reached(state.ticks(o.price))]
            mine.sort(key=lambda o: (o.price if buying else -o.price, o.priority or 0))  # the book's order
            room = max(state.reducible(mine[0]), 0)
            for order in mine:  # each fills, and reduces the position, before the next
                if order.reduce_only:
                    room = self._keep_to_room(state, order, room, batch)
                else:
                    room -= min(order.leaves_qty, room)

    @staticmethod
    def _levels_reached(state: SymbolState, taker: LiveOrder, limit: int, lots: int) -> tuple[list[int], int | None]:
        """The price levels (ticks, best first) a taker can fill at: until its size or its limit (0:
        none) runs out. When it may go beyond the levels looked at, also the farthest price it may
        reach (else None). Reduce-only orders do not count as size (they may be cut before it
        comes), nor do the taker's own orders, which self-trade prevention cancels instead."""
        buying = taker.side == BUY_SIDE
        makers_side = Side.SELL.value if buying else BUY_SIDE
        listed = state.reduce_only_at[makers_side]
        own: dict[int, int] = {}  # ticks -> the taker's own quantity there
        for pk in state.by_account.get(taker.account_id, ()):
            order = state.orders[pk]
            if order.side == makers_side:
                ticks = state.ticks(order.price)
                own[ticks] = own.get(ticks, 0) + order.leaves_qty
        for depth in (8, REACH_LEVELS):  # a taker mostly reaches the first few
            bids, asks = state.book.depth(depth)
            levels = asks if buying else bids
            crossed, size = [], 0
            for price, qty, _ in levels:
                if limit and (price > limit if buying else price < limit):
                    return crossed, None
                crossed.append(price)
                size += qty - state.lots(own.get(price, 0) + sum(state.orders[pk].leaves_qty
                                                                 for pk in listed.get(price, ())))
                if size >= lots:
                    return crossed, None
            if len(levels) < depth:  # it crosses the whole side
                return crossed, None
        return crossed, limit or (sys.maxsize if buying else 0)

    def _apply_events(self, state: SymbolState, events, batch: Batch) -> None:
        if events:
            batch.touched_books.add(state.pk)
        for kind, order_pk, other, price, qty, info in events:
            if kind == EV_FILL:
                self._fill(state, state.orders[order_pk], state.orders[other], price * state.terms.tick_size,
                           qty * state.terms.lot_size, batch)
            elif kind == EV_REST:
                order = state.orders[order_pk]
                order.priority = state.next_priority
                state.next_priority += 1
                order.working = True
                if order.ord_status in (OrdStatus.PENDING_NEW, OrdStatus.UNTRIGGERED):
                    order.ord_status = OrdStatus.NEW
                batch.orders[order.pk] = order
            elif kind == EV_CANCEL:
                order = state.orders[order_pk]
                self._close(state, order, batch, OrdStatus.CANCELED, CANCEL_TEXT.get(info, "Canceled"))
            elif kind == EV_AMEND:
                order = state.orders[order_pk]
                state.unlist_reduce_only(order)
                order.price = price * state.terms.tick_size
                state.list_reduce_only(order)
                order.leaves_qty = qty * state.terms.lot_size
                order.order_qty = order.cum_qty + order.leaves_qty
                if not info:
                    order.priority = state.next_priority
                    state.next_priority += 1
                batch.orders[order.pk] = order

    def _close(self, state: SymbolState, order: LiveOrder, batch: Batch, status: str, text: str,
               rejected: bool = False) -> None:
        """Ends an order: its margin is released and it leaves the engine's memory."""
        order.ord_status = status
        order.leaves_qty = order.unmargined_qty = 0
        order.working = False
        if rejected:
            order.ord_rej_reason = text
        order.text = text
        self._release_margin(state, order, order.margin_reserved, batch)
        state.release(order)
        state.conditional.pop(order.pk, None)
        batch.orders[order.pk] = order

    def _release_margin(self, state: SymbolState, order: LiveOrder, amount: Decimal, batch: Batch) -> None:
        if amount:
            order.margin_reserved -= amount
            batch.balance(order.account_id, state.asset)[1] -= amount

    def _fill(self, state: SymbolState, taker: LiveOrder, maker: LiveOrder, price: Decimal, qty: int,
              batch: Batch) -> None:
        """Both sides of one match: orders, margin, positions, an execution each, and one ledger transaction."""
        now = batch.now
        new_id = batch.new_id
        match_id = new_id()
        instrument_pk, asset, terms = state.pk, state.asset, state.terms
        maker_fee, taker_fee = state.fees
        value = contracts.contract_value(qty, price, terms)  # the same for both sides: their fees and positions
        for order, liquidity, rate in ((maker, ADDED, maker_fee), (taker, REMOVED, taker_fee)):
            account_id = order.account_id
            position = state.position(account_id)
            # the margin reserved covers the order's margined part: a fill releases it as it fills that part
            margined_before, margined_filled = order.leaves_qty, qty
            unmargined = order.unmargined_qty
            if unmargined:
                reduced = min(unmargined, qty, max(state.reducible(order), 0))
                if margined_before > unmargined:  # else its reservation is the fee alone, released by qty
                    margined_before -= unmargined
                    margined_filled = min(qty - reduced, margined_before)
                unmargined -= reduced
            order.leaves_qty -= qty
            order.cum_qty += qty
            order.cum_notional += qty * price
            if order.leaves_qty == 0:
                order.ord_status = FILLED
                order.working = False
                release = order.margin_reserved
                state.release(order)
            else:
                order.ord_status = PARTIALLY_FILLED
                release = (order.margin_reserved * margined_filled / margined_before).quantize(state.unit, ROUND_FLOOR)
            if order.unmargined_qty:
                order.unmargined_qty = min(unmargined, order.leaves_qty)
            self._release_margin(state, order, release, batch)
            batch.orders[order.pk] = order
            state.moved.add(account_id)
            change = contracts.apply_fill(position.qty, position.entry_value, qty if order.side == BUY_SIDE else -qty,
                                          price, terms, value)
            realized = change.realized_pnl
            if realized:  # the position's until it closes (a flip closes it too); the account's for ever
                position.realized_pnl += realized
                position.cum_realized_pnl += realized
            if position.qty == 0 or (change.qty and (position.qty > 0) != (change.qty > 0)):
                position.opened_at = now  # a new position: its realized PnL starts again
                position.realized_pnl = ZERO
            elif change.qty == 0:
                position.opened_at = None  # closed: its realized PnL stays until the next one opens
            position.qty, position.entry_value = change.qty, change.entry_value
            batch.positions[(instrument_pk, account_id)] = position
            fee = contracts.fee_on_value(value, rate, terms)
            exec_id = new_id()
            if fee:
                self._post(batch, FEE, order.pk, exec_id, asset, account_id, -fee, self.fees_account_id)
            if realized:
                self._post(batch, REALIZED_PNL, order.pk, exec_id, asset, account_id, realized, self.clearing_account_id)
            batch.executions.append(ExecutionRow(
                exec_id, order.pk, account_id, instrument_pk, match_id, order.side, qty, price, "Trade", liquidity,
                rate, fee, realized, order.leaves_qty, order.cum_qty, order.ord_status, position.qty, batch.stamp))
        state.last_price = price
        batch.instruments.add(instrument_pk)

    @staticmethod
    def _post(batch: Batch, kind: str, order_pk: int, exec_id: str, asset: str, account_id: int, amount: Decimal,
              system_account_id: int) -> None:
        """A trader's ledger entry for a fill; its other side, on an exchange account, is summed over
        the batch. An order's fills in one batch make one entry of each kind, which names the order
        once there are two: a resting order taken by ten thousand copies is not ten thousand entries."""
        index = batch.order_entries.get((order_pk, kind))
        if index is None:
            batch.order_entries[(order_pk, kind)] = len(batch.ledger)
            batch.ledger.append((account_id, asset, amount, kind, f"execution:{exec_id}"))
        else:
            total = batch.ledger[index][2] + amount
            batch.ledger[index] = (account_id, asset, total, kind, f"order:{order_pk}")
        batch.balance(account_id, asset)[0] += amount
        key = (system_account_id, asset, kind)  # its balance follows from these sums (prepare_write)
        batch.system_ledger[key] = batch.system_ledger.get(key, ZERO) - amount

    def _after_trades(self, state: SymbolState, batch: Batch) -> None:
        # Triggers and trailing stops follow the price alone: at an unchanged price there is nothing to
        # check (a new or amended conditional order is checked on its own), and ten thousand copied
        # positions' stops are not walked after each of ten thousand copied orders.
        self._enforce_position_cover(state, batch)  # first: an order triggered now must find them cut
        if state.last_price != state.triggers_checked_at:
            self._check_triggers(state, batch)

    # ---------- conditional orders ----------

    def _trigger_price(self, state: SymbolState, order: LiveOrder) -> Decimal | None:
        # Mark and index price follow the last price until the risk engine publishes its own.
        return state.last_price

    def _crossed(self, state: SymbolState, order: LiveOrder) -> bool:
        price = self._trigger_price(state, order)
        if price is None or order.stop_px is None:
            return False
        return price >= order.stop_px if triggers_rising(order.side, order.ord_type) else price <= order.stop_px

    def _check_conditional(self, state: SymbolState, order: LiveOrder, batch: Batch) -> None:
        """A new or amended conditional order. The others were checked at this very price after the
        last trade, so only this one can fire; ten thousand copied stops placed at once are not each
        a walk over all the others."""
        if state.triggers_checked_at != state.last_price or self._crossed(state, order):
            self._check_triggers(state, batch)  # fires it, with any other crossed one, in order
        else:
            self._trail_order(state, order, batch)

    def _check_triggers(self, state: SymbolState, batch: Batch) -> None:
        """Triggers conditional orders whose stop price was crossed, nearest first, each once."""
        for _ in range(len(state.conditional) + 1):
            fired = [(abs(self._trigger_price(state, order) - order.stop_px), order.pk, order)
                     for order in state.conditional.values() if self._crossed(state, order)]
            if not fired:
                self._trail(state, batch)
                state.triggers_checked_at = state.last_price
                return
            fired.sort(key=lambda item: (-item[0], item[1]))  # crossed first: farthest behind the price
            for _, _, order in fired:
                state.conditional.pop(order.pk, None)
                order.triggered = "StopOrderTriggered"
                order.ord_status = OrdStatus.NEW
                batch.orders[order.pk] = order
                if not self._fit_to_position(state, order, batch):
                    continue
                self._send_to_book(state, order, batch)
            self._enforce_position_cover(state, batch)

    def _trail(self, state: SymbolState, batch: Batch) -> None:
        """Trailing stops follow the price by their offset, never back."""
        for order in state.conditional.values():
            self._trail_order(state, order, batch)

    def _trail_order(self, state: SymbolState, order: LiveOrder, batch: Batch) -> None:
        if state.last_price is None or order.peg_offset_value is None:
            return
        candidate = state.last_price + order.peg_offset_value
        # one triggered by a rising price follows a falling one down, and the other way round
        if (candidate < order.stop_px) if triggers_rising(order.side, order.ord_type) else (candidate > order.stop_px):
            order.stop_px = candidate
            batch.orders[order.pk] = order

    @staticmethod
    def _peg(state: SymbolState, order: LiveOrder) -> None:
        """A trailing order starts at its offset from the price as the engine has it: the web's may be
        a batch or more behind, and a stop pegged there could trigger the moment it arrives."""
        if order.peg_offset_value is not None and state.last_price is not None:
            if state.last_price + order.peg_offset_value > 0:
                order.stop_px = state.last_price + order.peg_offset_value

    def _enforce_position_cover(self, state: SymbolState, batch: Batch) -> None:
        """The resting orders that lean on a position never need more of it than there is, so none can
        open a position without margin when it fills: reduce-only orders first, then the parts of
        other orders that hold no margin; within each, as BitMEX does, the least aggressive price is
        cut first (a take-profit far away before a stop-loss triggered at the market). Only the
        accounts whose position moved, or that have an order leaning on it anew, are looked at."""
        while state.moved:
            account_id = state.moved.pop()
            mine = state.leaning_orders(account_id)
            if not mine:
                continue
            mine.sort(key=lambda o: (o.price if o.side == Side.SELL else -o.price, o.pk))  # most aggressive first
            qty = state.position(account_id).qty
            room = {Side.BUY: max(-qty, 0), Side.SELL: max(qty, 0)}
            for order in mine:
                if order.reduce_only:
                    room[order.side] = self._keep_to_room(state, order, room[order.side], batch)
            for order in mine:
                if order.unmargined_qty and order.pk in state.orders:
                    room[order.side] = self._keep_to_room(state, order, room[order.side], batch)

    def _keep_to_room(self, state: SymbolState, order: LiveOrder, room: int, batch: Batch) -> int:
        """Cuts the part of a resting order that leans on the position (all of a reduce-only one, the
        unmargined part of another) to the room the position has left for it; returns the room after it."""
        leaning = order.leaves_qty if order.reduce_only else order.unmargined_qty
        if leaning <= room:
            return room - leaning
        if order.reduce_only:
            self._cut(state, order, leaning - room, REDUCE_ONLY_EXCEEDED, batch)
        else:
            order.unmargined_qty = room
            order.text = UNMARGINED_CUT
            self._cut(state, order, leaning - room, UNMARGINED_GONE, batch)
        return 0

    def _cut(self, state: SymbolState, order: LiveOrder, qty: int, canceled_text: str, batch: Batch) -> None:
        """Takes qty off a resting order, keeping its place in the queue; all of it cancels the order."""
        if qty >= order.leaves_qty:
            self._apply_events(state, state.book.cancel(order.pk), batch)
            order.text = canceled_text
        else:
            self._apply_events(state, state.book.amend(order.pk, state.ticks(order.price),
                                                       state.lots(order.leaves_qty - qty)), batch)

    # ---------- cancel and amend ----------

    def apply_command(self, command: Command, batch: Batch, pending_orders: dict) -> None:
        state = self.states[command.instrument_id]
        order_pk = command.order_id
        if order_pk in pending_orders:  # its order came in the same batch, after it: apply that first
            self.apply_new_order(state, pending_orders.pop(order_pk), batch)
            batch.applied.append(("order", order_pk))
        order = state.orders.get(order_pk) or state.conditional.get(order_pk)
        # an order this batch, or the one committing, has ended: the database does not know yet
        recent = batch.orders.get(order_pk) or (self.in_flight.batch.orders.get(order_pk) if self.in_flight else None)
        if order is None and recent is None and command.order_status == OrdStatus.PENDING_NEW:
            # its order's entry is lost or late: the order goes first, as it was submitted first
            (late,) = LiveOrder.load(Order.objects.filter(pk=order_pk))
            self.apply_new_order(state, late, batch)
            batch.applied.append(("order", order_pk))  # applied by this batch, like any other
            order = state.orders.get(order_pk) or state.conditional.get(order_pk)
            recent = batch.orders.get(order_pk)
        if order is None:
            status = recent.ord_status if recent else command.order_status
            verb = "cancel" if command.kind == OrderCommand.Kind.CANCEL else "amend"
            self._reject_command(state, command, batch, f"Unable to {verb} order due to existing state: {status}")
            return
        if command.kind == OrderCommand.Kind.CANCEL:
            if order.pk in state.conditional:
                self._close(state, order, batch, OrdStatus.CANCELED, CANCEL_TEXT[CR_USER])
            else:
                self._apply_events(state, state.book.cancel(order.pk), batch)
            if command.text:
                order.text = command.text
        else:
            self._amend(state, order, command, batch)
        batch.commands[command.pk] = (OrderCommand.Status.DONE, "")

    def _reject_command(self, state: SymbolState, command: Command, batch: Batch, reason: str) -> None:
        if command.margin_delta:
            batch.balance(command.account_id, state.asset)[1] -= command.margin_delta
        batch.commands[command.pk] = (OrderCommand.Status.REJECTED, reason)

    def _amend(self, state: SymbolState, order: LiveOrder, command: Command, batch: Batch) -> None:
        order.margin_reserved += command.margin_delta
        if command.new_stop_px is not None:
            order.stop_px = command.new_stop_px
        if command.new_peg_offset_value is not None:
            order.peg_offset_value = command.new_peg_offset_value
            self._peg(state, order)
        if command.text:
            order.text = command.text
        batch.orders[order.pk] = order
        unmargined_before = order.unmargined_qty
        leaves, text = self._amended_leaves(state, order, command)
        if leaves is not None and leaves <= 0:
            # filled since the amend was asked, up to the size it asks for (or nothing left to reduce);
            # ending it releases all its margin
            order.order_qty = order.cum_qty
            if order.pk in state.conditional:
                self._close(state, order, batch, OrdStatus.CANCELED, text)
            else:
                self._apply_events(state, state.book.cancel(order.pk), batch)
                order.text = text
            return
        if order.pk in state.conditional:
            if command.new_price is not None:
                order.price = command.new_price
            if leaves is not None:
                order.leaves_qty = leaves
                order.order_qty = order.cum_qty + order.leaves_qty
            self._cap_margin(state, order, command, batch)
            self._check_conditional(state, order, batch)
            return
        price = command.new_price if command.new_price is not None else order.price
        try:
            lots = state.lots(order.leaves_qty if leaves is None else leaves)
            if "ParticipateDoNotInitiate" not in order.exec_inst:  # it may cross, as a new order would
                self._keep_reduce_only_in_sweep(state, order, state.ticks(price), lots, batch)
            events = state.book.amend(order.pk, state.ticks(price), lots)
        except (ValueError, KeyError) as error:
            order.margin_reserved -= command.margin_delta
            order.unmargined_qty = unmargined_before
            self._reject_command(state, command, batch, f"Invalid amend: {error}")
            return
        self._cap_margin(state, order, command, batch)
        state.lean(order)
        self._apply_events(state, events, batch)
        self._after_trades(state, batch)

    def _amended_leaves(self, state: SymbolState, order: LiveOrder, command: Command) -> tuple[int | None, str]:
        """The quantity an amend leaves, as the order stands now. The amend names the order's total
        (an orderQty, or a leavesQty on top of what had filled when it was asked), so what filled
        since counts against it: the margin reserved for it covers no more. A reduce-only order
        never grows beyond the position it may still reduce, nor does another order's part that its
        new margin does not cover. None: the size is not amended. Also the text of an order that
        this leaves with nothing."""
        leaves = None if command.new_order_qty is None else command.new_order_qty - order.cum_qty
        resting = order.pk not in state.conditional  # conditional orders fit when triggered
        if leaves is not None and order.reduce_only and resting:
            leaves = min(leaves, state.reducible(order))
        if command.new_unmargined_qty is not None:
            size = order.leaves_qty if leaves is None else leaves
            order.unmargined_qty = min(command.new_unmargined_qty, max(size, 0))
            excess = order.unmargined_qty - max(state.reducible(order), 0)
            if resting and excess > 0:
                order.unmargined_qty -= excess
                order.text = UNMARGINED_CUT
                return size - excess, UNMARGINED_GONE
        return leaves, AMENDED_AWAY

    def _cap_margin(self, state: SymbolState, order: LiveOrder, command: Command, batch: Batch) -> None:
        if command.new_margin is not None and order.margin_reserved > command.new_margin:
            self._release_margin(state, order, order.margin_reserved - command.new_margin, batch)
