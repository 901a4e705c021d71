"""Pure calculations of copy trading: sizing followers' orders from a leader's fill, profit share,
leader statistics. Plain functions on int and Decimal; no ORM.

Divisions that decide a number of contracts use Decimal `//` on exact operands, never a rounded
quotient: a rounded 1/price (inverse contracts) can put an exact boundary one contract off.
"""
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Context, Decimal, localcontext
from typing import NamedTuple

from matching.contracts import ContractTerms

# Wide enough that products of quantities, equities and prices stay exact before `//`.
_EXACT = Context(prec=80)
_ZERO = Decimal(0)
_ONE = Decimal(1)

BELOW_MINIMUM = "below minimum size"
NO_POSITION = "no copied position to reduce"
CAP_REACHED = "cap reached"
NO_EQUITY = "no equity"
LEADER_NO_EQUITY = "leader has no equity"


@dataclass(frozen=True)
class LeaderFill:
    side: str                   # "Buy" or "Sell" (the leader's execution)
    qty: int                    # contracts filled, > 0
    price: Decimal              # fill price
    position_before: int        # leader's signed position in this instrument before the fill
    equity: Decimal             # leader's account equity (settlement currency), > 0 for proportional sizing


class FollowTerms(NamedTuple):  # a tuple: ten thousand are built per fan-out
    follow_id: int
    mode: str                   # "proportional" | "fixed_ratio" | "fixed_notional"
    ratio: Decimal              # fixed_ratio multiplier (ignored otherwise)
    fixed_notional: Decimal     # settlement-currency value per copied opening order (fixed_notional mode)
    equity: Decimal             # the follower's copy-account equity for this leader
    position: int               # the follower's signed copied position in this instrument
    max_order_notional: Decimal | None   # cap on one opening order's value
    max_position_notional: Decimal | None  # cap on the copied position's value after the order


@dataclass(frozen=True)
class SizedOrder:
    follow_id: int
    side: str                   # "Buy" / "Sell"
    qty: int                    # contracts, a multiple of lot_size, > 0 unless skipped
    reduce_only: bool           # True for the part that mirrors a reduction/close
    skip_reason: str = ""       # non-empty: nothing to place (qty 0), shown to the follower


_new = object.__new__
_setattr = object.__setattr__


def _sized(follow_id: int, side: str, qty: int, reduce_only: bool, skip_reason: str = "") -> SizedOrder:
    """SizedOrder(...) without the frozen dataclass __init__, whose per-field object.__setattr__
    is about half of a 10,000-follow fan-out. Same object as the normal constructor (tested);
    SizedOrder has no __post_init__ to skip."""
    order = _new(SizedOrder)
    _setattr(order, "__dict__", {"follow_id": follow_id, "side": side, "qty": qty,
                                 "reduce_only": reduce_only, "skip_reason": skip_reason})
    return order


def split_fill(fill: LeaderFill) -> tuple[int, int]:
    """(reducing, opening) contracts of the leader's fill; a flip has both."""
    before = fill.position_before
    if before and (before > 0) != (fill.side == "Buy"):
        reducing = min(fill.qty, abs(before))
        return reducing, fill.qty - reducing
    return 0, fill.qty


def contracts_for_value(value: Decimal, price: Decimal, terms: ContractTerms) -> int:
    """How many whole contracts are worth at most `value` at `price` (floor of value / contract_value(1))."""
    if value <= 0:
        return 0
    with localcontext(_EXACT):
        if terms.is_inverse:
            return int(value * price // terms.contract_size)
        return int(value // (terms.contract_size * price))


def follower_quantities(fill: LeaderFill, follows: Sequence[FollowTerms], lot_size: int,
                        terms: ContractTerms) -> list[SizedOrder]:
    """The orders that copy `fill` for each follow: reduce (pro rata to the follower's own position)
    before open (sized by the follow's mode, rounded down to the lot, then capped)."""
    side = fill.side
    if side not in ("Buy", "Sell"):
        raise ValueError(f"side must be Buy or Sell, not {side!r}")
    if fill.qty <= 0 or lot_size <= 0:
        raise ValueError("fill qty and lot_size must be positive")
    direction = 1 if side == "Buy" else -1
    reducing, opening = split_fill(fill)
    out: list[SizedOrder] = []
    append = out.append

    # Reduction: lots = round-half-up(|position| * reducing / |before| / lot), in integers.
    leader_abs = abs(fill.position_before)
    full_close = reducing == leader_abs
    reduced_long = direction < 0  # a sell reduces longs
    twice_reducing = 2 * reducing
    half = leader_abs * lot_size
    whole = 2 * half

    # Opening: everything that does not depend on the follow is computed once.
    leader_ok = fill.equity > 0
    dec_opening = Decimal(opening)
    dec_lot = Decimal(lot_size)
    price = fill.price
    # value -> contracts it pays for; follows share a few caps and notionals, so each is divided once
    contracts_for: dict[Decimal, int] = {}

    with localcontext(_EXACT):
        lot_equity = fill.equity * dec_lot  # proportional: lots = opening * equity // (leader equity * lot)
        for f in follows:
            fid = f.follow_id
            position = f.position
            if reducing:
                if position and (position > 0) == reduced_long:
                    held = abs(position)
                    close = held if full_close else (held * twice_reducing + half) // whole * lot_size
                    if close > held:
                        close = held  # an odd-lot position rounded up: close it all, never more
                    if close:
                        append(_sized(fid, side, close, True))
                        position += direction * close
                    else:
                        append(_sized(fid, side, 0, True, BELOW_MINIMUM))
                else:
                    append(_sized(fid, side, 0, True, NO_POSITION))
            if not opening:
                continue
            if not leader_ok:
                append(_sized(fid, side, 0, False, LEADER_NO_EQUITY))
                continue
            mode = f.mode
            if mode == "proportional":
                if f.equity <= 0:
                    append(_sized(fid, side, 0, False, NO_EQUITY))
                    continue
                qty = int(dec_opening * f.equity // lot_equity) * lot_size
            elif mode == "fixed_ratio":
                qty = int(dec_opening * f.ratio // dec_lot) * lot_size
            elif mode == "fixed_notional":
                value = f.fixed_notional
                n = contracts_for.get(value)
                if n is None:
                    n = contracts_for[value] = contracts_for_value(value, price, terms)
                qty = n // lot_size * lot_size
            else:
                raise ValueError(f"unknown follow mode {mode!r}")
            if qty <= 0:
                append(_sized(fid, side, 0, False, BELOW_MINIMUM))
                continue
            value = f.max_order_notional
            if value is not None:
                n = contracts_for.get(value)
                if n is None:
                    n = contracts_for[value] = contracts_for_value(value, price, terms)
                if n < qty:
                    qty = n // lot_size * lot_size
            value = f.max_position_notional
            if value is not None:
                n = contracts_for.get(value)
                if n is None:
                    n = contracts_for[value] = contracts_for_value(value, price, terms)
                # |position after the reduction + this order| must fit. A position on the other
                # side is netted by the order first, so it adds room instead of using it.
                room = n - direction * position
                if room < qty:
                    qty = room // lot_size * lot_size
            if qty <= 0:
                append(_sized(fid, side, 0, False, CAP_REACHED))
            else:
                append(_sized(fid, side, qty, False))
    return out


# ---------- profit share ----------

def profit_share(cumulative_pnl: Decimal, high_water_mark: Decimal, rate: Decimal) -> tuple[Decimal, Decimal]:
    """(fee, new high-water mark). Only profit above the mark is shared, so a loss must be earned
    back before the leader is paid again. The caller rounds the fee to the asset unit (ROUND_DOWN)."""
    if not 0 <= rate <= 1:
        raise ValueError("profit share rate must be between 0 and 1")
    if cumulative_pnl <= high_water_mark:
        return _ZERO, high_water_mark
    return rate * (cumulative_pnl - high_water_mark), cumulative_pnl


# ---------- leader statistics ----------

def roi(pnl: Decimal, capital: Decimal) -> Decimal:
    return pnl / capital if capital > 0 else _ZERO


def win_rate(trade_pnls: Sequence[Decimal]) -> Decimal:
    """Share of closed trades with a profit; a break-even trade counts as not won."""
    if not trade_pnls:
        return _ZERO
    return Decimal(sum(1 for p in trade_pnls if p > 0)) / len(trade_pnls)


def max_drawdown(equity_curve: Sequence[Decimal]) -> Decimal:
    """Largest fall from a running peak, as a fraction of that peak (0..1). A non-positive peak has
    no fraction to lose and a fall below zero counts as everything lost."""
    peak = None
    worst = _ZERO
    for equity in equity_curve:
        if peak is None or equity > peak:
            peak = equity
        elif peak > 0:
            worst = max(worst, min((peak - equity) / peak, _ONE))
    return worst


def sharpe_from_sums(count: int, total: Decimal, squares: Decimal, periods_per_year: int = 365) -> Decimal:
    """sharpe_ratio from the count, sum and sum of squares of the returns (as RunningStats keeps them)."""
    if count < 2:
        return _ZERO
    with localcontext(_EXACT):
        # n*Σx² - (Σx)² is exact for Decimal inputs; the textbook Σ(x-mean)² divides first
        spread = count * squares - total * total
        if spread <= 0:
            return _ZERO
        stdev = (spread / (count * (count - 1))).sqrt()
        result = total / count / stdev * Decimal(periods_per_year).sqrt()
    return +result  # back to the caller's precision


def sharpe_ratio(daily_returns: Sequence[Decimal], periods_per_year: int = 365) -> Decimal:
    """Annualized mean / sample standard deviation of the returns; 0 without spread or history."""
    n = len(daily_returns)
    if n < 2:
        return _ZERO
    with localcontext(_EXACT):
        mean = sum(daily_returns, _ZERO) / n
        variance = sum(((r - mean) ** 2 for r in daily_returns), _ZERO) / (n - 1)
        if variance == 0:
            return _ZERO
        result = mean / variance.sqrt() * Decimal(periods_per_year).sqrt()
    return +result


def _seconds(duration: timedelta | int | Decimal) -> Decimal:
    if isinstance(duration, timedelta):
        # integer microseconds: float total_seconds() would round long holdings
        micros = (duration.days * 86400 + duration.seconds) * 1_000_000 + duration.microseconds
        return Decimal(micros) / 1_000_000
    return Decimal(duration)


def average_holding_seconds(durations: Sequence[timedelta | int | Decimal]) -> Decimal:
    """Mean holding time of closed trades in seconds (timedelta or seconds in); 0 without trades."""
    if not durations:
        return _ZERO
    return sum((_seconds(d) for d in durations), _ZERO) / len(durations)


@dataclass(slots=True)
class RunningStats:
    """The leader statistics kept up to date one new point at a time, in O(1), so a daily job or
    a closed trade never recomputes the history. Give each method its own stream of points."""
    count: int = 0                  # daily returns seen
    sum: Decimal = _ZERO
    sum_of_squares: Decimal = _ZERO
    peak: Decimal | None = None     # highest equity so far
    max_drawdown: Decimal = _ZERO   # worst fall from a peak, fraction of the peak
    trades: int = 0                 # closed trades
    wins: int = 0                   # closed with pnl > 0
    losses: int = 0                 # closed with pnl < 0
    holding_seconds: Decimal = _ZERO

    def add_return(self, daily_return: Decimal) -> None:
        self.count += 1
        with localcontext(_EXACT):
            self.sum += daily_return
            self.sum_of_squares += daily_return * daily_return

    def add_equity(self, equity: Decimal) -> None:
        if self.peak is None or equity > self.peak:
            self.peak = equity
        elif self.peak > 0:
            self.max_drawdown = max(self.max_drawdown, min((self.peak - equity) / self.peak, _ONE))

    def add_trade(self, pnl: Decimal, holding: timedelta | int | Decimal = 0) -> None:
        self.trades += 1
        self.wins += pnl > 0
        self.losses += pnl < 0
        self.holding_seconds += _seconds(holding)

    def sharpe_ratio(self, periods_per_year: int = 365) -> Decimal:
        return sharpe_from_sums(self.count, self.sum, self.sum_of_squares, periods_per_year)

    @property
    def win_rate(self) -> Decimal:
        return Decimal(self.wins) / self.trades if self.trades else _ZERO

    @property
    def average_holding_seconds(self) -> Decimal:
        return self.holding_seconds / self.trades if self.trades else _ZERO


def pnl_windows(daily_pnl: Sequence[tuple[date, Decimal]], today: date) -> dict[str, Decimal]:
    """PnL summed over the trailing 7, 30 and 90 days (today included) and over all days up to today."""
    windows = {"7d": 7, "30d": 30, "90d": 90}
    sums = dict.fromkeys((*windows, "all"), _ZERO)
    for day, pnl in daily_pnl:
        age = (today - day).days
        if age < 0:
            continue  # a day after `today` is not part of any window as of today
        sums["all"] += pnl
        for key, days in windows.items():
            if age < days:
                sums[key] += pnl
    return sums
