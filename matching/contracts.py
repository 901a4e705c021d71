"""Contract arithmetic: value, fees, margin, entry price and realized PnL of linear and inverse
perpetuals. Plain functions on Decimal; no ORM.

A linear contract (XBTUSDT) is `contract_size` of the underlying and is settled in the quote
currency: value = qty * contract_size * price. An inverse contract (XBTUSD) is `contract_size`
units of the quote currency and is settled in the underlying: value = qty * contract_size / price.

A position keeps its signed quantity and its entry value (the sum of the values of the fills that
opened it, in the settlement currency), so that averaging and PnL stay exact whatever the order
of fills.
"""
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Context, Decimal
from typing import NamedTuple

# Enough digits for inverse values (1/price) of large positions without visible rounding. Its
# methods are called directly: entering a local context on every fill costs more than the arithmetic.
# Rounding is the context's own (half-even; ceiling for margin): Context.quantize(x, unit) takes
# 0.2 µs where x.quantize(unit, rounding=..., context=...) takes 0.5, parsing its keywords.
_CONTEXT = Context(prec=50, rounding=ROUND_HALF_EVEN)
_CEILING = Context(prec=50, rounding=ROUND_CEILING)
_multiply, _divide, _add, _subtract, _minus, _quantize = (
    _CONTEXT.multiply, _CONTEXT.divide, _CONTEXT.add, _CONTEXT.subtract, _CONTEXT.minus, _CONTEXT.quantize)
ENTRY_VALUE_PLACES = Decimal("1e-18")
PRICE_PLACES = Decimal("1e-8")
_ZERO = Decimal(0)


@dataclass(frozen=True)
class ContractTerms:
    is_inverse: bool
    contract_size: Decimal  # underlying per contract (linear) or quote per contract (inverse)
    tick_size: Decimal
    lot_size: int
    settle_places: Decimal  # smallest unit of the settlement asset, e.g. Decimal("1e-8")


class PositionChange(NamedTuple):  # made twice per fill: a tuple is built in a third of a frozen dataclass's time
    qty: int
    entry_value: Decimal
    realized_pnl: Decimal  # rounded to the settlement unit
    closed_qty: int  # contracts of the old position that this fill closed
    opened_qty: int  # contracts this fill added in the new direction


def price_to_ticks(price: Decimal, terms: ContractTerms) -> int:
    """Exact conversion: a price off the tick grid is an error, never silently rounded."""
    price = Decimal(price)
    if not price.is_finite() or price <= 0:
        raise ValueError("Invalid price")
    ticks, rest = divmod(price, terms.tick_size)
    if rest:
        raise ValueError(f"Invalid price tickSize: {price} is not a multiple of {terms.tick_size}")
    return int(ticks)


def ticks_to_price(ticks: int, terms: ContractTerms) -> Decimal:
    return ticks * terms.tick_size


def qty_to_lots(qty: int, terms: ContractTerms) -> int:
    if qty <= 0 or qty % terms.lot_size:
        raise ValueError(f"orderQty is invalid: {qty} is not a positive multiple of lotSize {terms.lot_size}")
    return qty // terms.lot_size


def contract_value(qty: int, price: Decimal, terms: ContractTerms) -> Decimal:
    """Absolute value of qty contracts at price, in the settlement currency (unrounded)."""
    contracts = _multiply(abs(qty), terms.contract_size)
    return _divide(contracts, price) if terms.is_inverse else _multiply(contracts, price)


def round_settle(amount: Decimal, terms: ContractTerms) -> Decimal:
    return _quantize(amount, terms.settle_places)


def fee(qty: int, price: Decimal, rate: Decimal, terms: ContractTerms) -> Decimal:
    """Fee paid on a fill (negative: a rebate), rounded to the settlement unit."""
    return fee_on_value(contract_value(qty, price, terms), rate, terms)


def fee_on_value(value: Decimal, rate: Decimal, terms: ContractTerms) -> Decimal:
    """fee() of a fill whose contract_value is known: both sides of a match share it."""
    return _quantize(_multiply(value, rate), terms.settle_places)


def initial_margin(qty: int, price: Decimal, leverage: Decimal, terms: ContractTerms) -> Decimal:
    """Margin to open qty contracts at price, rounded up to the settlement unit."""
    if leverage <= 0:
        raise ValueError("leverage must be positive")
    margin = _divide(contract_value(qty, price, terms), leverage)
    return _CEILING.quantize(margin, terms.settle_places)


def apply_fill(qty: int, entry_value: Decimal, fill_qty: int, fill_price: Decimal,
               terms: ContractTerms, fill_value: Decimal | None = None) -> PositionChange:
    """The position after a fill of fill_qty (signed: + buy, - sell) at fill_price. fill_value, if
    given, is contract_value(fill_qty, fill_price): the engine computes it once for both sides."""
    if fill_qty == 0:
        raise ValueError("a fill has a non-zero quantity")
    if fill_value is None:
        fill_value = contract_value(fill_qty, fill_price, terms)
    if qty == 0 or (qty > 0) == (fill_qty > 0):
        value = _add(entry_value, fill_value)
        return PositionChange(qty + fill_qty, _quantize(value, ENTRY_VALUE_PLACES), _ZERO,
                              0, abs(fill_qty))
    closed = min(abs(qty), abs(fill_qty))
    cost = _divide(_multiply(entry_value, closed), abs(qty))
    proceeds = fill_value if closed == abs(fill_qty) else contract_value(closed, fill_price, terms)
    long_pnl = _subtract(cost, proceeds) if terms.is_inverse else _subtract(proceeds, cost)
    pnl = long_pnl if qty > 0 else _minus(long_pnl)
    remaining_entry = _subtract(entry_value, cost)
    new_qty = qty + fill_qty
    opened = abs(fill_qty) - closed
    if new_qty == 0:
        remaining_entry = _ZERO
    elif opened:
        remaining_entry = contract_value(opened, fill_price, terms)
    return PositionChange(new_qty, _quantize(remaining_entry, ENTRY_VALUE_PLACES),
                          round_settle(pnl, terms), closed, opened)


def avg_entry_price(qty: int, entry_value: Decimal, terms: ContractTerms) -> Decimal | None:
    if qty == 0 or entry_value == 0:
        return None
    contracts = _multiply(abs(qty), terms.contract_size)
    price = _divide(contracts, entry_value) if terms.is_inverse else _divide(entry_value, contracts)
    return _quantize(price, PRICE_PLACES)


def unrealized_pnl(qty: int, entry_value: Decimal, mark_price: Decimal | None,
                   terms: ContractTerms) -> Decimal:
    if qty == 0 or mark_price is None:
        return Decimal(0)
    value = contract_value(qty, mark_price, terms)
    long_pnl = _subtract(entry_value, value) if terms.is_inverse else _subtract(value, entry_value)
    pnl = long_pnl if qty > 0 else _minus(long_pnl)
    return round_settle(pnl, terms)
