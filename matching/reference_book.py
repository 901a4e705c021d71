"""A pure-Python limit order book with exactly the interface and events of the C book.

It is the executable reading of docs/ORDER_BOOK.md: the tests compare the C book against it on
random command streams, and the benchmarks use it as a contender. It favours being obviously
correct over being fast.

Layout: one ``SortedDict`` per side mapping a price to a ``_Level`` (an ``OrderedDict`` of the
orders resting there, oldest first, plus the level's total quantity), and a dict of every resting
order by id.

Every refused command raises ``TypeError``, ``ValueError`` or ``KeyError`` before the book is
touched. A single call first converts its arguments in signature order: a value of the wrong type
is a ``TypeError``, an int beyond 64 bits (or a ``post_only`` other than True/False/0/1) a
``ValueError``. The command is then checked exactly like an ``apply`` record, in the order
order_id, owner, side, price, qty, flags; a duplicate or unknown id after those, and a price
level overflow last. Such refusals raise ``ValueError`` (``KeyError`` for an unknown id) with the
batch error code (``ERR_*`` of ``matching.book_protocol``) in the exception's ``error_code``
attribute: the code ``apply`` puts in its ``EV_REJECT`` event.
"""
from __future__ import annotations

from array import array
from collections import OrderedDict
from itertools import islice

from sortedcontainers import SortedDict

from matching.book_protocol import (
    BUY, SELL, GTC, IOC, FOK,
    STP_NONE, STP_CANCEL_RESTING, STP_CANCEL_INCOMING, STP_CANCEL_BOTH,
    OP_LIMIT, OP_MARKET, OP_CANCEL, OP_AMEND,
    EV_FILL, EV_REST, EV_CANCEL, EV_REJECT, EV_AMEND,
    CR_USER, CR_UNFILLED, CR_FOK, CR_POST_ONLY, CR_STP,
    ERR_BAD_ID, ERR_BAD_OWNER, ERR_BAD_SIDE, ERR_BAD_PRICE, ERR_BAD_QTY, ERR_BAD_FLAGS,
    ERR_DUPLICATE_ID, ERR_UNKNOWN_ID, ERR_OVERFLOW, ERR_BAD_OP,
    FLAG_POST_ONLY, STP_SHIFT, COMMAND_FIELDS, SNAPSHOT_FIELDS, INT64_MAX,
)

__all__ = ["ReferenceBook"]

_TIF_MASK = 3
_STP_MASK = 3 << STP_SHIFT
_LIMIT_FLAGS = _TIF_MASK | FLAG_POST_ONLY | _STP_MASK  # what a limit command's flags may hold
_MARKET_FLAGS = _TIF_MASK | _STP_MASK  # a market command: no post-only
_RESTING_FLAGS = FLAG_POST_ONLY | _STP_MASK  # a resting order is GTC: no tif bits
_COMMAND_BYTES = COMMAND_FIELDS * 8
_SNAPSHOT_BYTES = SNAPSHOT_FIELDS * 8

_MESSAGES = {
    ERR_BAD_ID: "order id must be 1 .. 2**63-1",
    ERR_BAD_OWNER: "owner must be 0 .. 2**63-1",
    ERR_BAD_SIDE: "side must be BUY (0) or SELL (1)",
    ERR_BAD_PRICE: "price out of range",
    ERR_BAD_QTY: "quantity must be 1 .. 2**63-1",
    ERR_BAD_FLAGS: "bad tif, post_only or stp",
    ERR_DUPLICATE_ID: "an order with this id is resting",
    ERR_UNKNOWN_ID: "no resting order with this id",
    ERR_OVERFLOW: "the price level's total quantity would not fit in 64 bits",
    ERR_BAD_OP: "unknown op",
}


class _Refused(Exception):
    """Internal: a command refused with a batch error code."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def _error(code: int, order_id=None) -> Exception:
    """The exception a single call raises for a refused command."""
    if code == ERR_UNKNOWN_ID:
        exc: Exception = KeyError(order_id)
    else:
        exc = ValueError(_MESSAGES[code])
    exc.error_code = code  # type: ignore[attr-defined]
    return exc


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int64(name: str, value) -> int:
    """Converts one argument: TypeError unless an int (bool is not), ValueError beyond 64 bits."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise ValueError(f"{name} does not fit in a signed 64-bit integer")
    return int(value)


def _post_only(value) -> int:
    if isinstance(value, bool):
        return int(value)
    value = _int64("post_only", value)
    if value not in (0, 1):
        raise ValueError("post_only must be True, False, 0 or 1")
    return value


def _flags(tif: int, post_only: int, stp: int) -> int:
    """A command's flags; an out-of-range tif or stp gives flags the checks refuse."""
    if not GTC <= tif <= FOK or not STP_NONE <= stp <= STP_CANCEL_BOTH:
        return -1
    return tif | (FLAG_POST_ONLY if post_only else 0) | (stp << STP_SHIFT)


class _Order:
    __slots__ = ("order_id", "owner", "side", "price", "qty", "flags")

    def __init__(self, order_id, owner, side, price, qty, flags):
        self.order_id = order_id
        self.owner = owner
        self.side = side
        self.price = price
        self.qty = qty
        self.flags = flags  # post_only << 2 | stp << 3


class _Level:
    __slots__ = ("orders", "total")

    def __init__(self):
        self.orders: OrderedDict[int, _Order] = OrderedDict()
        self.total = 0


class ReferenceBook:
    """Pure-Python order book; see docs/ORDER_BOOK.md for every rule it follows."""

    def __init__(self):
        self._sides = (SortedDict(), SortedDict())  # BUY, SELL: price -> _Level
        self._orders: dict[int, _Order] = {}

    # ------------------------------------------------------------------ single commands

    # A single call first converts its arguments in signature order (the wrong type is a
    # TypeError, an int beyond 64 bits or a post_only other than 0/1 a ValueError), then checks
    # the command exactly as `apply` checks a record.

    def place(self, order_id, owner, side, price, qty, tif=GTC, post_only=False, stp=STP_NONE):
        order_id, owner, side, price, qty, tif = (
            _int64(name, value) for name, value in (
                ("order_id", order_id), ("owner", owner), ("side", side), ("price", price),
                ("qty", qty), ("tif", tif)))
        post_only = _post_only(post_only)
        stp = _int64("stp", stp)
        return self._single(OP_LIMIT, order_id, owner, side, price, qty,
                            _flags(tif, post_only, stp))

    def market(self, order_id, owner, side, qty, protect_price=0, tif=IOC, stp=STP_NONE):
        order_id, owner, side, qty, protect_price, tif, stp = (
            _int64(name, value) for name, value in (
                ("order_id", order_id), ("owner", owner), ("side", side), ("qty", qty),
                ("protect_price", protect_price), ("tif", tif), ("stp", stp)))
        return self._single(OP_MARKET, order_id, owner, side, protect_price, qty,
                            _flags(tif, 0, stp))

    def cancel(self, order_id):
        return self._single(OP_CANCEL, _int64("order_id", order_id), 0, 0, 0, 0, 0)

    def amend(self, order_id, price, qty):
        order_id, price, qty = (
            _int64(name, value) for name, value in (
                ("order_id", order_id), ("price", price), ("qty", qty)))
        return self._single(OP_AMEND, order_id, 0, 0, price, qty, 0)

    def _single(self, op, order_id, *fields):
        try:
            return self._command(op, order_id, *fields)
        except _Refused as refused:
            raise _error(refused.code, order_id) from None

    # ------------------------------------------------------------------ batch

    def apply(self, commands) -> bytes:
        raw = memoryview(commands).cast("B")
        if len(raw) % _COMMAND_BYTES:
            raise ValueError(f"the buffer's size is not a multiple of {_COMMAND_BYTES} bytes")
        values = raw.cast("q")
        out = array("q")
        for start in range(0, len(values), COMMAND_FIELDS):
            record = values[start:start + COMMAND_FIELDS].tolist()
            try:
                events = self._command(*record)
            except _Refused as refused:
                events = [(EV_REJECT, record[1], 0, 0, 0, refused.code)]
            for event in events:
                out.extend(event)
        return out.tobytes()

    def _command(self, op, order_id, owner, side, price, qty, flags):
        """One batch record (all fields are int64): validated in the same order as a call."""
        if op not in (OP_LIMIT, OP_MARKET, OP_CANCEL, OP_AMEND):
            raise _Refused(ERR_BAD_OP)
        if order_id < 1:
            raise _Refused(ERR_BAD_ID)
        if op == OP_CANCEL:
            return self._cancel(order_id)
        if op == OP_AMEND:
            if price < 1:
                raise _Refused(ERR_BAD_PRICE)
            if qty < 1:
                raise _Refused(ERR_BAD_QTY)
            return self._amend(order_id, price, qty)
        if owner < 0:
            raise _Refused(ERR_BAD_OWNER)
        if side not in (BUY, SELL):
            raise _Refused(ERR_BAD_SIDE)
        if price < (1 if op == OP_LIMIT else 0):
            raise _Refused(ERR_BAD_PRICE)
        if qty < 1:
            raise _Refused(ERR_BAD_QTY)
        allowed = _LIMIT_FLAGS if op == OP_LIMIT else _MARKET_FLAGS
        tif = flags & _TIF_MASK
        if flags < 0 or flags & ~allowed or tif > FOK:
            raise _Refused(ERR_BAD_FLAGS)
        stp = (flags & _STP_MASK) >> STP_SHIFT
        if op == OP_LIMIT:
            return self._limit(order_id, owner, side, price, qty, tif,
                               bool(flags & FLAG_POST_ONLY), stp)
        return self._market(order_id, owner, side, price, qty, tif, stp)

    # ------------------------------------------------------------------ the rules

    def _limit(self, order_id, owner, side, price, qty, tif, post_only, stp):
        if order_id in self._orders:
            raise _Refused(ERR_DUPLICATE_ID)
        if tif == GTC:
            # An order that may rest must fit in its level with its full quantity. (A level of
            # its own side at its price means it does not cross, so it would rest whole.)
            level = self._sides[side].get(price)
            if level is not None and level.total + qty > INT64_MAX:
                raise _Refused(ERR_OVERFLOW)
        flags = (FLAG_POST_ONLY if post_only else 0) | (stp << STP_SHIFT)
        if post_only and self._crosses_best(side, price):
            return [(EV_CANCEL, order_id, owner, price, qty, CR_POST_ONLY)]
        return self._take(order_id, owner, side, price, qty, tif, stp, flags, price, price)

    def _market(self, order_id, owner, side, protect_price, qty, tif, stp):
        if order_id in self._orders:
            raise _Refused(ERR_DUPLICATE_ID)
        if tif == GTC:
            tif = IOC  # a market order never rests
        limit = protect_price if protect_price else None
        return self._take(order_id, owner, side, limit, qty, tif, stp, 0, protect_price, None)

    def _take(self, order_id, owner, side, limit, qty, tif, stp, flags, event_price, rest_price):
        """Steps 3-5 of `place` for an incoming order; `limit` None means any price."""
        if tif == FOK and not self._can_fill(owner, side, limit, qty, stp):
            return [(EV_CANCEL, order_id, owner, event_price, qty, CR_FOK)]
        events: list[tuple] = []
        remaining = self._match(order_id, owner, side, limit, qty, stp, event_price, events)
        if remaining:
            if tif == GTC:
                self._rest(_Order(order_id, owner, side, rest_price, remaining, flags))
                events.append((EV_REST, order_id, owner, rest_price, remaining, side))
            else:
                events.append((EV_CANCEL, order_id, owner, event_price, remaining, CR_UNFILLED))
        return events

    def _crossing_levels(self, side, limit):
        """The opposite side's levels that an order of `side` at `limit` crosses, best first."""
        book = self._sides[1 - side]
        if side == BUY:
            return book.irange(maximum=limit)
        return book.irange(minimum=limit, reverse=True)

    def _crosses_best(self, side, price) -> bool:
        book = self._sides[1 - side]
        if not book:
            return False
        if side == BUY:
            return price >= book.peekitem(0)[0]
        return price <= book.peekitem(-1)[0]

    def _can_fill(self, owner, side, limit, qty, stp) -> bool:
        """The fill-or-kill walk (step 3)."""
        book = self._sides[1 - side]
        available = 0
        for price in self._crossing_levels(side, limit):
            for maker in book[price].orders.values():
                if stp != STP_NONE and maker.owner == owner:
                    if stp == STP_CANCEL_RESTING:
                        continue
                    return False
                available += maker.qty
                if available >= qty:
                    return True
        return False

    def _match(self, order_id, owner, side, limit, qty, stp, event_price, events):
        """Step 4: returns the quantity left, 0 when filled or canceled by self-trade prevention."""
        book = self._sides[1 - side]
        remaining = qty
        while remaining and book:
            price, level = book.peekitem(0 if side == BUY else -1)
            if limit is not None and (price > limit if side == BUY else price < limit):
                break
            for maker in list(level.orders.values()):
                if stp != STP_NONE and maker.owner == owner:
                    if stp in (STP_CANCEL_RESTING, STP_CANCEL_BOTH):
                        self._remove(maker)
                        events.append((EV_CANCEL, maker.order_id, maker.owner, maker.price,
                                       maker.qty, CR_STP))
                    if stp in (STP_CANCEL_INCOMING, STP_CANCEL_BOTH):
                        events.append((EV_CANCEL, order_id, owner, event_price, remaining, CR_STP))
                        return 0
                    continue
                fill = min(remaining, maker.qty)
                remaining -= fill
                if fill == maker.qty:
                    self._remove(maker)
                    left = 0
                else:
                    maker.qty -= fill
                    level.total -= fill
                    left = maker.qty
                events.append((EV_FILL, order_id, maker.order_id, maker.price, fill, left))
                if not remaining:
                    break
        return remaining

    def _cancel(self, order_id):
        order = self._orders.get(order_id)
        if order is None:
            raise _Refused(ERR_UNKNOWN_ID)
        self._remove(order)
        return [(EV_CANCEL, order_id, order.owner, order.price, order.qty, CR_USER)]

    def _amend(self, order_id, price, qty):
        order = self._orders.get(order_id)
        if order is None:
            raise _Refused(ERR_UNKNOWN_ID)
        side, owner = order.side, order.owner
        if price == order.price:
            level = self._sides[side][price]
            if level.total - order.qty + qty > INT64_MAX:
                raise _Refused(ERR_OVERFLOW)
            if qty > order.qty:  # more quantity: loses its time priority
                self._remove(order)
                order.qty = qty
                self._rest(order)
                return [(EV_AMEND, order_id, owner, price, qty, 0)]
            level.total -= order.qty - qty
            order.qty = qty
            return [(EV_AMEND, order_id, owner, price, qty, 1)]
        level = self._sides[side].get(price)
        if level is not None and level.total + qty > INT64_MAX:
            raise _Refused(ERR_OVERFLOW)
        if order.flags & FLAG_POST_ONLY and self._crosses_best(side, price):
            self._remove(order)
            return [(EV_CANCEL, order_id, owner, order.price, order.qty, CR_POST_ONLY)]
        self._remove(order)
        events = [(EV_AMEND, order_id, owner, price, qty, 0)]
        stp = (order.flags & _STP_MASK) >> STP_SHIFT
        remaining = self._match(order_id, owner, side, price, qty, stp, price, events)
        if remaining:
            order.price = price
            order.qty = remaining
            self._rest(order)
        return events

    # ------------------------------------------------------------------ book keeping

    def _rest(self, order: _Order) -> None:
        book = self._sides[order.side]
        level = book.get(order.price)
        if level is None:
            level = book[order.price] = _Level()
        level.orders[order.order_id] = order
        level.total += order.qty
        self._orders[order.order_id] = order

    def _remove(self, order: _Order) -> None:
        book = self._sides[order.side]
        level = book[order.price]
        del level.orders[order.order_id]
        level.total -= order.qty
        if not level.orders:
            del book[order.price]
        del self._orders[order.order_id]

    # ------------------------------------------------------------------ queries

    def best_bid(self):
        bids = self._sides[BUY]
        return bids.peekitem(-1)[0] if bids else None

    def best_ask(self):
        asks = self._sides[SELL]
        return asks.peekitem(0)[0] if asks else None

    def depth(self, levels):
        levels = _int64("levels", levels)
        if levels < 0:
            raise ValueError("levels must be >= 0")
        bids, asks = self._sides
        return (
            [(p, bids[p].total, len(bids[p].orders)) for p in islice(reversed(bids), levels)],
            [(p, asks[p].total, len(asks[p].orders)) for p in islice(asks, levels)],
        )

    def order(self, order_id):
        order = self._orders.get(_int64("order_id", order_id))
        if order is None:
            return None
        return (order.side, order.price, order.qty, order.owner, order.flags)

    def stats(self):
        bids, asks = self._sides
        return (
            len(self._orders), len(bids), len(asks),
            sum(level.total for level in bids.values()),
            sum(level.total for level in asks.values()),
        )

    def __len__(self):
        return len(self._orders)

    def __contains__(self, order_id):
        if not _is_int(order_id):
            raise TypeError(f"order ids are ints, not {type(order_id).__name__}")
        return order_id in self._orders  # any other int is simply not there

    def _resting(self):
        """Every resting order in priority order: bids best first, then asks best first."""
        bids, asks = self._sides
        for price in reversed(bids):
            yield from bids[price].orders.values()
        for price in asks:
            yield from asks[price].orders.values()

    def snapshot(self) -> bytes:
        out = array("q")
        for o in self._resting():
            out.extend((o.order_id, o.owner, o.side, o.price, o.qty, o.flags))
        return out.tobytes()

    def restore(self, data) -> None:
        if self._orders:
            raise ValueError("restore needs an empty book")
        raw = memoryview(data).cast("B")
        if len(raw) % _SNAPSHOT_BYTES:
            raise ValueError(f"the snapshot's size is not a multiple of {_SNAPSHOT_BYTES} bytes")
        values = raw.cast("q").tolist()
        records = [values[i:i + SNAPSHOT_FIELDS] for i in range(0, len(values), SNAPSHOT_FIELDS)]
        seen = set()
        totals = ({}, {})
        for order_id, owner, side, price, qty, flags in records:
            if order_id < 1 or owner < 0 or side not in (BUY, SELL) or price < 1 or qty < 1:
                raise ValueError("a snapshot record is out of range")
            if flags & ~_RESTING_FLAGS:  # also catches negative flags
                raise ValueError("a snapshot record has bad flags")
            if order_id in seen:
                raise ValueError(f"order id {order_id} appears twice in the snapshot")
            seen.add(order_id)
            total = totals[side].get(price, 0) + qty
            if total > INT64_MAX:
                raise ValueError("a price level's total quantity does not fit in 64 bits")
            totals[side][price] = total
        if totals[BUY] and totals[SELL] and max(totals[BUY]) >= min(totals[SELL]):
            raise ValueError("the snapshot's book is crossed")
        for record in records:
            self._rest(_Order(*record))

    def clear(self) -> None:
        for book in self._sides:
            book.clear()
        self._orders.clear()

    def __repr__(self):
        return f"<ReferenceBook orders={len(self)} bid={self.best_bid()} ask={self.best_ask()}>"
