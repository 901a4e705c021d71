"""One test per rule of docs/ORDER_BOOK.md, run against the C book and the reference book.

The `book` fixture gives each test a fresh book of either implementation. The C one is skipped
only when `matching.book` cannot be imported (the extension is not built); with the environment
variable CI set, that is a failure instead.
"""
from array import array

import pytest

from matching.book_protocol import (
    BUY, SELL, GTC, IOC, FOK,
    STP_NONE, STP_CANCEL_RESTING, STP_CANCEL_INCOMING, STP_CANCEL_BOTH,
    OP_LIMIT, OP_MARKET, OP_CANCEL, OP_AMEND,
    EV_FILL, EV_REST, EV_CANCEL, EV_REJECT, EV_AMEND,
    CR_USER, CR_UNFILLED, CR_FOK, CR_POST_ONLY, CR_STP,
    ERR_BAD_ID, ERR_BAD_OWNER, ERR_BAD_SIDE, ERR_BAD_PRICE, ERR_BAD_QTY, ERR_BAD_FLAGS,
    ERR_DUPLICATE_ID, ERR_UNKNOWN_ID, ERR_OVERFLOW, ERR_BAD_OP,
    INT64_MAX, command_flags, decode_events, encode_commands,
)
from matching.reference_book import ReferenceBook
from tests.matching import c_order_book_class


@pytest.fixture(params=["c", "reference"])
def book(request):
    if request.param == "c":
        return c_order_book_class()()
    return ReferenceBook()


# --------------------------------------------------------------------------- event helpers

def fill(taker, maker, price, qty, maker_left):
    return (EV_FILL, taker, maker, price, qty, maker_left)


def rest(order_id, owner, price, qty, side):
    return (EV_REST, order_id, owner, price, qty, side)


def cancel(order_id, owner, price, qty, reason):
    return (EV_CANCEL, order_id, owner, price, qty, reason)


def amended(order_id, owner, price, qty, kept):
    return (EV_AMEND, order_id, owner, price, qty, kept)


def reject(order_id, code):
    return (EV_REJECT, order_id, 0, 0, 0, code)


def events(result):
    """Events as a list of plain tuples, whatever sequence type the book returned."""
    assert isinstance(result, list)
    return [tuple(e) for e in result]


def run_batch(book, rows):
    result = book.apply(encode_commands(rows))
    assert isinstance(result, bytes)
    return decode_events(result)


def limit_row(order_id, owner, side, price, qty, tif=GTC, post_only=False, stp=STP_NONE):
    return (OP_LIMIT, order_id, owner, side, price, qty, command_flags(tif, post_only, stp))


def market_row(order_id, owner, side, qty, protect_price=0, tif=IOC, stp=STP_NONE):
    return (OP_MARKET, order_id, owner, side, protect_price, qty, command_flags(tif, False, stp))


def ask_ladder(book, owner=9):
    """Asks: 10 x5 (id 101), 10 x5 (id 102), 11 x7 (id 103), 13 x4 (id 104)."""
    book.place(101, owner, SELL, 10, 5)
    book.place(102, owner, SELL, 10, 5)
    book.place(103, owner, SELL, 11, 7)
    book.place(104, owner, SELL, 13, 4)


def bid_ladder(book, owner=9):
    """Bids: 9 x5 (id 201), 9 x5 (id 202), 8 x7 (id 203), 6 x4 (id 204)."""
    book.place(201, owner, BUY, 9, 5)
    book.place(202, owner, BUY, 9, 5)
    book.place(203, owner, BUY, 8, 7)
    book.place(204, owner, BUY, 6, 4)


# --------------------------------------------------------------------------- GTC limit orders

def test_gtc_order_that_does_not_cross_rests(book):
    assert events(book.place(1, 7, BUY, 100, 5)) == [rest(1, 7, 100, 5, BUY)]
    assert events(book.place(2, 8, SELL, 101, 3)) == [rest(2, 8, 101, 3, SELL)]
    assert book.order(1) == (BUY, 100, 5, 7, 0)
    assert book.order(2) == (SELL, 101, 3, 8, 0)
    assert (book.best_bid(), book.best_ask()) == (100, 101)


def test_crossing_limit_order_fills_at_makers_price(book):
    book.place(1, 1, SELL, 10, 5)
    assert events(book.place(2, 2, BUY, 12, 5)) == [fill(2, 1, 10, 5, 0)]


def test_sell_limit_fills_at_bid_makers_price(book):
    book.place(1, 1, BUY, 12, 5)
    assert events(book.place(2, 2, SELL, 10, 2)) == [fill(2, 1, 12, 2, 3)]


def test_fill_reports_makers_remaining_quantity(book):
    book.place(1, 1, SELL, 10, 8)
    assert events(book.place(2, 2, BUY, 10, 3)) == [fill(2, 1, 10, 3, 5)]
    assert book.order(1) == (SELL, 10, 5, 1, 0)


def test_fully_filled_maker_leaves_the_book(book):
    book.place(1, 1, SELL, 10, 3)
    book.place(2, 2, BUY, 10, 3)
    assert book.order(1) is None
    assert 1 not in book
    assert book.best_ask() is None
    assert book.depth(5) == ([], [])
    assert book.stats() == (0, 0, 0, 0, 0)


def test_fully_filled_incoming_order_emits_no_further_event(book):
    book.place(1, 1, SELL, 10, 9)
    assert events(book.place(2, 2, BUY, 10, 9)) == [fill(2, 1, 10, 9, 0)]
    assert 2 not in book


def test_gtc_remainder_rests_after_partial_fill(book):
    book.place(1, 1, SELL, 10, 3)
    assert events(book.place(2, 2, BUY, 11, 8)) == [fill(2, 1, 10, 3, 0), rest(2, 2, 11, 5, BUY)]
    assert book.order(2) == (BUY, 11, 5, 2, 0)
    assert (book.best_bid(), book.best_ask()) == (11, None)


def test_incoming_order_sweeps_levels_best_price_first(book):
    ask_ladder(book)
    assert events(book.place(1, 1, BUY, 13, 14)) == [
        fill(1, 101, 10, 5, 0), fill(1, 102, 10, 5, 0), fill(1, 103, 11, 4, 3),
    ]
    assert book.depth(5) == ([], [(11, 3, 1), (13, 4, 1)])


def test_limit_order_does_not_trade_beyond_its_price(book):
    ask_ladder(book)
    assert events(book.place(1, 1, BUY, 10, 30)) == [
        fill(1, 101, 10, 5, 0), fill(1, 102, 10, 5, 0), rest(1, 1, 10, 20, BUY),
    ]
    assert (book.best_bid(), book.best_ask()) == (10, 11)


def test_sell_order_matches_highest_bid_first(book):
    bid_ladder(book)
    assert events(book.place(1, 1, SELL, 8, 20)) == [
        fill(1, 201, 9, 5, 0), fill(1, 202, 9, 5, 0), fill(1, 203, 8, 7, 0),
        rest(1, 1, 8, 3, SELL),
    ]
    assert (book.best_bid(), book.best_ask()) == (6, 8)


# --------------------------------------------------------------------------- price-time priority

def test_orders_at_the_same_price_fill_oldest_first(book):
    book.place(1, 1, SELL, 10, 2)
    book.place(2, 2, SELL, 10, 2)
    book.place(3, 3, SELL, 10, 2)
    assert events(book.place(4, 4, BUY, 10, 5)) == [
        fill(4, 1, 10, 2, 0), fill(4, 2, 10, 2, 0), fill(4, 3, 10, 1, 1),
    ]


def test_better_price_fills_before_older_order(book):
    book.place(1, 1, BUY, 9, 2)
    book.place(2, 2, BUY, 10, 2)
    assert events(book.place(3, 3, SELL, 9, 3)) == [fill(3, 2, 10, 2, 0), fill(3, 1, 9, 1, 1)]


def test_gtc_order_rests_at_the_back_of_its_level(book):
    book.place(1, 1, SELL, 10, 4)
    book.place(2, 2, SELL, 11, 4)
    book.place(3, 3, SELL, 10, 4)
    assert events(book.place(5, 5, BUY, 10, 6)) == [fill(5, 1, 10, 4, 0), fill(5, 3, 10, 2, 2)]


def test_partially_filled_maker_keeps_its_place_at_the_front(book):
    book.place(1, 1, SELL, 10, 5)
    book.place(2, 2, SELL, 10, 5)
    book.place(3, 3, BUY, 10, 2)
    assert events(book.place(4, 4, BUY, 10, 4)) == [fill(4, 1, 10, 3, 0), fill(4, 2, 10, 1, 4)]


# --------------------------------------------------------------------------- IOC

def test_ioc_remainder_is_canceled_unfilled(book):
    book.place(1, 1, SELL, 10, 3)
    assert events(book.place(2, 2, BUY, 10, 5, tif=IOC)) == [
        fill(2, 1, 10, 3, 0), cancel(2, 2, 10, 2, CR_UNFILLED),
    ]
    assert 2 not in book
    assert len(book) == 0


def test_ioc_that_does_not_cross_is_canceled_whole(book):
    book.place(1, 1, SELL, 10, 3)
    assert events(book.place(2, 2, BUY, 9, 5, IOC)) == [cancel(2, 2, 9, 5, CR_UNFILLED)]
    assert book.stats() == (1, 0, 1, 0, 3)


def test_ioc_fully_filled_has_no_cancel_event(book):
    book.place(1, 1, BUY, 10, 3)
    assert events(book.place(2, 2, SELL, 10, 3, tif=IOC)) == [fill(2, 1, 10, 3, 0)]


# --------------------------------------------------------------------------- FOK

def test_fok_that_cannot_fill_entirely_is_canceled_without_trading(book):
    ask_ladder(book)
    before = book.snapshot()
    assert events(book.place(1, 1, BUY, 11, 18, tif=FOK)) == [cancel(1, 1, 11, 18, CR_FOK)]
    assert book.snapshot() == before


def test_fok_that_can_fill_entirely_trades(book):
    ask_ladder(book)
    assert events(book.place(1, 1, BUY, 11, 17, tif=FOK)) == [
        fill(1, 101, 10, 5, 0), fill(1, 102, 10, 5, 0), fill(1, 103, 11, 7, 0),
    ]
    assert book.best_ask() == 13


def test_fok_counts_only_crossing_orders(book):
    ask_ladder(book)
    assert events(book.place(1, 1, BUY, 10, 11, tif=FOK)) == [cancel(1, 1, 10, 11, CR_FOK)]
    assert events(book.place(2, 1, BUY, 10, 10, tif=FOK)) == [
        fill(2, 101, 10, 5, 0), fill(2, 102, 10, 5, 0),
    ]


def test_fok_on_empty_book_is_canceled(book):
    assert events(book.place(1, 1, SELL, 10, 1, tif=FOK)) == [cancel(1, 1, 10, 1, CR_FOK)]


def test_fok_walk_counts_own_orders_without_stp(book):
    book.place(1, 5, SELL, 10, 4)
    book.place(2, 6, SELL, 10, 4)
    assert events(book.place(3, 5, BUY, 10, 8, tif=FOK)) == [
        fill(3, 1, 10, 4, 0), fill(3, 2, 10, 4, 0),
    ]


def test_fok_walk_skips_own_orders_with_stp_cancel_resting(book):
    book.place(1, 5, SELL, 10, 4)
    book.place(2, 6, SELL, 10, 4)
    before = book.snapshot()
    # Only 4 lots of other owners: short of 5, so canceled, and no self-trade cancel either.
    assert events(book.place(3, 5, BUY, 10, 5, FOK, stp=STP_CANCEL_RESTING)) == [
        cancel(3, 5, 10, 5, CR_FOK),
    ]
    assert book.snapshot() == before


def test_fok_with_stp_cancel_resting_that_fills_cancels_own_orders_on_the_way(book):
    book.place(1, 6, SELL, 10, 2)
    book.place(2, 5, SELL, 10, 4)
    book.place(3, 6, SELL, 11, 4)
    assert events(book.place(4, 5, BUY, 11, 6, FOK, stp=STP_CANCEL_RESTING)) == [
        fill(4, 1, 10, 2, 0), cancel(2, 5, 10, 4, CR_STP), fill(4, 3, 11, 4, 0),
    ]
    assert len(book) == 0


@pytest.mark.parametrize("stp", [STP_CANCEL_INCOMING, STP_CANCEL_BOTH])
def test_fok_walk_ends_at_own_order_with_stp_cancel_incoming_or_both(book, stp):
    book.place(1, 6, SELL, 10, 2)
    book.place(2, 5, SELL, 10, 4)
    book.place(3, 6, SELL, 10, 9)
    before = book.snapshot()
    assert events(book.place(4, 5, BUY, 10, 3, FOK, stp=stp)) == [cancel(4, 5, 10, 3, CR_FOK)]
    assert book.snapshot() == before


@pytest.mark.parametrize("stp", [STP_CANCEL_INCOMING, STP_CANCEL_BOTH])
def test_fok_that_fills_before_reaching_own_order_trades(book, stp):
    book.place(1, 6, SELL, 10, 2)
    book.place(2, 5, SELL, 10, 4)
    assert events(book.place(4, 5, BUY, 10, 2, FOK, stp=stp)) == [fill(4, 1, 10, 2, 0)]
    assert book.order(2) == (SELL, 10, 4, 5, 0)


# --------------------------------------------------------------------------- market orders

def test_market_order_without_protection_takes_any_price(book):
    ask_ladder(book)
    assert events(book.market(1, 1, BUY, 20)) == [
        fill(1, 101, 10, 5, 0), fill(1, 102, 10, 5, 0), fill(1, 103, 11, 7, 0),
        fill(1, 104, 13, 3, 1),
    ]


def test_market_remainder_is_canceled_with_protection_price_zero_if_none(book):
    book.place(1, 1, BUY, 10, 2)
    assert events(book.market(2, 2, SELL, 5)) == [
        fill(2, 1, 10, 2, 0), cancel(2, 2, 0, 3, CR_UNFILLED),
    ]


def test_market_with_protection_price_does_not_trade_beyond_it(book):
    ask_ladder(book)
    assert events(book.market(1, 1, BUY, 20, protect_price=11)) == [
        fill(1, 101, 10, 5, 0), fill(1, 102, 10, 5, 0), fill(1, 103, 11, 7, 0),
        cancel(1, 1, 11, 3, CR_UNFILLED),
    ]
    assert book.best_ask() == 13


def test_sell_market_with_protection_price_does_not_trade_below_it(book):
    bid_ladder(book)
    assert events(book.market(1, 1, SELL, 11, 9)) == [
        fill(1, 201, 9, 5, 0), fill(1, 202, 9, 5, 0), cancel(1, 1, 9, 1, CR_UNFILLED),
    ]


def test_market_order_on_empty_book_is_canceled_whole(book):
    assert events(book.market(1, 1, BUY, 5)) == [cancel(1, 1, 0, 5, CR_UNFILLED)]
    assert events(book.market(2, 1, SELL, 5, 7)) == [cancel(2, 1, 7, 5, CR_UNFILLED)]
    assert len(book) == 0


def test_market_gtc_is_taken_as_ioc_and_never_rests(book):
    book.place(1, 1, SELL, 10, 2)
    assert events(book.market(2, 2, BUY, 5, tif=GTC)) == [
        fill(2, 1, 10, 2, 0), cancel(2, 2, 0, 3, CR_UNFILLED),
    ]
    assert 2 not in book
    assert len(book) == 0


def test_market_fok_that_cannot_fill_is_canceled_with_protection_price(book):
    ask_ladder(book)
    before = book.snapshot()
    assert events(book.market(1, 1, BUY, 11, protect_price=10, tif=FOK)) == [
        cancel(1, 1, 10, 11, CR_FOK),
    ]
    assert events(book.market(2, 1, BUY, 22, tif=FOK)) == [cancel(2, 1, 0, 22, CR_FOK)]
    assert book.snapshot() == before


def test_market_fok_that_can_fill_trades(book):
    ask_ladder(book)
    assert events(book.market(1, 1, BUY, 21, tif=FOK)) == [
        fill(1, 101, 10, 5, 0), fill(1, 102, 10, 5, 0), fill(1, 103, 11, 7, 0),
        fill(1, 104, 13, 4, 0),
    ]


def test_market_stp_cancel_incoming_reports_protection_price(book):
    book.place(1, 5, SELL, 10, 2)
    assert events(book.market(2, 5, BUY, 3, 12, stp=STP_CANCEL_INCOMING)) == [
        cancel(2, 5, 12, 3, CR_STP),
    ]
    assert book.order(1) == (SELL, 10, 2, 5, 0)


def test_market_stp_cancel_resting_removes_own_makers(book):
    book.place(1, 5, SELL, 10, 2)
    book.place(2, 6, SELL, 11, 2)
    assert events(book.market(3, 5, BUY, 3, stp=STP_CANCEL_RESTING)) == [
        cancel(1, 5, 10, 2, CR_STP), fill(3, 2, 11, 2, 0), cancel(3, 5, 0, 1, CR_UNFILLED),
    ]


# --------------------------------------------------------------------------- post-only

@pytest.mark.parametrize("price", [10, 11])
def test_post_only_buy_that_would_take_is_canceled(book, price):
    book.place(1, 1, SELL, 10, 5)
    before = book.snapshot()
    assert events(book.place(2, 2, BUY, price, 3, post_only=True)) == [
        cancel(2, 2, price, 3, CR_POST_ONLY),
    ]
    assert book.snapshot() == before


@pytest.mark.parametrize("price", [10, 9])
def test_post_only_sell_at_or_below_best_bid_is_canceled(book, price):
    book.place(1, 1, BUY, 10, 5)
    assert events(book.place(2, 2, SELL, price, 3, post_only=True)) == [
        cancel(2, 2, price, 3, CR_POST_ONLY),
    ]
    assert book.order(1) == (BUY, 10, 5, 1, 0)


def test_post_only_that_does_not_cross_rests(book):
    book.place(1, 1, SELL, 10, 5)
    assert events(book.place(2, 2, BUY, 9, 3, post_only=True)) == [rest(2, 2, 9, 3, BUY)]
    assert events(book.place(3, 2, SELL, 12, 3, post_only=1)) == [rest(3, 2, 12, 3, SELL)]
    assert book.order(2) == (BUY, 9, 3, 2, 4)


def test_post_only_on_empty_book_rests(book):
    assert events(book.place(1, 1, SELL, 10, 5, post_only=True)) == [rest(1, 1, 10, 5, SELL)]


def test_post_only_cancel_ignores_self_trade_prevention(book):
    book.place(1, 1, SELL, 10, 5)
    assert events(book.place(2, 1, BUY, 10, 3, post_only=True, stp=STP_CANCEL_RESTING)) == [
        cancel(2, 1, 10, 3, CR_POST_ONLY),
    ]
    assert 1 in book


def test_post_only_accepts_false_and_zero(book):
    book.place(1, 1, SELL, 10, 5)
    assert events(book.place(2, 2, BUY, 10, 1, post_only=False)) == [fill(2, 1, 10, 1, 4)]
    assert events(book.place(3, 2, BUY, 10, 1, post_only=0)) == [fill(3, 1, 10, 1, 3)]


def test_post_only_ioc_that_does_not_cross_is_canceled_unfilled(book):
    book.place(1, 1, SELL, 10, 5)
    assert events(book.place(2, 2, BUY, 9, 3, IOC, True)) == [cancel(2, 2, 9, 3, CR_UNFILLED)]


# --------------------------------------------------------------------------- self-trade prevention

def test_stp_none_trades_with_own_order(book):
    book.place(1, 5, SELL, 10, 2)
    assert events(book.place(2, 5, BUY, 10, 2)) == [fill(2, 1, 10, 2, 0)]


def test_stp_cancel_resting_removes_own_maker_and_matching_goes_on(book):
    book.place(1, 6, SELL, 10, 2)
    book.place(2, 5, SELL, 10, 3)
    book.place(3, 6, SELL, 10, 4)
    assert events(book.place(4, 5, BUY, 10, 5, stp=STP_CANCEL_RESTING)) == [
        fill(4, 1, 10, 2, 0), cancel(2, 5, 10, 3, CR_STP), fill(4, 3, 10, 3, 1),
    ]
    assert 2 not in book
    assert book.depth(5) == ([], [(10, 1, 1)])


def test_stp_cancel_resting_then_rests_remainder(book):
    book.place(1, 5, SELL, 10, 3)
    assert events(book.place(2, 5, BUY, 10, 4, stp=STP_CANCEL_RESTING)) == [
        cancel(1, 5, 10, 3, CR_STP), rest(2, 5, 10, 4, BUY),
    ]


def test_stp_cancel_incoming_cancels_the_incoming_rest_and_keeps_the_maker(book):
    book.place(1, 6, SELL, 10, 2)
    book.place(2, 5, SELL, 10, 3)
    book.place(3, 6, SELL, 10, 4)
    assert events(book.place(4, 5, BUY, 11, 5, stp=STP_CANCEL_INCOMING)) == [
        fill(4, 1, 10, 2, 0), cancel(4, 5, 11, 3, CR_STP),
    ]
    assert 4 not in book
    assert book.order(2) == (SELL, 10, 3, 5, 0)
    assert book.depth(5) == ([], [(10, 7, 2)])


def test_stp_cancel_both_cancels_maker_then_incoming(book):
    book.place(1, 6, SELL, 10, 2)
    book.place(2, 5, SELL, 10, 3)
    book.place(3, 6, SELL, 10, 4)
    assert events(book.place(4, 5, BUY, 11, 5, stp=STP_CANCEL_BOTH)) == [
        fill(4, 1, 10, 2, 0), cancel(2, 5, 10, 3, CR_STP), cancel(4, 5, 11, 3, CR_STP),
    ]
    assert 2 not in book and 4 not in book
    assert book.depth(5) == ([], [(10, 4, 1)])


@pytest.mark.parametrize("stp", [STP_CANCEL_RESTING, STP_CANCEL_INCOMING, STP_CANCEL_BOTH])
def test_stp_applies_only_to_the_same_owner(book, stp):
    book.place(1, 6, SELL, 10, 2)
    assert events(book.place(2, 5, BUY, 10, 2, stp=stp)) == [fill(2, 1, 10, 2, 0)]


def test_stp_mode_of_the_maker_does_not_matter(book):
    book.place(1, 5, SELL, 10, 2, stp=STP_CANCEL_BOTH)
    assert events(book.place(2, 5, BUY, 10, 2)) == [fill(2, 1, 10, 2, 0)]


def test_stp_cancel_incoming_on_ioc_reports_stp_not_unfilled(book):
    book.place(1, 5, BUY, 10, 2)
    assert events(book.place(2, 5, SELL, 10, 4, IOC, stp=STP_CANCEL_INCOMING)) == [
        cancel(2, 5, 10, 4, CR_STP),
    ]


def test_stp_mode_is_kept_with_the_resting_order(book):
    book.place(1, 5, BUY, 10, 2, stp=STP_CANCEL_BOTH, post_only=True)
    assert book.order(1) == (BUY, 10, 2, 5, 4 | STP_CANCEL_BOTH << 3)


# --------------------------------------------------------------------------- cancel

def test_cancel_removes_the_order_and_reports_it(book):
    book.place(1, 7, BUY, 10, 5)
    assert events(book.cancel(1)) == [cancel(1, 7, 10, 5, CR_USER)]
    assert 1 not in book
    assert book.best_bid() is None
    assert book.stats() == (0, 0, 0, 0, 0)


def test_cancel_reports_the_remaining_quantity_after_fills(book):
    book.place(1, 7, SELL, 10, 5)
    book.place(2, 8, BUY, 10, 3)
    assert events(book.cancel(1)) == [cancel(1, 7, 10, 2, CR_USER)]


def test_cancel_keeps_the_other_orders_of_the_level_in_order(book):
    book.place(1, 1, SELL, 10, 1)
    book.place(2, 2, SELL, 10, 1)
    book.place(3, 3, SELL, 10, 1)
    book.cancel(2)
    assert book.depth(1) == ([], [(10, 2, 2)])
    assert events(book.place(4, 4, BUY, 10, 2)) == [fill(4, 1, 10, 1, 0), fill(4, 3, 10, 1, 0)]


def test_cancel_of_an_unknown_id_raises_key_error(book):
    with pytest.raises(KeyError):
        book.cancel(42)


def test_cancel_twice_raises_key_error(book):
    book.place(1, 1, BUY, 10, 1)
    book.cancel(1)
    with pytest.raises(KeyError):
        book.cancel(1)


def test_cancel_of_a_filled_order_raises_key_error(book):
    book.place(1, 1, BUY, 10, 1)
    book.place(2, 2, SELL, 10, 1)
    with pytest.raises(KeyError):
        book.cancel(1)
    with pytest.raises(KeyError):
        book.cancel(2)


def test_id_of_a_gone_order_can_be_used_again(book):
    book.place(1, 1, BUY, 10, 1)
    book.cancel(1)
    assert events(book.place(1, 2, SELL, 12, 3)) == [rest(1, 2, 12, 3, SELL)]


# --------------------------------------------------------------------------- amend

def test_amend_with_same_price_and_qty_changes_nothing(book):
    book.place(1, 7, BUY, 10, 5)
    book.place(2, 8, BUY, 10, 5)
    before = book.snapshot()
    assert events(book.amend(1, 10, 5)) == [amended(1, 7, 10, 5, 1)]
    assert book.snapshot() == before


def test_reduced_quantity_keeps_time_priority(book):
    book.place(1, 7, BUY, 10, 5)
    book.place(2, 8, BUY, 10, 5)
    assert events(book.amend(1, 10, 2)) == [amended(1, 7, 10, 2, 1)]
    assert book.depth(1) == ([(10, 7, 2)], [])
    assert events(book.place(3, 9, SELL, 10, 3)) == [fill(3, 1, 10, 2, 0), fill(3, 2, 10, 1, 4)]


def test_increased_quantity_loses_time_priority(book):
    book.place(1, 7, BUY, 10, 5)
    book.place(2, 8, BUY, 10, 5)
    assert events(book.amend(1, 10, 6)) == [amended(1, 7, 10, 6, 0)]
    assert book.depth(1) == ([(10, 11, 2)], [])
    assert events(book.place(3, 9, SELL, 10, 6)) == [fill(3, 2, 10, 5, 0), fill(3, 1, 10, 1, 5)]


def test_amend_of_the_only_order_with_more_quantity_reports_priority_lost(book):
    book.place(1, 7, SELL, 10, 5)
    assert events(book.amend(1, 10, 8)) == [amended(1, 7, 10, 8, 0)]
    assert book.order(1) == (SELL, 10, 8, 7, 0)


def test_amend_to_new_price_of_post_only_that_would_cross_cancels_it(book):
    book.place(1, 1, SELL, 12, 5)
    book.place(2, 7, BUY, 10, 4, post_only=True)
    assert events(book.amend(2, 12, 6)) == [cancel(2, 7, 10, 4, CR_POST_ONLY)]
    assert 2 not in book
    assert book.order(1) == (SELL, 12, 5, 1, 0)
    assert book.stats() == (1, 0, 1, 0, 5)


def test_amend_to_new_price_of_post_only_that_does_not_cross_moves_it(book):
    book.place(1, 1, SELL, 12, 5)
    book.place(2, 7, BUY, 10, 4, post_only=True)
    assert events(book.amend(2, 11, 6)) == [amended(2, 7, 11, 6, 0)]
    assert book.order(2) == (BUY, 11, 6, 7, 4)


def test_amend_to_new_price_moves_order_to_the_back_of_the_new_level(book):
    book.place(1, 7, BUY, 10, 5)
    book.place(2, 8, BUY, 11, 5)
    assert events(book.amend(1, 11, 3)) == [amended(1, 7, 11, 3, 0)]
    assert book.depth(5) == ([(11, 8, 2)], [])
    assert events(book.place(3, 9, SELL, 11, 6)) == [fill(3, 2, 11, 5, 0), fill(3, 1, 11, 1, 2)]


def test_amend_away_and_back_loses_time_priority(book):
    book.place(1, 7, BUY, 10, 5)
    book.place(2, 8, BUY, 10, 5)
    book.amend(1, 9, 5)
    book.amend(1, 10, 5)
    assert events(book.place(3, 9, SELL, 10, 6)) == [fill(3, 2, 10, 5, 0), fill(3, 1, 10, 1, 4)]


def test_amend_to_crossing_price_matches_as_incoming_gtc_and_rests_without_event(book):
    book.place(1, 1, SELL, 11, 2)
    book.place(2, 1, SELL, 12, 2)
    book.place(3, 7, BUY, 10, 4)
    assert events(book.amend(3, 11, 5)) == [amended(3, 7, 11, 5, 0), fill(3, 1, 11, 2, 0)]
    assert book.order(3) == (BUY, 11, 3, 7, 0)
    assert book.depth(5) == ([(11, 3, 1)], [(12, 2, 1)])


def test_amend_to_crossing_price_fully_filled_leaves_the_book(book):
    book.place(1, 1, SELL, 11, 5)
    book.place(3, 7, BUY, 10, 4)
    assert events(book.amend(3, 11, 3)) == [amended(3, 7, 11, 3, 0), fill(3, 1, 11, 3, 2)]
    assert 3 not in book
    assert book.stats() == (1, 0, 1, 0, 2)


def test_amend_to_crossing_price_uses_the_orders_stp_cancel_incoming(book):
    book.place(1, 7, SELL, 11, 5)
    book.place(2, 7, BUY, 10, 4, stp=STP_CANCEL_INCOMING)
    assert events(book.amend(2, 11, 4)) == [amended(2, 7, 11, 4, 0), cancel(2, 7, 11, 4, CR_STP)]
    assert 2 not in book
    assert book.order(1) == (SELL, 11, 5, 7, 0)


def test_amend_to_crossing_price_uses_the_orders_stp_cancel_resting(book):
    book.place(1, 7, SELL, 11, 5)
    book.place(2, 8, SELL, 11, 1)
    book.place(3, 7, BUY, 10, 4, stp=STP_CANCEL_RESTING)
    assert events(book.amend(3, 12, 4)) == [
        amended(3, 7, 12, 4, 0), cancel(1, 7, 11, 5, CR_STP), fill(3, 2, 11, 1, 0),
    ]
    assert book.order(3) == (BUY, 12, 3, 7, STP_CANCEL_RESTING << 3)


def test_amend_to_crossing_price_uses_the_orders_stp_cancel_both(book):
    book.place(1, 7, SELL, 11, 5)
    book.place(3, 7, BUY, 10, 4, stp=STP_CANCEL_BOTH)
    assert events(book.amend(3, 11, 2)) == [
        amended(3, 7, 11, 2, 0), cancel(1, 7, 11, 5, CR_STP), cancel(3, 7, 11, 2, CR_STP),
    ]
    assert len(book) == 0


def test_amend_to_crossing_price_trades_with_own_orders_without_stp(book):
    book.place(1, 7, SELL, 11, 5)
    book.place(3, 7, BUY, 10, 4)
    assert events(book.amend(3, 11, 2)) == [amended(3, 7, 11, 2, 0), fill(3, 1, 11, 2, 3)]


def test_amend_of_an_unknown_id_raises_key_error(book):
    with pytest.raises(KeyError):
        book.amend(5, 10, 1)


def test_amend_with_bad_price_or_qty_raises_value_error_before_unknown_id(book):
    with pytest.raises(ValueError):
        book.amend(5, 0, 1)
    with pytest.raises(ValueError):
        book.amend(5, 10, 0)


# --------------------------------------------------------------------------- level overflow

def test_level_total_may_reach_int64_max(book):
    book.place(1, 1, BUY, 10, INT64_MAX - 5)
    book.place(2, 1, BUY, 10, 5)
    assert book.depth(1) == ([(10, INT64_MAX, 2)], [])


def test_order_that_would_overflow_its_level_is_refused(book):
    book.place(1, 1, BUY, 10, INT64_MAX - 5)
    before = book.snapshot()
    with pytest.raises(ValueError):
        book.place(2, 1, BUY, 10, 6)
    with pytest.raises(ValueError):
        book.place(3, 1, BUY, 10, 6, post_only=True)
    assert book.snapshot() == before
    assert events(book.place(4, 1, BUY, 11, 6)) == [rest(4, 1, 11, 6, BUY)]


def test_amend_with_more_quantity_that_would_overflow_its_level_is_refused(book):
    book.place(1, 1, SELL, 10, INT64_MAX - 5)
    book.place(2, 1, SELL, 10, 3)
    before = book.snapshot()
    with pytest.raises(ValueError):
        book.amend(2, 10, 9)
    assert book.snapshot() == before
    assert events(book.amend(2, 10, 5)) == [amended(2, 1, 10, 5, 0)]


def test_amend_to_a_level_it_would_overflow_is_refused(book):
    book.place(1, 1, SELL, 10, INT64_MAX - 5)
    book.place(2, 1, SELL, 11, 9)
    before = book.snapshot()
    with pytest.raises(ValueError):
        book.amend(2, 10, 6)
    assert book.snapshot() == before


def test_side_totals_beyond_64_bits_are_reported_exactly(book):
    book.place(1, 1, BUY, 10, INT64_MAX)
    book.place(2, 1, BUY, 9, INT64_MAX)
    book.place(3, 1, SELL, 11, INT64_MAX)
    assert book.stats() == (3, 2, 1, 2 * INT64_MAX, INT64_MAX)


def test_big_quantities_fill_exactly(book):
    book.place(1, 1, SELL, 10, INT64_MAX)
    assert events(book.place(2, 2, BUY, 10, INT64_MAX - 1)) == [fill(2, 1, 10, INT64_MAX - 1, 1)]


# --------------------------------------------------------------------------- queries

def test_best_prices_are_none_on_an_empty_book(book):
    assert book.best_bid() is None
    assert book.best_ask() is None


def test_best_prices_follow_the_book(book):
    bid_ladder(book)
    book.place(1, 1, SELL, 15, 1)
    book.place(2, 1, SELL, 14, 1)
    assert (book.best_bid(), book.best_ask()) == (9, 14)
    book.cancel(201)
    book.cancel(202)
    book.cancel(2)
    assert (book.best_bid(), book.best_ask()) == (8, 15)


def test_depth_lists_levels_best_first_with_quantity_and_order_count(book):
    ask_ladder(book)
    bid_ladder(book)
    assert book.depth(10) == ([(9, 10, 2), (8, 7, 1), (6, 4, 1)],
                              [(10, 10, 2), (11, 7, 1), (13, 4, 1)])


def test_depth_is_limited_to_the_number_of_levels(book):
    ask_ladder(book)
    book.place(1, 1, BUY, 5, 1)
    book.place(2, 1, BUY, 4, 1)
    assert book.depth(1) == ([(5, 1, 1)], [(10, 10, 2)])
    assert book.depth(2) == ([(5, 1, 1), (4, 1, 1)], [(10, 10, 2), (11, 7, 1)])
    assert book.depth(0) == ([], [])


def test_depth_with_negative_levels_raises_value_error(book):
    with pytest.raises(ValueError):
        book.depth(-1)


def test_order_reports_side_price_qty_owner_and_flags(book):
    book.place(1, 3, SELL, 10, 5, post_only=True, stp=STP_CANCEL_INCOMING)
    book.place(2, 4, BUY, 9, 6, stp=STP_CANCEL_RESTING)
    assert book.order(1) == (SELL, 10, 5, 3, 4 | 2 << 3)
    assert book.order(2) == (BUY, 9, 6, 4, 1 << 3)


def test_order_of_an_id_that_is_not_resting_is_none(book):
    assert book.order(1) is None
    book.place(1, 1, BUY, 10, 1, tif=IOC)
    assert book.order(1) is None


def test_stats_count_orders_levels_and_quantity_per_side(book):
    ask_ladder(book)
    bid_ladder(book)
    assert book.stats() == (8, 3, 3, 21, 21)
    book.cancel(104)
    assert book.stats() == (7, 3, 2, 21, 17)


def test_len_and_in_tell_the_resting_orders(book):
    assert len(book) == 0
    assert 1 not in book
    book.place(1, 1, BUY, 10, 1)
    book.place(2, 1, SELL, 11, 1)
    assert len(book) == 2
    assert 1 in book and 2 in book and 3 not in book


def test_clear_removes_every_order(book):
    ask_ladder(book)
    bid_ladder(book)
    assert book.clear() is None
    assert len(book) == 0
    assert book.stats() == (0, 0, 0, 0, 0)
    assert book.snapshot() == b""
    assert (book.best_bid(), book.best_ask()) == (None, None)
    assert events(book.place(101, 1, BUY, 20, 1)) == [rest(101, 1, 20, 1, BUY)]


# --------------------------------------------------------------------------- snapshot / restore

def snapshot_bytes(*records):
    return array("q", [v for record in records for v in record]).tobytes()


def test_snapshot_lists_orders_in_priority_order(book):
    book.place(1, 1, SELL, 12, 1)
    book.place(2, 2, BUY, 9, 2, post_only=True)
    book.place(3, 3, SELL, 11, 3, stp=STP_CANCEL_BOTH)
    book.place(4, 4, BUY, 10, 4)
    book.place(5, 5, BUY, 9, 5)
    book.place(6, 6, SELL, 11, 6)
    data = book.snapshot()
    assert isinstance(data, bytes)
    assert data == snapshot_bytes(
        (4, 4, BUY, 10, 4, 0), (2, 2, BUY, 9, 2, 4), (5, 5, BUY, 9, 5, 0),
        (3, 3, SELL, 11, 3, 24), (6, 6, SELL, 11, 6, 0), (1, 1, SELL, 12, 1, 0),
    )


def test_empty_book_snapshot_is_empty(book):
    assert book.snapshot() == b""


def test_snapshot_restore_round_trip_keeps_orders_and_priority(book):
    ask_ladder(book, owner=3)
    bid_ladder(book, owner=4)
    book.place(5, 5, SELL, 11, 2, post_only=True, stp=STP_CANCEL_RESTING)
    book.amend(101, 10, 6)  # now behind 102
    data = book.snapshot()
    state = (book.depth(10), book.stats(), book.order(5), book.order(101))
    book.clear()
    assert book.restore(data) is None
    assert book.snapshot() == data
    assert (book.depth(10), book.stats(), book.order(5), book.order(101)) == state
    assert events(book.place(9, 9, BUY, 10, 7)) == [fill(9, 102, 10, 5, 0), fill(9, 101, 10, 2, 4)]


def test_restore_into_another_book_gives_the_same_book(book):
    reference = ReferenceBook()
    ask_ladder(reference)
    bid_ladder(reference)
    book.restore(reference.snapshot())
    assert book.snapshot() == reference.snapshot()
    assert len(book) == 8


def test_restore_accepts_any_buffer(book):
    data = array("q", [1, 2, SELL, 10, 3, 0])
    book.restore(data)
    assert book.order(1) == (SELL, 10, 3, 2, 0)
    book.clear()
    book.restore(bytearray(data.tobytes()))
    book.clear()
    book.restore(memoryview(data.tobytes()))
    assert book.order(1) == (SELL, 10, 3, 2, 0)


def test_restore_of_an_empty_snapshot_gives_an_empty_book(book):
    book.restore(b"")
    assert len(book) == 0


def test_restore_refuses_a_book_that_is_not_empty(book):
    book.place(1, 1, BUY, 10, 1)
    before = book.snapshot()
    with pytest.raises(ValueError):
        book.restore(snapshot_bytes((2, 1, SELL, 12, 1, 0)))
    assert book.snapshot() == before


@pytest.mark.parametrize("bid_price", [12, 13])
def test_restore_refuses_a_crossed_book(book, bid_price):
    data = snapshot_bytes((1, 1, BUY, 10, 1, 0), (2, 1, SELL, 12, 1, 0),
                          (3, 1, BUY, bid_price, 1, 0))
    with pytest.raises(ValueError):
        book.restore(data)
    assert len(book) == 0
    assert book.snapshot() == b""


def test_restore_refuses_duplicate_ids(book):
    data = snapshot_bytes((1, 1, BUY, 10, 1, 0), (2, 1, SELL, 12, 1, 0), (1, 2, SELL, 13, 1, 0))
    with pytest.raises(ValueError):
        book.restore(data)
    assert len(book) == 0


GOOD_RECORD = (1, 0, BUY, 10, 1, 0)


@pytest.mark.parametrize("field, value", [
    (0, 0), (0, -1), (1, -1), (2, 2), (2, -1), (3, 0), (3, -10), (4, 0), (4, -1),
    (5, -1), (5, 1), (5, 2), (5, 3), (5, 32), (5, 1 << 62),
])
def test_restore_refuses_out_of_range_fields(book, field, value):
    record = list(GOOD_RECORD)
    record[field] = value
    with pytest.raises(ValueError):
        book.restore(snapshot_bytes((5, 5, SELL, 20, 5, 0), record))
    assert len(book) == 0


def test_restore_refuses_a_level_total_beyond_int64(book):
    data = snapshot_bytes((1, 1, BUY, 10, INT64_MAX, 0), (2, 1, BUY, 10, 1, 0))
    with pytest.raises(ValueError):
        book.restore(data)
    assert len(book) == 0


@pytest.mark.parametrize("size", [1, 8, 47, 49, 56])
def test_restore_refuses_data_that_is_not_whole_records(book, size):
    with pytest.raises(ValueError):
        book.restore(bytes(size))
    assert len(book) == 0


def test_restore_refuses_non_buffers_with_type_error(book):
    for value in (None, 5, "abc", [1, 2, 3, 4, 5, 6]):
        with pytest.raises(TypeError):
            book.restore(value)


# --------------------------------------------------------------------------- batch apply

def test_batch_applies_every_op_and_concatenates_events(book):
    got = run_batch(book, [
        limit_row(1, 1, SELL, 10, 5),
        limit_row(2, 1, SELL, 11, 5, post_only=True, stp=STP_CANCEL_BOTH),
        limit_row(3, 2, BUY, 10, 2),
        (OP_AMEND, 1, 0, 0, 10, 1, 0),
        market_row(4, 2, BUY, 3, protect_price=11),
        (OP_CANCEL, 2, 0, 0, 0, 0, 0),
        limit_row(5, 2, BUY, 12, 3, tif=FOK),
    ])
    assert got == [
        rest(1, 1, 10, 5, SELL),
        rest(2, 1, 11, 5, SELL),
        fill(3, 1, 10, 2, 3),
        amended(1, 1, 10, 1, 1),
        fill(4, 1, 10, 1, 0), fill(4, 2, 11, 2, 3),
        cancel(2, 1, 11, 3, CR_USER),
        cancel(5, 2, 12, 3, CR_FOK),
    ]
    assert len(book) == 0


def test_batch_reject_leaves_the_book_unchanged_and_the_batch_goes_on(book):
    got = run_batch(book, [
        limit_row(1, 1, SELL, 10, 5),
        limit_row(1, 1, SELL, 11, 5),
        (OP_CANCEL, 7, 0, 0, 0, 0, 0),
        limit_row(2, 2, BUY, 10, 0),
        limit_row(3, 2, BUY, 10, 2),
    ])
    assert got == [
        rest(1, 1, 10, 5, SELL),
        reject(1, ERR_DUPLICATE_ID),
        reject(7, ERR_UNKNOWN_ID),
        reject(2, ERR_BAD_QTY),
        fill(3, 1, 10, 2, 3),
    ]
    assert book.snapshot() == snapshot_bytes((1, 1, SELL, 10, 3, 0))


MAX = INT64_MAX


@pytest.mark.parametrize("row, code", [
    ((0, 1, 1, BUY, 10, 1, 0), ERR_BAD_OP),
    ((5, 1, 1, BUY, 10, 1, 0), ERR_BAD_OP),
    ((-1, 1, 1, BUY, 10, 1, 0), ERR_BAD_OP),
    ((OP_LIMIT, 0, 1, BUY, 10, 1, 0), ERR_BAD_ID),
    ((OP_LIMIT, -5, 1, BUY, 10, 1, 0), ERR_BAD_ID),
    ((OP_LIMIT, 1, -1, BUY, 10, 1, 0), ERR_BAD_OWNER),
    ((OP_LIMIT, 1, 1, 2, 10, 1, 0), ERR_BAD_SIDE),
    ((OP_LIMIT, 1, 1, -1, 10, 1, 0), ERR_BAD_SIDE),
    ((OP_LIMIT, 1, 1, BUY, 0, 1, 0), ERR_BAD_PRICE),
    ((OP_LIMIT, 1, 1, BUY, -1, 1, 0), ERR_BAD_PRICE),
    ((OP_LIMIT, 1, 1, BUY, 10, 0, 0), ERR_BAD_QTY),
    ((OP_LIMIT, 1, 1, BUY, 10, -MAX - 1, 0), ERR_BAD_QTY),
    ((OP_LIMIT, 1, 1, BUY, 10, 1, 3), ERR_BAD_FLAGS),
    ((OP_LIMIT, 1, 1, BUY, 10, 1, 32), ERR_BAD_FLAGS),
    ((OP_LIMIT, 1, 1, BUY, 10, 1, -1), ERR_BAD_FLAGS),
    ((OP_LIMIT, 1, 1, BUY, 10, 1, 1 << 40), ERR_BAD_FLAGS),
    ((OP_MARKET, 0, 1, BUY, 0, 1, 1), ERR_BAD_ID),
    ((OP_MARKET, 1, -1, BUY, 0, 1, 1), ERR_BAD_OWNER),
    ((OP_MARKET, 1, 1, 5, 0, 1, 1), ERR_BAD_SIDE),
    ((OP_MARKET, 1, 1, BUY, -1, 1, 1), ERR_BAD_PRICE),
    ((OP_MARKET, 1, 1, BUY, 0, 0, 1), ERR_BAD_QTY),
    ((OP_MARKET, 1, 1, BUY, 0, 1, 3), ERR_BAD_FLAGS),
    ((OP_MARKET, 1, 1, BUY, 0, 1, 1 | 4), ERR_BAD_FLAGS),
    ((OP_MARKET, 1, 1, BUY, 0, 1, 64), ERR_BAD_FLAGS),
    ((OP_CANCEL, 0, 0, 0, 0, 0, 0), ERR_BAD_ID),
    ((OP_CANCEL, -3, 0, 0, 0, 0, 0), ERR_BAD_ID),
    ((OP_CANCEL, 99, 0, 0, 0, 0, 0), ERR_UNKNOWN_ID),
    ((OP_AMEND, 0, 0, 0, 10, 1, 0), ERR_BAD_ID),
    ((OP_AMEND, 99, 0, 0, 0, 1, 0), ERR_BAD_PRICE),
    ((OP_AMEND, 99, 0, 0, 10, 0, 0), ERR_BAD_QTY),
    ((OP_AMEND, 99, 0, 0, 10, 1, 0), ERR_UNKNOWN_ID),
    ((OP_LIMIT, 50, 1, SELL, 10, 1, 0), ERR_DUPLICATE_ID),
    ((OP_MARKET, 50, 1, SELL, 0, 1, 1), ERR_DUPLICATE_ID),
    ((OP_LIMIT, 1, 1, SELL, 20, MAX, 0), ERR_OVERFLOW),
    ((OP_AMEND, 50, 0, 0, 20, MAX, 0), ERR_OVERFLOW),
])
def test_batch_rejects_carry_the_error_code(book, row, code):
    book.place(50, 1, SELL, 20, 1)
    book.place(51, 1, SELL, 20, 1)
    before = book.snapshot()
    assert run_batch(book, [row]) == [reject(row[1], code)]
    assert book.snapshot() == before


@pytest.mark.parametrize("row, code", [
    ((OP_LIMIT, 0, -1, 2, 0, 0, 3), ERR_BAD_ID),
    ((OP_LIMIT, 1, -1, 2, 0, 0, 3), ERR_BAD_OWNER),
    ((OP_LIMIT, 1, 0, 2, 0, 0, 3), ERR_BAD_SIDE),
    ((OP_LIMIT, 1, 0, 0, 0, 0, 3), ERR_BAD_PRICE),
    ((OP_LIMIT, 1, 0, 0, 1, 0, 3), ERR_BAD_QTY),
    ((OP_LIMIT, 1, 0, 0, 1, 1, 3), ERR_BAD_FLAGS),
    ((OP_LIMIT, 50, 0, 0, 1, 1, 3), ERR_BAD_FLAGS),
    ((OP_LIMIT, 50, 0, SELL, 20, MAX, 0), ERR_DUPLICATE_ID),
    ((OP_MARKET, 1, 0, 0, -1, 0, 7), ERR_BAD_PRICE),
    ((OP_MARKET, 50, 0, 0, 0, 1, 7), ERR_BAD_FLAGS),
    ((OP_AMEND, 0, 0, 0, 0, 0, 0), ERR_BAD_ID),
    ((OP_AMEND, 99, 0, 0, 0, 0, 0), ERR_BAD_PRICE),
    ((OP_AMEND, 99, 0, 0, 20, MAX, 0), ERR_UNKNOWN_ID),
])
def test_batch_validation_reports_the_first_wrong_field(book, row, code):
    book.place(50, 1, SELL, 20, 1)
    assert run_batch(book, [row]) == [reject(row[1], code)]


@pytest.mark.parametrize("row", [
    (OP_CANCEL, 50, -1, 9, -1, -1, -1),
    (OP_AMEND, 50, -1, 9, 20, 1, -1),
])
def test_batch_ignores_unused_fields(book, row):
    book.place(50, 1, SELL, 20, 2)
    assert run_batch(book, [row])[0][0] in (EV_CANCEL, EV_AMEND)


def test_batch_market_with_gtc_flags_is_taken_as_ioc(book):
    book.place(1, 1, SELL, 10, 1)
    assert run_batch(book, [(OP_MARKET, 2, 2, BUY, 0, 3, GTC)]) == [
        fill(2, 1, 10, 1, 0), cancel(2, 2, 0, 2, CR_UNFILLED),
    ]


def test_batch_gives_the_same_events_as_single_calls(book):
    single = ReferenceBook()
    rows = [
        limit_row(1, 1, SELL, 10, 5), limit_row(2, 2, SELL, 10, 5, stp=STP_CANCEL_RESTING),
        limit_row(3, 1, BUY, 10, 7, stp=STP_CANCEL_BOTH), limit_row(4, 3, BUY, 9, 4, IOC),
        market_row(5, 4, SELL, 9, 0, FOK), (OP_AMEND, 2, 0, 0, 8, 9, 0),
        limit_row(6, 4, SELL, 7, 3, post_only=True), (OP_CANCEL, 2, 0, 0, 0, 0, 0),
    ]
    expected = []
    expected += single.place(1, 1, SELL, 10, 5)
    expected += single.place(2, 2, SELL, 10, 5, stp=STP_CANCEL_RESTING)
    expected += single.place(3, 1, BUY, 10, 7, stp=STP_CANCEL_BOTH)
    expected += single.place(4, 3, BUY, 9, 4, IOC)
    expected += single.market(5, 4, SELL, 9, 0, FOK)
    expected += single.amend(2, 8, 9)
    expected += single.place(6, 4, SELL, 7, 3, post_only=True)
    expected += single.cancel(2)
    assert run_batch(book, rows) == expected
    assert book.snapshot() == single.snapshot()


def test_batch_accepts_any_buffer_of_int64(book):
    rows = encode_commands([limit_row(1, 1, SELL, 10, 5)])
    assert decode_events(book.apply(rows.tobytes())) == [rest(1, 1, 10, 5, SELL)]
    rows = encode_commands([limit_row(2, 1, SELL, 11, 5)])
    assert decode_events(book.apply(memoryview(bytearray(rows.tobytes())))) == [
        rest(2, 1, 11, 5, SELL),
    ]
    assert decode_events(book.apply(encode_commands([(OP_CANCEL, 1, 0, 0, 0, 0, 0)]))) == [
        cancel(1, 1, 10, 5, CR_USER),
    ]


def test_empty_batch_gives_no_events(book):
    assert book.apply(b"") == b""
    assert book.apply(array("q")) == b""


@pytest.mark.parametrize("extra", [1, 8, 55])
def test_batch_whose_size_is_not_whole_records_raises_before_applying(book, extra):
    data = encode_commands([limit_row(1, 1, SELL, 10, 5)]).tobytes() + bytes(extra)
    with pytest.raises(ValueError):
        book.apply(data)
    assert len(book) == 0


def test_batch_of_a_non_buffer_raises_type_error(book):
    for value in (None, 5, "abc", [limit_row(1, 1, SELL, 10, 5)]):
        with pytest.raises(TypeError):
            book.apply(value)
    assert len(book) == 0


def test_batch_reject_of_a_command_names_the_order_id_as_given(book):
    assert run_batch(book, [(OP_LIMIT, -MAX - 1, 0, 0, 1, 1, 0)]) == [reject(-MAX - 1, ERR_BAD_ID)]


# --------------------------------------------------------------------------- single-call errors

VALID_PLACE = dict(order_id=1, owner=0, side=BUY, price=10, qty=1, tif=GTC, post_only=False,
                   stp=STP_NONE)
VALID_MARKET = dict(order_id=1, owner=0, side=BUY, qty=1, protect_price=0, tif=IOC, stp=STP_NONE)

BAD_PLACE_VALUES = [
    ("order_id", 0), ("order_id", -1), ("order_id", 2**63), ("order_id", 2**64),
    ("order_id", -2**63 - 1), ("order_id", 10**30),
    ("owner", -1), ("owner", 2**63), ("owner", -2**70),
    ("side", 2), ("side", -1), ("side", 2**64),
    ("price", 0), ("price", -1), ("price", 2**63),
    ("qty", 0), ("qty", -1), ("qty", 2**63), ("qty", 2**100),
    ("tif", 3), ("tif", -1), ("tif", 2**64),
    ("post_only", 2), ("post_only", -1), ("post_only", 2**64),
    ("stp", 4), ("stp", -1), ("stp", 2**65),
]
BAD_TYPES = [1.0, "1", None, True, False, b"1", [1], 1j]


@pytest.mark.parametrize("name, value", BAD_PLACE_VALUES)
def test_place_with_an_out_of_range_value_raises_value_error(book, name, value):
    book.place(50, 1, SELL, 20, 1)
    before = book.snapshot()
    with pytest.raises(ValueError):
        book.place(**{**VALID_PLACE, name: value})
    assert book.snapshot() == before


@pytest.mark.parametrize("name, value", [
    (name, value) for name in VALID_PLACE for value in BAD_TYPES
    if not (name == "post_only" and isinstance(value, bool))  # post_only takes a bool
], ids=repr)
def test_place_with_a_value_of_the_wrong_type_raises_type_error(book, name, value):
    with pytest.raises(TypeError):
        book.place(**{**VALID_PLACE, name: value})
    assert len(book) == 0


@pytest.mark.parametrize("name, value", [
    ("order_id", 0), ("order_id", 2**64), ("owner", -1), ("side", 2), ("qty", 0), ("qty", 2**63),
    ("protect_price", -1), ("protect_price", 2**63), ("tif", 3), ("stp", 4), ("stp", -1),
])
def test_market_with_an_out_of_range_value_raises_value_error(book, name, value):
    book.place(50, 1, SELL, 20, 1)
    before = book.snapshot()
    with pytest.raises(ValueError):
        book.market(**{**VALID_MARKET, name: value})
    assert book.snapshot() == before


@pytest.mark.parametrize("name", list(VALID_MARKET))
@pytest.mark.parametrize("value", BAD_TYPES, ids=repr)
def test_market_with_a_value_of_the_wrong_type_raises_type_error(book, name, value):
    book.place(50, 1, SELL, 20, 1)
    with pytest.raises(TypeError):
        book.market(**{**VALID_MARKET, name: value})
    assert len(book) == 1


def test_argument_types_are_checked_before_values(book):
    # Arguments are converted first, in signature order; only then is the command checked.
    with pytest.raises(TypeError):
        book.place(0, "1", BUY, 10, 1)
    with pytest.raises(TypeError):
        book.market(0, 0, BUY, 1, protect_price=1.5)
    with pytest.raises(TypeError):
        book.amend(0, 10, None)
    with pytest.raises(ValueError):
        book.place(2**64, "1", BUY, 10, 1)  # order_id does not fit: refused before owner's type


def test_place_with_the_id_of_a_resting_order_raises_value_error(book):
    book.place(1, 1, SELL, 20, 1)
    for call in (lambda: book.place(1, 2, BUY, 10, 1), lambda: book.place(1, 2, BUY, 20, 1, IOC),
                 lambda: book.market(1, 2, BUY, 1)):
        with pytest.raises(ValueError):
            call()
    assert book.snapshot() == snapshot_bytes((1, 1, SELL, 20, 1, 0))


@pytest.mark.parametrize("order_id", [0, -1, 2**63, 2**64, -2**64])
def test_cancel_with_an_out_of_range_id_raises_value_error(book, order_id):
    with pytest.raises(ValueError):
        book.cancel(order_id)


@pytest.mark.parametrize("args", [(0, 10, 1), (1, 0, 1), (1, 10, 0), (1, -1, 1), (1, 10, -1),
                                  (2**63, 10, 1), (1, 2**63, 1), (1, 10, 2**63), (1, 10, 2**70)])
def test_amend_with_an_out_of_range_value_raises_value_error(book, args):
    book.place(1, 1, SELL, 20, 1)
    before = book.snapshot()
    with pytest.raises(ValueError):
        book.amend(*args)
    assert book.snapshot() == before


@pytest.mark.parametrize("value", BAD_TYPES, ids=repr)
def test_cancel_amend_and_queries_with_a_value_of_the_wrong_type_raise_type_error(book, value):
    book.place(1, 1, SELL, 20, 1)
    before = book.snapshot()
    for call in (lambda: book.cancel(value), lambda: book.amend(value, 10, 1),
                 lambda: book.amend(1, value, 1), lambda: book.amend(1, 10, value),
                 lambda: book.depth(value), lambda: book.order(value)):
        with pytest.raises(TypeError):
            call()
    assert book.snapshot() == before


@pytest.mark.parametrize("call", [
    lambda b: b.place(1, 0, BUY, 10),
    lambda b: b.place(1, 0, BUY, 10, 1, GTC, False, STP_NONE, 0),
    lambda b: b.place(1, 0, BUY, 10, 1, colour=1),
    lambda b: b.place(1, 0, BUY, 10, 1, order_id=1),
    lambda b: b.market(1, 0, BUY),
    lambda b: b.market(1, 0, BUY, 1, post_only=True),
    lambda b: b.market(1, 0, BUY, 1, price=10),
    lambda b: b.cancel(),
    lambda b: b.cancel(1, 2),
    lambda b: b.amend(1, 10),
    lambda b: b.amend(1, 10, 1, 1),
    lambda b: b.depth(),
    lambda b: b.order(),
    lambda b: b.apply(),
    lambda b: b.restore(),
    lambda b: b.best_bid(1),
    lambda b: b.stats(1),
    lambda b: b.snapshot(1),
    lambda b: b.clear(1),
], ids=lambda f: "")
def test_wrong_argument_count_or_unknown_keyword_raises_type_error(book, call):
    with pytest.raises(TypeError):
        call(book)
    assert len(book) == 0


def test_keyword_arguments_work_as_documented(book):
    assert events(book.place(order_id=1, owner=2, side=SELL, price=10, qty=5, tif=GTC,
                             post_only=True, stp=STP_CANCEL_BOTH)) == [rest(1, 2, 10, 5, SELL)]
    assert events(book.market(order_id=2, owner=3, side=BUY, qty=1, protect_price=10, tif=FOK,
                              stp=STP_NONE)) == [fill(2, 1, 10, 1, 4)]
    assert events(book.amend(order_id=1, price=10, qty=3)) == [amended(1, 2, 10, 3, 1)]
    assert events(book.place(3, 4, BUY, 9, 1, stp=STP_CANCEL_RESTING)) == [rest(3, 4, 9, 1, BUY)]
    assert events(book.cancel(order_id=1)) == [cancel(1, 2, 10, 3, CR_USER)]


def test_int_subclasses_other_than_bool_are_integers(book):
    import enum

    class Side(enum.IntEnum):
        SELL = 1

    assert events(book.place(1, 0, Side.SELL, 10, 1)) == [rest(1, 0, 10, 1, SELL)]


def test_refused_commands_leave_the_book_exactly_as_it_was(book):
    ask_ladder(book)
    bid_ladder(book)
    before = (book.snapshot(), book.stats(), book.depth(10))
    for call in (
        lambda: book.place(101, 1, BUY, 13, 100),
        lambda: book.place(1, 1, BUY, 13, 100, tif=7),
        lambda: book.place(1, 1, BUY, 13, 100, stp=9),
        lambda: book.place(1, 1, BUY, 13.0, 100),
        lambda: book.market(1, 1, BUY, 0),
        lambda: book.market(104, 1, BUY, 10),
        lambda: book.cancel(1),
        lambda: book.amend(1, 10, 1),
        lambda: book.amend(101, 10, 0),
        lambda: book.amend(201, 9, INT64_MAX),
        lambda: book.restore(b""),
    ):
        with pytest.raises((TypeError, ValueError, KeyError)):
            call()
        assert (book.snapshot(), book.stats(), book.depth(10)) == before
