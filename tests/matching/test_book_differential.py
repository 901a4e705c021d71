"""The C book and the reference book must agree on every random command stream.

Streams use a handful of owners, ids and prices so that crossing, self-trades, duplicate ids and
cancels/amends of gone orders happen all the time, plus now and then an invalid value or a huge
quantity (level overflow, 128-bit side totals). After every single call both books must give
the same events (or the same exception type) and the same depth, stats, best prices and
snapshot; the same stream through `apply` in one batch must give identical bytes on both books,
equal to the concatenated single-call events with an EV_REJECT record where a call raised.
"""
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from matching.book_protocol import (
    BUY, SELL, GTC, IOC, FOK, STP_SHIFT, FLAG_POST_ONLY,
    OP_LIMIT, OP_MARKET, OP_CANCEL, OP_AMEND, EV_REJECT,
    INT64_MAX, decode_events, encode_commands,
)
from matching.reference_book import ReferenceBook
from tests.matching import c_order_book_class

MIN64 = -INT64_MAX - 1

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def sometimes(valid, invalid, one_in=20):
    """About `one_in - 1` times out of `one_in` a `valid` value, else one of `invalid` (which
    shrinks towards valid)."""
    return st.integers(1, one_in).flatmap(
        lambda r: st.sampled_from(invalid) if r == one_in else valid)


order_ids = sometimes(st.integers(1, 24), [0, -1, MIN64, INT64_MAX], 40)
owners = sometimes(st.integers(0, 3), [-1, MIN64, INT64_MAX], 60)
sides = sometimes(st.sampled_from([BUY, SELL]), [2, -1, INT64_MAX], 60)
prices = sometimes(st.integers(1, 20), [0, -1, MIN64, INT64_MAX], 60)
protect_prices = st.one_of(st.just(0), prices)
quantities = sometimes(
    st.integers(1, 10),
    [0, -1, MIN64, INT64_MAX, INT64_MAX - 1, INT64_MAX - 9, 2**62, 2**62 + 1, INT64_MAX // 3],
    10,
)
tifs = sometimes(st.sampled_from([GTC, GTC, IOC, FOK]), [3, -1, 4], 60)
stps = sometimes(st.integers(0, 3), [4, -1, 7], 60)
post_onlys = sometimes(st.sampled_from([False, False, True, 0, 1]), [2, -1], 80)


@dataclass
class Command:
    method: str
    args: tuple
    kwargs: dict
    record: tuple | None  # the same command as an `apply` record; None if it has none
    target: tuple = None  # (order_id, price, qty) of a place command, for later amends

    def call(self, book):
        return getattr(book, self.method)(*self.args, **self.kwargs)

    def __repr__(self):
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.method}({', '.join(parts)})"


def split_args(draw, names, values, defaults):
    """Positional arguments, then the rest as keywords or left to their defaults."""
    required = defaults.count(REQUIRED)
    n_positional = draw(st.integers(required, len(names)))
    args = tuple(values[:n_positional])
    kwargs = {}
    for name, value, default in list(zip(names, values, defaults))[n_positional:]:
        if value != default or type(value) is not type(default) or draw(st.booleans()):
            kwargs[name] = value
    return args, kwargs


REQUIRED = object()
PLACE_DEFAULTS = (REQUIRED,) * 5 + (GTC, False, 0)
MARKET_DEFAULTS = (REQUIRED,) * 4 + (0, IOC, 0)


def raw_flags(tif, post_only, stp):
    """Flags packed without checks, so that an out-of-range tif or stp stays out of range (a tif
    above 3 would spill into the post-only bit: such a command gets no record)."""
    if tif > 3 or post_only not in (0, 1):
        return None
    return tif | (FLAG_POST_ONLY if post_only else 0) | (stp << STP_SHIFT)


@st.composite
def place_commands(draw):
    values = [draw(order_ids), draw(owners), draw(sides), draw(prices), draw(quantities),
              draw(tifs), draw(post_onlys), draw(stps)]
    names = ["order_id", "owner", "side", "price", "qty", "tif", "post_only", "stp"]
    args, kwargs = split_args(draw, names, values, PLACE_DEFAULTS)
    order_id, owner, side, price, qty, tif, post_only, stp = values
    flags = raw_flags(tif, post_only, stp)
    record = None if flags is None else (OP_LIMIT, order_id, owner, side, price, qty, flags)
    return Command("place", args, kwargs, record, (order_id, price, qty))


@st.composite
def market_commands(draw):
    values = [draw(order_ids), draw(owners), draw(sides), draw(quantities),
              draw(protect_prices), draw(tifs), draw(stps)]
    names = ["order_id", "owner", "side", "qty", "protect_price", "tif", "stp"]
    args, kwargs = split_args(draw, names, values, MARKET_DEFAULTS)
    order_id, owner, side, qty, protect_price, tif, stp = values
    flags = raw_flags(tif, 0, stp)
    record = (None if flags is None
              else (OP_MARKET, order_id, owner, side, protect_price, qty, flags))
    return Command("market", args, kwargs, record)


@st.composite
def cancel_commands(draw, order_id):
    record = (OP_CANCEL, order_id, draw(st.integers(MIN64, INT64_MAX)), 7, -3, 0, 99)  # unused
    if draw(st.booleans()):
        return Command("cancel", (order_id,), {}, record)
    return Command("cancel", (), {"order_id": order_id}, record)


@st.composite
def amend_commands(draw, order_id, price, qty):
    record = (OP_AMEND, order_id, -1, 5, price, qty, -1)  # owner, side and flags are unused
    if draw(st.booleans()):
        return Command("amend", (order_id, price, qty), {}, record)
    return Command("amend", (order_id,), {"qty": qty, "price": price}, record)


@st.composite
def streams(draw):
    """Commands; cancels and amends mostly aim at orders placed a little earlier in the stream,
    amends often at their price and with their, a smaller or a larger quantity."""
    placed = []  # (order_id, price, qty) of the place commands so far
    stream = []
    for _ in range(draw(st.integers(1, 80))):
        kind = draw(st.sampled_from(["place", "place", "place", "market", "cancel", "amend",
                                     "amend"]))
        if kind == "place":
            command = draw(place_commands())
            placed.append(command.target)
        elif kind == "market":
            command = draw(market_commands())
        else:
            if placed and draw(st.integers(1, 4)) < 4:
                order_id, price, qty = placed[-draw(st.integers(1, min(len(placed), 6)))]
            else:
                order_id, price, qty = draw(order_ids), draw(prices), draw(quantities)
            if kind == "cancel":
                command = draw(cancel_commands(order_id))
            else:
                if 1 <= qty <= 10:
                    qty = draw(st.sampled_from([qty, max(1, qty - 1), qty + 1]) | quantities)
                price = draw(st.just(price) | prices)
                command = draw(amend_commands(order_id, price, qty))
        stream.append(command)
    return stream


def outcome(book, command):
    """The events of a call, or the type of the exception it raised (and the exception)."""
    try:
        result = command.call(book)
    except (TypeError, ValueError, KeyError) as exc:
        return type(exc), exc
    assert isinstance(result, list), command
    for event in result:
        assert isinstance(event, tuple) and len(event) == 6, (command, event)
        assert all(type(v) is int for v in event), (command, event)
    return result, None


def state(book):
    return (book.snapshot(), book.depth(100), book.stats(), book.best_bid(), book.best_ask(),
            len(book))


@pytest.fixture(scope="module")
def c_book_class():
    return c_order_book_class()


@SETTINGS
@given(stream=streams())
def test_c_book_and_reference_agree_on_every_command(c_book_class, stream):
    c_book, ref_book = c_book_class(), ReferenceBook()
    expected_batch = []  # the single-call events, with a reject where a call raised
    records = []
    for step, command in enumerate(stream):
        c_result, _ = outcome(c_book, command)
        ref_result, ref_exc = outcome(ref_book, command)
        context = f"step {step}: {command!r} in {stream!r}"
        assert c_result == ref_result, context
        assert state(c_book) == state(ref_book), context
        for order_id in {command.args[0] if command.args else command.kwargs.get("order_id"), 1}:
            if isinstance(order_id, int):
                assert c_book.order(order_id) == ref_book.order(order_id), context
                assert (order_id in c_book) == (order_id in ref_book), context
        if command.record is None:
            continue  # not expressible as a record; a refused call changed nothing anyway
        records.append(command.record)
        if ref_exc is None:
            expected_batch.extend(ref_result)
        else:
            expected_batch.append((EV_REJECT, command.record[1], 0, 0, 0, ref_exc.error_code))

    batch = encode_commands(records)
    c_batch_book, ref_batch_book = c_book_class(), ReferenceBook()
    c_bytes = c_batch_book.apply(batch)
    ref_bytes = ref_batch_book.apply(batch)
    assert decode_events(c_bytes) == expected_batch
    assert c_bytes == ref_bytes
    assert state(c_batch_book) == state(ref_batch_book) == state(c_book)

    # a snapshot of the final book restores into both implementations as the same book
    data = c_book.snapshot()
    restored_c, restored_ref = c_book_class(), ReferenceBook()
    restored_c.restore(data)
    restored_ref.restore(data)
    assert state(restored_c) == state(restored_ref) == state(c_book)


@SETTINGS
@given(stream=streams(), cuts=st.lists(st.integers(0, 60), max_size=4))
def test_a_batch_split_anywhere_gives_the_same_bytes(c_book_class, stream, cuts):
    records = [c.record for c in stream if c.record is not None]
    whole_book = c_book_class()
    whole = whole_book.apply(encode_commands(records))
    parts_book = c_book_class()
    bounds = sorted({0, len(records), *(min(c, len(records)) for c in cuts)})
    parts = b"".join(parts_book.apply(encode_commands(records[a:b]))
                     for a, b in zip(bounds, bounds[1:]))
    assert parts == whole
    assert parts_book.snapshot() == whole_book.snapshot()


fields = (st.integers(-3, 24) | st.integers(MIN64, INT64_MAX)
          | st.sampled_from([MIN64, INT64_MAX, INT64_MAX - 1, 2**62]))
records = st.tuples(
    st.integers(-1, 5), fields, st.integers(-1, 3) | fields, st.integers(-1, 2) | fields,
    st.integers(0, 20) | fields, st.integers(-1, 10) | fields,
    st.integers(-1, 40) | st.sampled_from([FLAG_POST_ONLY, 3 << STP_SHIFT, 1 << 40]) | fields,
)


@SETTINGS
@given(rows=st.lists(records, max_size=40))
def test_batches_of_arbitrary_int64_records_agree(c_book_class, rows):
    """Records with any int64 values at all: ops, flags and fields out of every range."""
    c_book, ref_book = c_book_class(), ReferenceBook()
    seed = encode_commands([(OP_LIMIT, i, i % 3, i % 2, 10 + (i % 5) * (1 if i % 2 else -1), 5, 0)
                            for i in range(1, 13)])
    assert c_book.apply(seed) == ref_book.apply(seed)
    data = encode_commands(rows)
    assert c_book.apply(data) == ref_book.apply(data)
    assert state(c_book) == state(ref_book)
