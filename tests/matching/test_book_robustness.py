"""Arbitrary arguments at every method of the C book: never a crash, only documented errors.

Each call must raise TypeError, ValueError or KeyError, or return a well-formed result; a call
that raised leaves the snapshot as it was. The same call goes to the reference book, which must
give the same result or the same exception type. Random bytes go to `apply` and `restore`.
"""
import enum
import random
from array import array

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from matching.book_protocol import (
    BUY, SELL, INT64_MAX, OP_LIMIT, OP_MARKET, OP_CANCEL, OP_AMEND, STP_CANCEL_BOTH,
    encode_commands,
)
from matching.reference_book import ReferenceBook
from tests.matching import c_order_book_class

MIN64 = -INT64_MAX - 1
ALLOWED = (TypeError, ValueError, KeyError)

SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Index:
    """Not an int, but convertible to one: still the wrong type for the book."""

    def __index__(self):
        return 1

    def __int__(self):
        return 1


class Colour(enum.IntEnum):
    RED = 1


class BigInt(int):
    pass


EDGE_INTS = [0, 1, -1, 2, 3, 4, INT64_MAX, INT64_MAX - 1, 2**63, MIN64, MIN64 - 1, 2**64,
             2**64 - 1, -2**64, 2**200, -2**200, 2**31, 2**32, -2**31 - 1]

ints = st.integers(1, 8).flatmap(
    lambda r: st.sampled_from(EDGE_INTS) | st.integers() if r == 8
    else st.integers(-1, 25) if r >= 6 else st.integers(0, 2))
wild = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
    st.text(max_size=4),
    st.binary(max_size=16),
    st.lists(st.integers(-3, 25), max_size=3),
    st.tuples(st.integers(-3, 25)),
    st.sampled_from([Colour.RED, BigInt(3), BigInt(2**70), Index(), object(), 1j, 2.0, -0.0,
                     float("nan"), bytearray(b"\x01"), memoryview(b""), int, ...]),
)
# mostly ints (so that whole commands get through often), now and then anything at all
anything = st.integers(1, 12).flatmap(lambda r: wild if r == 12 else ints)


# name -> (parameter names, whether keywords are accepted, the shape of a result)
METHODS = {
    "place": (["order_id", "owner", "side", "price", "qty", "tif", "post_only", "stp"], True,
              "events"),
    "market": (["order_id", "owner", "side", "qty", "protect_price", "tif", "stp"], True, "events"),
    "cancel": (["order_id"], True, "events"),
    "amend": (["order_id", "price", "qty"], True, "events"),
    "apply": (["commands"], False, "bytes"),
    "restore": (["data"], False, "none"),
    "depth": (["levels"], False, "depth"),
    "order": (["order_id"], False, "order"),
    "best_bid": ([], False, "price"),
    "best_ask": ([], False, "price"),
    "stats": ([], False, "stats"),
    "snapshot": ([], False, "bytes"),
    "clear": ([], False, "none"),
    "__contains__": (["order_id"], False, "bool"),
    "__len__": ([], False, "int"),
}


def seeded(book):
    """A book with a few orders of each side, so that ids 1..12 often exist."""
    book.apply(encode_commands(
        [(OP_LIMIT, i, i % 3, BUY, 10 - i % 4, i, (i % 4) << 3) for i in range(1, 7)]
        + [(OP_LIMIT, i, i % 3, SELL, 11 + i % 4, i, 4 if i % 2 else 0) for i in range(7, 13)]
    ))
    return book


REQUIRED = {"place": 5, "market": 4, "cancel": 1, "amend": 3, "apply": 1, "restore": 1,
            "depth": 1, "order": 1, "__contains__": 1}
COMMANDS = ["place", "market", "cancel", "amend"]


@st.composite
def calls(draw):
    """(method name, positional args, keyword args): mostly calls that bind to the signature,
    now and then a wrong count of arguments or a wrong keyword."""
    name = draw(st.sampled_from(COMMANDS * 3 + sorted(METHODS)))
    params, keywords, _ = METHODS[name]
    required = REQUIRED.get(name, 0)
    if draw(st.integers(1, 4)) < 4:  # binds
        n_args = draw(st.integers(0 if keywords else required, len(params)))
        args = [draw(anything) for _ in range(n_args)]
        kwargs = {}
        for i, param in enumerate(params[n_args:], start=n_args):
            if i < required or draw(st.booleans()):
                kwargs[param] = draw(anything)
        return name, args, kwargs
    args = [draw(anything) for _ in range(draw(st.integers(0, len(params) + 2)))]
    # Keywords: the method's own names (given twice when also positional) and unknown ones.
    # The C book's one-argument methods (depth, order, apply, restore) take no keywords at all,
    # the reference takes their documented names: those are left out here.
    names = (params if keywords else []) + [n for n in ["colour", "id", "price", "data"]
                                            if n not in params]
    kwargs = {}
    for _ in range(draw(st.integers(0, 2))):
        kwargs[draw(st.sampled_from(names))] = draw(anything)
    return name, args, kwargs


def invoke(book, name, args, kwargs):
    if name == "__contains__":
        if len(args) != 1 or kwargs:
            raise TypeError("the `in` operator takes one operand")  # not expressible with `in`
        return args[0] in book
    if name == "__len__":
        if args or kwargs:
            raise TypeError("len() takes one operand")
        return len(book)
    return getattr(book, name)(*args, **kwargs)


def outcome(book, name, args, kwargs):
    try:
        return "ok", invoke(book, name, args, kwargs)
    except ALLOWED as exc:
        return "raised", type(exc)


def is_int64(v):
    return type(v) is int and MIN64 <= v <= INT64_MAX


def check_shape(shape, result):
    if shape == "events":
        assert type(result) is list
        for event in result:
            assert type(event) is tuple and len(event) == 6 and all(map(is_int64, event))
    elif shape == "bytes":
        assert type(result) is bytes and len(result) % 8 == 0
    elif shape == "none":
        assert result is None
    elif shape == "depth":
        assert type(result) is tuple and len(result) == 2
        for levels in result:
            assert type(levels) is list
            for level in levels:
                assert type(level) is tuple and len(level) == 3 and all(map(is_int64, level))
    elif shape == "order":
        assert result is None or (type(result) is tuple and len(result) == 5
                                  and all(map(is_int64, result)))
    elif shape == "price":
        assert result is None or (is_int64(result) and result > 0)
    elif shape == "stats":
        assert type(result) is tuple and len(result) == 5
        assert all(type(v) is int and v >= 0 for v in result)
    elif shape == "bool":
        assert type(result) is bool
    elif shape == "int":
        assert type(result) is int and result >= 0


@pytest.fixture(scope="module")
def c_book_class():
    return c_order_book_class()


def full_state(book):
    return book.snapshot(), book.stats(), book.depth(1000), book.best_bid(), book.best_ask()


@SETTINGS
@given(sequence=st.lists(calls(), min_size=1, max_size=25))
def test_arbitrary_arguments_never_crash_and_match_the_reference(c_book_class, sequence):
    c_book, ref_book = seeded(c_book_class()), seeded(ReferenceBook())
    for name, args, kwargs in sequence:
        before = c_book.snapshot()
        c_outcome = outcome(c_book, name, args, kwargs)
        ref_outcome = outcome(ref_book, name, args, kwargs)
        call = f"{name}(*{args!r}, **{kwargs!r})"
        if c_outcome[0] == "raised":
            assert c_book.snapshot() == before, call
        else:
            check_shape(METHODS[name][2], c_outcome[1])
        assert c_outcome == ref_outcome, call
        assert full_state(c_book) == full_state(ref_book), call


snapshot_records = st.tuples(
    st.integers(-1, 8) | st.sampled_from([MIN64, INT64_MAX]),
    st.integers(-1, 3) | st.sampled_from([MIN64, INT64_MAX]),
    st.integers(-1, 2) | st.sampled_from([MIN64, INT64_MAX]),
    st.integers(-1, 14) | st.sampled_from([MIN64, INT64_MAX]),
    st.integers(-1, 5) | st.sampled_from([MIN64, INT64_MAX, INT64_MAX - 2]),
    st.sampled_from([-1, 0, 0, 0, 1, 2, 3, 4, 8, 16, 24, 28, 32, 1 << 40, MIN64]),
)


def as_bytes(rows):
    return array("q", [v for row in rows for v in row]).tobytes()


@SETTINGS
@given(rows=st.lists(snapshot_records, max_size=12),
       extra=st.sampled_from([b"", b"", b"", b"\x00", bytes(47)]),
       offset=st.sampled_from([0, 0, 1, 3]))
def test_restore_of_arbitrary_records_matches_the_reference(c_book_class, rows, extra, offset):
    data = memoryview(bytes(offset) + as_bytes(rows) + extra)[offset:]  # offset: misaligned
    c_book, ref_book = c_book_class(), ReferenceBook()
    c_outcome = outcome(c_book, "restore", [data], {})
    ref_outcome = outcome(ref_book, "restore", [data], {})
    assert c_outcome == ref_outcome
    assert full_state(c_book) == full_state(ref_book)
    if c_outcome[0] == "raised":
        assert c_outcome[1] is ValueError
        assert len(c_book) == 0 and c_book.snapshot() == b""
    else:
        assert c_book.snapshot() == ref_book.snapshot()
        c_again = c_book_class()
        c_again.restore(c_book.snapshot())
        assert c_again.snapshot() == c_book.snapshot()


@SETTINGS
@given(data=st.binary(max_size=56 * 6 + 3), offset=st.sampled_from([0, 1, 5]),
       seed=st.booleans())
def test_random_bytes_to_apply_and_restore_never_crash(c_book_class, data, offset, seed):
    buffer = memoryview(bytes(offset) + data)[offset:]
    c_book, ref_book = c_book_class(), ReferenceBook()
    if seed:
        seeded(c_book)
        seeded(ref_book)
    before = c_book.snapshot()
    c_outcome = outcome(c_book, "apply", [buffer], {})
    ref_outcome = outcome(ref_book, "apply", [buffer], {})
    assert c_outcome == ref_outcome
    if len(data) % 56:
        assert c_outcome == ("raised", ValueError)
        assert c_book.snapshot() == before
    else:
        check_shape("bytes", c_outcome[1])
        assert len(c_outcome[1]) % 48 == 0
    assert full_state(c_book) == full_state(ref_book)

    empty_c, empty_ref = c_book_class(), ReferenceBook()
    c_outcome = outcome(empty_c, "restore", [buffer], {})
    assert c_outcome == outcome(empty_ref, "restore", [buffer], {})
    assert full_state(empty_c) == full_state(empty_ref)
    if seed:  # a book that is not empty refuses any restore
        assert outcome(c_book, "restore", [buffer], {}) == ("raised", ValueError)


@pytest.mark.parametrize("value", [None, 5, "text", [1, 2], 1.5, object(),
                                   memoryview(bytes(112))[::2]])
def test_apply_and_restore_of_non_buffers_raise_type_error(c_book_class, value):
    book = seeded(c_book_class())
    before = book.snapshot()
    with pytest.raises(TypeError):
        book.apply(value)
    assert book.snapshot() == before
    with pytest.raises(TypeError):
        c_book_class().restore(value)


def test_many_orders_and_levels_grow_and_shrink_cleanly(c_book_class):
    """Enough orders to grow every internal table several times, then everything canceled."""
    c_book, ref_book = c_book_class(), ReferenceBook()
    n = 20000
    rows = [(OP_LIMIT, i, i % 7, i % 2, (1000 - i % 997) if i % 2 == 0 else (2000 + i % 991),
             1 + i % 5, (i % 4) << 3) for i in range(1, n + 1)]
    data = encode_commands(rows)
    assert c_book.apply(data) == ref_book.apply(data)
    assert full_state(c_book) == full_state(ref_book)
    cancels = encode_commands([(OP_CANCEL, i, 0, 0, 0, 0, 0) for i in range(n, 0, -3)])
    assert c_book.apply(cancels) == ref_book.apply(cancels)
    assert full_state(c_book) == full_state(ref_book)
    sweep = encode_commands([(OP_MARKET, n + 1, 99, BUY, 0, 10**12, STP_CANCEL_BOTH << 3),
                             (OP_MARKET, n + 2, 99, SELL, 0, 10**12, 0)])
    assert c_book.apply(sweep) == ref_book.apply(sweep)
    assert len(c_book) == 0 and full_state(c_book) == full_state(ref_book)
    c_book.clear()
    assert c_book.apply(data[:7 * 100]) == ReferenceBook().apply(data[:7 * 100])


@pytest.mark.parametrize("seed", [1, 2])
def test_long_random_batches_with_many_live_ids_agree_with_the_reference(c_book_class, seed):
    """Thousands of live orders with ids spread over a wide range (hash collisions, table
    growth, deletions in every position), checked by id afterwards."""
    rng = random.Random(seed)
    id_pool = [rng.choice([rng.randint(1, 3000), rng.randint(1, INT64_MAX)]) for _ in range(4000)]
    rows = []
    for _ in range(30000):
        order_id = rng.choice(id_pool)
        r = rng.random()
        if r < 0.5:
            side = rng.randint(0, 1)
            price = rng.randint(100, 160) + (8 if side else -8)
            rows.append((OP_LIMIT, order_id, rng.randint(0, 50), side, price, rng.randint(1, 20),
                         rng.choice([0, 0, 0, 1, 2]) | rng.choice([0, 4]) | rng.randint(0, 3) << 3))
        elif r < 0.7:
            rows.append((OP_CANCEL, order_id, 0, 0, 0, 0, 0))
        elif r < 0.95:
            rows.append((OP_AMEND, order_id, 0, 0, rng.randint(90, 170), rng.randint(1, 25), 0))
        else:
            rows.append((OP_MARKET, order_id, rng.randint(0, 50), rng.randint(0, 1),
                         rng.choice([0, 120, 140]), rng.randint(1, 60),
                         rng.randint(0, 2) | rng.randint(0, 3) << 3))
    c_book, ref_book = c_book_class(), ReferenceBook()
    for start in range(0, len(rows), 5000):
        data = encode_commands(rows[start:start + 5000])
        assert c_book.apply(data) == ref_book.apply(data)
        assert full_state(c_book) == full_state(ref_book)
        assert len(c_book) > 200
    for order_id in set(id_pool):
        assert c_book.order(order_id) == ref_book.order(order_id)
        assert (order_id in c_book) == (order_id in ref_book)
    cancels = encode_commands([(OP_CANCEL, order_id, 0, 0, 0, 0, 0) for order_id in set(id_pool)])
    assert c_book.apply(cancels) == ref_book.apply(cancels)
    assert len(c_book) == 0 and c_book.snapshot() == b""
