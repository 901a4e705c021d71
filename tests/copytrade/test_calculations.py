import dataclasses
import statistics
from datetime import date, timedelta
from decimal import Decimal as D
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from copytrade.calculations import (
    FollowTerms, LeaderFill, RunningStats, SizedOrder, _sized, average_holding_seconds,
    contracts_for_value, follower_quantities, max_drawdown, pnl_windows, profit_share, roi,
    sharpe_from_sums, sharpe_ratio, split_fill, win_rate,
)
from matching.contracts import ContractTerms, contract_value

INVERSE = ContractTerms(is_inverse=True, contract_size=D(1), tick_size=D("0.5"), lot_size=100,
                        settle_places=D("1e-8"))
LINEAR = ContractTerms(is_inverse=False, contract_size=D("0.000001"), tick_size=D("0.5"), lot_size=100,
                       settle_places=D("1e-6"))
LOT = 100


def follow(follow_id=1, mode="fixed_ratio", ratio=D(1), fixed_notional=D(0), equity=D(1000), position=0,
           max_order_notional=None, max_position_notional=None):
    return FollowTerms(follow_id, mode, ratio, fixed_notional, equity, position, max_order_notional,
                       max_position_notional)


def sized(fill, *follows, terms=LINEAR, lot=LOT):
    return follower_quantities(fill, follows, lot, terms)


def buy(qty, before=0, price=D(50000), equity=D(10000)):
    return LeaderFill("Buy", qty, price, before, equity)


def sell(qty, before=0, price=D(50000), equity=D(10000)):
    return LeaderFill("Sell", qty, price, before, equity)


# ---------- splitting the leader's fill ----------

def test_fill_splits_into_the_reducing_part_and_the_opening_part():
    assert split_fill(buy(500)) == (0, 500)
    assert split_fill(buy(500, before=300)) == (0, 500)  # adds to a long
    assert split_fill(sell(200, before=300)) == (200, 0)
    assert split_fill(sell(300, before=300)) == (300, 0)
    assert split_fill(sell(500, before=300)) == (300, 200)  # flip
    assert split_fill(buy(500, before=-300)) == (300, 200)


# ---------- the reducing part ----------

def test_follower_close_mirrors_leader_fraction_not_equity():
    rich = follow(1, mode="proportional", equity=D(1_000_000), position=400)
    poor = follow(2, mode="proportional", equity=D(1), position=800)
    assert sized(sell(250, before=1000), rich, poor) == [
        SizedOrder(1, "Sell", 100, True), SizedOrder(2, "Sell", 200, True)]


def test_leader_full_close_closes_the_whole_follower_position_without_dust():
    assert sized(sell(1000, before=1000), follow(position=350)) == [SizedOrder(1, "Sell", 350, True)]
    assert sized(buy(700, before=-700), follow(position=-20)) == [SizedOrder(1, "Buy", 20, True)]


def test_partial_close_rounds_half_up_to_the_nearest_lot():
    assert sized(sell(500, before=1000), follow(position=300))[0].qty == 200  # 150 -> 2 lots
    assert sized(sell(499, before=1000), follow(position=300))[0].qty == 100  # 149.7 -> 1 lot


def test_partial_close_never_exceeds_the_follower_position():
    # an odd-lot position: 190 * 0.99 = 188.1 rounds to 200 lots-wise, capped at the 190 held
    assert sized(sell(990, before=1000), follow(position=190)) == [SizedOrder(1, "Sell", 190, True)]


def test_close_that_rounds_to_zero_is_skipped_below_minimum_size():
    assert sized(sell(400, before=1000), follow(position=100)) == [
        SizedOrder(1, "Sell", 0, True, "below minimum size")]


def test_follower_without_a_position_on_the_leaders_side_has_nothing_to_reduce():
    flat, short = follow(1, position=0), follow(2, position=-500)
    assert sized(sell(500, before=1000), flat, short) == [
        SizedOrder(1, "Sell", 0, True, "no copied position to reduce"),
        SizedOrder(2, "Sell", 0, True, "no copied position to reduce")]


# ---------- the opening part ----------

def test_proportional_open_scales_by_follower_over_leader_equity_rounded_down_to_the_lot():
    f = follow(mode="proportional", equity=D("2599.99"))
    assert sized(buy(1000, equity=D(10000)), f) == [SizedOrder(1, "Buy", 200, False)]  # 259.999 -> 200


def test_fixed_ratio_open_multiplies_the_leader_quantity_rounded_down_to_the_lot():
    assert sized(sell(1000), follow(ratio=D("0.35"))) == [SizedOrder(1, "Sell", 300, False)]


def test_fixed_notional_open_buys_what_the_notional_pays_for():
    # linear: one contract is 0.000001 * 50000 = 0.05 USDT
    assert sized(buy(1), follow(mode="fixed_notional", fixed_notional=D("1234")))[0].qty == 24600
    # inverse: one contract is 1/50000 XBT
    f = follow(mode="fixed_notional", fixed_notional=D("0.01"))
    assert sized(buy(1), f, terms=INVERSE)[0].qty == 500


def test_contracts_for_a_value_are_exact_where_a_rounded_inverse_value_is_one_off():
    # contract_value(1, 6) = 1/6 is rounded up at 50 digits, so 1 / it falls just short of 6
    assert contracts_for_value(D(1), D(6), INVERSE) == 6
    assert contracts_for_value(D("0.3"), D(6), LINEAR) == 50_000
    assert contracts_for_value(D(0), D(6), LINEAR) == 0
    f = follow(mode="fixed_notional", fixed_notional=D(1))
    assert sized(buy(1, price=D(6)), f, terms=INVERSE, lot=1)[0].qty == 6


def test_open_that_rounds_to_zero_is_skipped_below_minimum_size():
    assert sized(buy(100), follow(ratio=D("0.5"))) == [SizedOrder(1, "Buy", 0, False, "below minimum size")]


def test_order_cap_limits_one_opening_order_to_whole_lots():
    f = follow(ratio=D(10), max_order_notional=D("17.5"))  # 350 contracts at 0.05 -> 300
    assert sized(buy(1000), f)[0].qty == 300


def test_position_cap_counts_the_followers_existing_position_in_the_same_direction():
    f = follow(ratio=D(1), position=300, max_position_notional=D(25))  # 500 contracts at most
    assert sized(buy(1000, before=300), f) == [SizedOrder(1, "Buy", 200, False)]


def test_position_cap_counts_the_reduction_the_same_fill_makes():
    # the flip closes the follower's 400 long first, so the new short may use the whole cap
    f = follow(ratio=D(1), position=400, max_position_notional=D(25))
    assert sized(sell(1500, before=1000), f) == [
        SizedOrder(1, "Sell", 400, True), SizedOrder(1, "Sell", 500, False)]


def test_position_cap_nets_an_opposite_follower_position_first():
    # short 200, buying 700 ends long 500: within a 500-contract cap
    f = follow(ratio=D(1), position=-200, max_position_notional=D(25))
    assert sized(buy(1000), f)[0].qty == 700


def test_a_cap_that_leaves_nothing_skips_with_cap_reached():
    full = follow(1, position=500, max_position_notional=D(25))
    tiny = follow(2, max_order_notional=D("0.01"))
    assert sized(buy(1000, before=500), full, tiny) == [
        SizedOrder(1, "Buy", 0, False, "cap reached"), SizedOrder(2, "Buy", 0, False, "cap reached")]


def test_proportional_follower_without_equity_is_skipped():
    assert sized(buy(1000), follow(mode="proportional", equity=D(0))) == [
        SizedOrder(1, "Buy", 0, False, "no equity")]


def test_leader_without_equity_skips_every_opening_but_reductions_still_follow():
    follows = [follow(1, mode="proportional"), follow(2, mode="fixed_ratio", position=1000),
               follow(3, mode="fixed_notional", fixed_notional=D(100))]
    assert sized(sell(1500, before=1000, equity=D(0)), *follows) == [
        SizedOrder(1, "Sell", 0, True, "no copied position to reduce"),
        SizedOrder(1, "Sell", 0, False, "leader has no equity"),
        SizedOrder(2, "Sell", 1000, True),
        SizedOrder(2, "Sell", 0, False, "leader has no equity"),
        SizedOrder(3, "Sell", 0, True, "no copied position to reduce"),
        SizedOrder(3, "Sell", 0, False, "leader has no equity")]


def test_flip_gives_reduce_then_open_per_follow_in_input_order():
    orders = sized(buy(300, before=-100), follow(7, position=-200), follow(3, position=-100))
    assert [(o.follow_id, o.qty, o.reduce_only) for o in orders] == [
        (7, 200, True), (7, 200, False), (3, 100, True), (3, 200, False)]


def test_bad_side_quantity_lot_or_mode_is_an_error():
    with pytest.raises(ValueError):
        sized(LeaderFill("buy", 100, D(1), 0, D(1)), follow())
    with pytest.raises(ValueError):
        sized(buy(0), follow())
    with pytest.raises(ValueError):
        sized(buy(100), follow(), lot=0)
    with pytest.raises(ValueError, match="mode"):
        sized(buy(100), follow(mode="martingale"))


def test_fast_built_sized_order_is_the_dataclass_it_stands_for():
    fast, normal = _sized(5, "Sell", 300, True), SizedOrder(5, "Sell", 300, True)
    assert fast == normal and hash(fast) == hash(normal) and repr(fast) == repr(normal)
    assert dataclasses.asdict(fast) == dataclasses.asdict(normal)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.qty = 1


# ---------- follower_quantities against a reference model in exact fractions ----------

def reference_quantities(fill, follows, lot, terms):
    """The rules as written, one follow at a time, in Fraction."""
    d = 1 if fill.side == "Buy" else -1
    before = fill.position_before
    reducing = min(fill.qty, abs(before)) if before and (before > 0) != (d > 0) else 0
    opening = fill.qty - reducing
    size, price = Fraction(terms.contract_size), Fraction(fill.price)
    one = size / price if terms.is_inverse else size * price
    out = []
    for f in follows:
        pos = f.position
        if reducing:
            if pos and (pos > 0) == (before > 0):
                fraction = Fraction(reducing, abs(before))
                close = abs(pos) if fraction == 1 else min(
                    floor(abs(pos) * fraction / lot + Fraction(1, 2)) * lot, abs(pos))
                reason = "" if close else "below minimum size"
                out.append(SizedOrder(f.follow_id, fill.side, close, True, reason))
                pos += d * close
            else:
                out.append(SizedOrder(f.follow_id, fill.side, 0, True, "no copied position to reduce"))
        if not opening:
            continue
        reason = ""
        if fill.equity <= 0:
            reason = "leader has no equity"
        elif f.mode == "proportional" and f.equity <= 0:
            reason = "no equity"
        else:
            raw = {"proportional": lambda: opening * Fraction(f.equity) / Fraction(fill.equity),
                   "fixed_ratio": lambda: opening * Fraction(f.ratio),
                   "fixed_notional": lambda: Fraction(f.fixed_notional) / one}[f.mode]()
            qty = floor(raw / lot) * lot
            if qty <= 0:
                reason = "below minimum size"
            else:
                if f.max_order_notional is not None:
                    qty = min(qty, floor(floor(Fraction(f.max_order_notional) / one) / lot) * lot)
                if f.max_position_notional is not None:
                    room = floor(Fraction(f.max_position_notional) / one) - d * pos
                    qty = min(qty, floor(Fraction(room, lot)) * lot)
                if qty <= 0:
                    reason = "cap reached"
        out.append(SizedOrder(f.follow_id, fill.side, 0 if reason else qty, False, reason))
    return out


money = st.decimals(min_value=D("-10"), max_value=D("100000"), places=4)
optional_cap = st.none() | st.decimals(min_value=D(0), max_value=D("5000"), places=3)
follow_terms = st.builds(
    FollowTerms, follow_id=st.integers(1, 10**6),
    mode=st.sampled_from(["proportional", "fixed_ratio", "fixed_notional"]),
    ratio=st.decimals(min_value=D(0), max_value=D(5), places=3), fixed_notional=money, equity=money,
    position=st.integers(-50, 50).map(lambda lots: lots * LOT) | st.integers(-5000, 5000),
    max_order_notional=optional_cap, max_position_notional=optional_cap)
leader_fills = st.builds(
    LeaderFill, side=st.sampled_from(["Buy", "Sell"]), qty=st.integers(1, 50).map(lambda lots: lots * LOT),
    price=st.decimals(min_value=D("0.5"), max_value=D("100000"), places=1),
    position_before=st.integers(-60, 60).map(lambda lots: lots * LOT), equity=money)


@settings(max_examples=300, deadline=None)
@given(fill=leader_fills, follows=st.lists(follow_terms, max_size=8, unique_by=lambda f: f.follow_id),
       terms=st.sampled_from([LINEAR, INVERSE]))
def test_follower_quantities_match_the_rules_in_exact_fractions(fill, follows, terms):
    orders = follower_quantities(fill, follows, LOT, terms)
    assert orders == reference_quantities(fill, follows, LOT, terms)
    for o in orders:
        assert (o.qty == 0) == bool(o.skip_reason)
        if not o.reduce_only and o.qty:
            assert o.qty % LOT == 0
            terms_of = next(f for f in follows if f.follow_id == o.follow_id)
            if terms_of.max_order_notional is not None:
                assert contract_value(o.qty, fill.price, terms) <= terms_of.max_order_notional


# ---------- profit share ----------

def test_profit_share_is_the_rate_of_the_profit_above_the_high_water_mark():
    assert profit_share(D(150), D(100), D("0.1")) == (D(5), D(150))


def test_a_loss_carries_forward_until_it_is_earned_back():
    assert profit_share(D(100), D(0), D("0.2")) == (D(20), D(100))
    assert profit_share(D(40), D(100), D("0.2")) == (D(0), D(100))  # the mark stays
    assert profit_share(D(90), D(100), D("0.2")) == (D(0), D(100))  # still recovering
    assert profit_share(D(120), D(100), D("0.2")) == (D(4), D(120))


def test_profit_share_rate_outside_zero_to_one_is_an_error():
    with pytest.raises(ValueError):
        profit_share(D(1), D(0), D("1.5"))


@given(path=st.lists(st.decimals(min_value=D(-1000), max_value=D(1000), places=2)),
       rate=st.decimals(min_value=D(0), max_value=D(1), places=2))
def test_total_profit_share_is_the_rate_of_the_best_cumulative_pnl_ever(path, rate):
    mark, fees = D(0), D(0)
    for pnl in path:
        fee, mark = profit_share(pnl, mark, rate)
        fees += fee
    assert fees == rate * max([D(0), *path])
    assert mark == max([D(0), *path])


# ---------- leader statistics ----------

def test_roi_is_pnl_over_capital_and_zero_without_capital():
    assert roi(D(25), D(100)) == D("0.25")
    assert roi(D(25), D(0)) == 0 and roi(D(25), D(-5)) == 0


def test_win_rate_counts_break_even_trades_as_not_won():
    assert win_rate([D(5), D(0), D(-1), D(2)]) == D("0.5")
    assert win_rate([]) == 0


def test_max_drawdown_is_the_largest_fall_from_a_peak_as_a_fraction_of_it():
    assert max_drawdown([D(100), D(120), D(90), D(130), D(65), D(200)]) == D("0.5")
    assert max_drawdown([D(1), D(2), D(3)]) == 0
    assert max_drawdown([]) == 0


def test_max_drawdown_stops_at_everything_lost_and_ignores_non_positive_peaks():
    assert max_drawdown([D(100), D(-20)]) == 1
    assert max_drawdown([D(0), D(-5), D(-10)]) == 0


def test_sharpe_is_mean_over_sample_stdev_annualized():
    assert sharpe_ratio([D("0.01"), D("0.02"), D("0.03")]) == +(2 * D(365).sqrt())
    assert sharpe_from_sums(3, D("0.06"), D("0.0014")) == +(2 * D(365).sqrt())
    assert sharpe_ratio([D("0.01"), D("0.03")], periods_per_year=252) == +(D(2) / D(2).sqrt() * D(252).sqrt())


def test_sharpe_is_zero_without_two_returns_or_without_spread():
    assert sharpe_ratio([]) == 0 and sharpe_ratio([D("0.5")]) == 0
    assert sharpe_ratio([D("0.01")] * 5) == 0


decimal_returns = st.lists(st.decimals(min_value=D(-1), max_value=D(1), places=6), max_size=60)


def close(a, b):
    return abs(a - b) <= D("1e-20") * max(abs(a), abs(b), D(1))


@given(returns=decimal_returns)
def test_sharpe_agrees_with_the_statistics_module(returns):
    expected = (statistics.mean(returns) / statistics.stdev(returns) * D(365).sqrt()
                if len(returns) > 1 and len(set(returns)) > 1 else D(0))
    assert close(sharpe_ratio(returns), expected)


def test_average_holding_is_in_exact_seconds_from_timedeltas_or_seconds():
    assert average_holding_seconds([timedelta(hours=1), timedelta(seconds=1, microseconds=1)]) == D("1800.5000005")
    assert average_holding_seconds([60, D("30.5")]) == D("45.25")
    assert average_holding_seconds([]) == 0


def test_pnl_windows_sum_the_trailing_days_including_today():
    today = date(2026, 5, 9)
    days = [(today - timedelta(days=age), D(age + 1)) for age in (0, 6, 7, 29, 30, 89, 90, 400)]
    days.append((today + timedelta(days=1), D(1000)))  # not yet: in no window
    assert pnl_windows(days, today) == {"7d": D(1 + 7), "30d": D(1 + 7 + 8 + 30),
                                        "90d": D(1 + 7 + 8 + 30 + 31 + 90),
                                        "all": D(1 + 7 + 8 + 30 + 31 + 90 + 91 + 401)}
    assert pnl_windows([], today) == dict.fromkeys(("7d", "30d", "90d", "all"), D(0))


# ---------- RunningStats against the plain functions ----------

def test_running_stats_starts_at_zero():
    stats = RunningStats()
    assert (stats.sharpe_ratio(), stats.max_drawdown, stats.win_rate, stats.average_holding_seconds) == (0, 0, 0, 0)


@given(returns=decimal_returns)
def test_running_sharpe_matches_the_plain_function(returns):
    stats = RunningStats()
    for r in returns:
        stats.add_return(r)
    assert stats.count == len(returns)
    assert close(stats.sharpe_ratio(), sharpe_ratio(returns))
    assert close(stats.sharpe_ratio(252), sharpe_ratio(returns, periods_per_year=252))


@given(curve=st.lists(st.decimals(min_value=D(-100), max_value=D(10000), places=2), max_size=60))
def test_running_max_drawdown_matches_the_plain_function_at_every_point(curve):
    stats = RunningStats()
    for i, equity in enumerate(curve, 1):
        stats.add_equity(equity)
        assert stats.max_drawdown == max_drawdown(curve[:i])


@given(trades=st.lists(st.tuples(st.decimals(min_value=D(-100), max_value=D(100), places=2),
                                 st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30))), max_size=60))
def test_running_trade_stats_match_the_plain_functions(trades):
    stats = RunningStats()
    for pnl, held in trades:
        stats.add_trade(pnl, held)
    pnls = [p for p, _ in trades]
    assert stats.win_rate == win_rate(pnls)
    assert stats.wins == sum(p > 0 for p in pnls) and stats.losses == sum(p < 0 for p in pnls)
    assert stats.average_holding_seconds == average_holding_seconds([h for _, h in trades])
