from decimal import Decimal as D
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.contracts import (
    ContractTerms, apply_fill, avg_entry_price, contract_value, fee, initial_margin, price_to_ticks,
    qty_to_lots, unrealized_pnl,
)

INVERSE = ContractTerms(is_inverse=True, contract_size=D(1), tick_size=D("0.5"), lot_size=100,
                        settle_places=D("1e-8"))
LINEAR = ContractTerms(is_inverse=False, contract_size=D("0.000001"), tick_size=D("0.5"), lot_size=100,
                       settle_places=D("1e-6"))


def test_price_off_the_tick_grid_is_an_error_not_rounded():
    assert price_to_ticks(D("50000.5"), INVERSE) == 100001
    with pytest.raises(ValueError, match="tickSize"):
        price_to_ticks(D("50000.25"), INVERSE)
    with pytest.raises(ValueError):
        price_to_ticks(D("-1"), INVERSE)


def test_quantity_must_be_a_whole_number_of_lots():
    assert qty_to_lots(300, INVERSE) == 3
    with pytest.raises(ValueError, match="orderQty is invalid"):
        qty_to_lots(150, INVERSE)


def test_inverse_long_pnl_follows_the_inverse_formula():
    opened = apply_fill(0, D(0), 1000, D(50000), INVERSE)
    closed = apply_fill(opened.qty, opened.entry_value, -1000, D(55000), INVERSE)
    assert closed.qty == 0
    assert closed.realized_pnl == D("0.00181818")  # 1000 * (1/50000 - 1/55000)


def test_inverse_short_loses_when_price_rises():
    opened = apply_fill(0, D(0), -1000, D(50000), INVERSE)
    assert unrealized_pnl(opened.qty, opened.entry_value, D(55000), INVERSE) == D("-0.00181818")


def test_linear_short_flip_realizes_the_closed_part_and_opens_the_rest_at_the_fill_price():
    short = apply_fill(0, D(0), -2_000_000, D(50000), LINEAR)
    flipped = apply_fill(short.qty, short.entry_value, 3_000_000, D(49000), LINEAR)
    assert flipped.realized_pnl == D("2000.000000")
    assert flipped.qty == 1_000_000
    assert avg_entry_price(flipped.qty, flipped.entry_value, LINEAR) == D(49000)
    assert (flipped.closed_qty, flipped.opened_qty) == (2_000_000, 1_000_000)


def test_inverse_average_entry_is_the_harmonic_mean():
    a = apply_fill(0, D(0), 1000, D(40000), INVERSE)
    b = apply_fill(a.qty, a.entry_value, 1000, D(60000), INVERSE)
    assert avg_entry_price(b.qty, b.entry_value, INVERSE) == D(48000)


def test_fees_margin_and_rebates_are_rounded_to_the_settlement_unit():
    assert fee(1000, D(50000), D("0.00075"), INVERSE) == D("0.00001500")
    assert fee(1000, D(50000), D("-0.0001"), INVERSE) == D("-0.00000200")
    assert initial_margin(1000, D(30000), D(100), INVERSE) == D("0.00033334")  # 0.000333..., rounded up
    assert contract_value(-1000, D(50000), INVERSE) == D("0.02")


@settings(max_examples=300, deadline=None)
@given(terms=st.sampled_from([INVERSE, LINEAR]),
       fills=st.lists(st.tuples(st.integers(-50, 50).filter(bool), st.integers(1, 200_000)), min_size=1, max_size=30),
       exit_ticks=st.integers(1, 200_000))
def test_realized_plus_unrealized_equals_exact_total_pnl(terms, fills, exit_ticks):
    """Whatever the path, the PnL booked equals the exact PnL of all cash flows, within rounding."""
    qty, entry, realized = 0, D(0), D(0)
    cash = Fraction(0)  # settlement-currency flow of the exact model, + for long value
    for lots, ticks in fills:
        fill_qty, price = lots * 100, ticks * terms.tick_size
        change = apply_fill(qty, entry, fill_qty, price, terms)
        # the engine passes the fill's value, computed once for both sides: the same change
        assert apply_fill(qty, entry, fill_qty, price, terms, contract_value(fill_qty, price, terms)) == change
        qty, entry, realized = change.qty, change.entry_value, realized + change.realized_pnl
        v = Fraction(fill_qty) * Fraction(terms.contract_size)
        cash += (v / Fraction(price)) if terms.is_inverse else (-v * Fraction(price))
    exit_price = exit_ticks * terms.tick_size
    v = Fraction(qty) * Fraction(terms.contract_size)
    exact = cash - v / Fraction(exit_price) if terms.is_inverse else cash + v * Fraction(exit_price)
    booked = realized + unrealized_pnl(qty, entry, exit_price, terms)
    unit = Fraction(terms.settle_places)
    assert abs(Fraction(booked) - exact) <= unit * (len(fills) + 1)
