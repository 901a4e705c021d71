"""The trading core end to end in one process: submit through services, apply with the engine,
read orders, executions, positions and balances. Every test ends with check_ledger clean."""
import time
from decimal import Decimal as D

import pytest

from accounts.models import Balance, LedgerEntry
from accounts.selectors import available_balance
from accounts.services import InsufficientBalance
from matching import services
from matching.models import Execution, Order, OrdStatus, Position
from matching.services import OrderRejected
from tests.conftest import settle

pytestmark = pytest.mark.django_db

LIN = "XBTUSDT"  # lot 1000 contracts of 0.000001 XBT, tick 0.5, settled in USDT
INV = "XBTUSD"  # lot 100 contracts of 1 USD, tick 0.5, settled in XBT


def submit(account, **kwargs):
    kwargs.setdefault("symbol", LIN)
    return services.submit_order(account=account, **kwargs)


def fresh(order):
    order.refresh_from_db()
    return order


def position(account, symbol=LIN):
    return Position.objects.get(account=account, instrument__symbol=symbol)


def balance(account, asset="USDT"):
    return Balance.objects.get(account=account, asset_id=asset)


def test_limit_orders_match_at_the_makers_price_with_maker_and_taker_fees(engine, make_trader):
    maker, taker = make_trader(), make_trader()
    ask = submit(maker, side="Sell", order_qty=1_000_000, price="50000")
    settle(engine)
    bid = submit(taker, side="Buy", order_qty=400_000, price="50100")
    settle(engine)
    assert (fresh(ask).ord_status, ask.leaves_qty, ask.cum_qty) == (OrdStatus.PARTIALLY_FILLED, 600_000, 400_000)
    assert (fresh(bid).ord_status, bid.cum_qty, bid.avg_px) == (OrdStatus.FILLED, 400_000, D(50000))
    # 0.4 XBT at 50,000 = 20,000 USDT: taker pays 0.075% (15), maker earns 0.01% (2)
    assert balance(taker).amount == D("100000") - D("15")
    assert balance(maker).amount == D("100000") + D("2")
    assert position(taker).current_qty == 400_000 and position(maker).current_qty == -400_000
    taker_exec, maker_exec = (Execution.objects.get(order=bid), Execution.objects.get(order=ask))
    assert taker_exec.trd_match_id == maker_exec.trd_match_id
    assert (taker_exec.last_liquidity_ind, maker_exec.last_liquidity_ind) == ("RemovedLiquidity", "AddedLiquidity")
    assert taker_exec.exec_comm == D("15") and maker_exec.exec_comm == D("-2")


def test_closing_realizes_pnl_as_a_ledger_entry(engine, make_trader):
    a, b = make_trader(), make_trader()
    submit(a, side="Sell", order_qty=1_000_000, price="50000")
    settle(engine)
    submit(b, side="Buy", order_qty=1_000_000, price="50000")
    submit(a, side="Buy", order_qty=1_000_000, price="51000")
    settle(engine)
    submit(b, side="Sell", order_qty=1_000_000, ord_type="Market", exec_inst="ReduceOnly")
    settle(engine)
    assert position(b).current_qty == 0
    assert position(b).cum_realized_pnl == D("1000")  # bought 1 XBT at 50,000, sold at 51,000
    pnl = LedgerEntry.objects.filter(account=b, kind="realized_pnl")
    assert sum(e.amount for e in pnl) == D("1000")
    assert position(b).margin == 0 and balance(b).position_margin == 0


def test_inverse_contract_pnl_is_paid_in_xbt(engine, make_trader):
    a, b = make_trader(), make_trader()
    submit(a, symbol=INV, side="Sell", order_qty=1000, price="50000")
    settle(engine)
    submit(b, symbol=INV, side="Buy", order_qty=1000, price="50000")
    settle(engine)
    submit(a, symbol=INV, side="Buy", order_qty=1000, price="55000")
    settle(engine)
    submit(b, symbol=INV, side="Sell", order_qty=1000, price="55000")
    settle(engine)
    long = position(b, INV)
    assert long.current_qty == 0
    assert long.cum_realized_pnl == D("0.00181818")  # 1000 * (1/50000 - 1/55000) XBT


def test_market_order_fills_within_its_protection_band_and_cancels_the_rest(engine, make_trader, settings):
    maker, taker = make_trader(), make_trader()
    submit(maker, side="Sell", order_qty=1_000_000, price="50000")
    submit(maker, side="Sell", order_qty=1_000_000, price="60000")  # beyond 5% above the ask
    settle(engine)
    market = submit(taker, side="Buy", order_qty=1_500_000, ord_type="Market")
    assert market.protect_price == D("52500")
    settle(engine)
    fresh(market)
    assert (market.ord_status, market.cum_qty, market.leaves_qty) == (OrdStatus.CANCELED, 1_000_000, 0)
    assert market.margin_reserved == 0 and balance(taker).order_margin == 0


def test_immediate_or_cancel_keeps_what_filled_and_fill_or_kill_fills_all_or_nothing(engine, make_trader):
    maker, taker = make_trader(), make_trader()
    submit(maker, side="Sell", order_qty=1_000_000, price="50000")
    settle(engine)
    fok = submit(taker, side="Buy", order_qty=2_000_000, price="50000", time_in_force="FillOrKill")
    ioc = submit(taker, side="Buy", order_qty=2_000_000, price="50000", time_in_force="ImmediateOrCancel")
    settle(engine)
    assert (fresh(fok).ord_status, fok.cum_qty) == (OrdStatus.CANCELED, 0)
    assert "FillOrKill" in fok.text
    assert (fresh(ioc).ord_status, ioc.cum_qty, ioc.leaves_qty) == (OrdStatus.CANCELED, 1_000_000, 0)


def test_post_only_order_that_would_take_is_canceled(engine, make_trader):
    maker, taker = make_trader(), make_trader()
    submit(maker, side="Sell", order_qty=1_000_000, price="50000")
    settle(engine)
    crossing = submit(taker, side="Buy", order_qty=1_000_000, price="50000", exec_inst="ParticipateDoNotInitiate")
    resting = submit(taker, side="Buy", order_qty=1_000_000, price="49999.5", exec_inst="ParticipateDoNotInitiate")
    settle(engine)
    assert fresh(crossing).ord_status == OrdStatus.CANCELED and "ParticipateDoNotInitiate" in crossing.text
    assert fresh(resting).ord_status == OrdStatus.NEW and resting.working_indicator


def test_stop_market_triggers_once_when_the_last_price_crosses_it(engine, make_trader):
    a, b, c = make_trader(), make_trader(), make_trader()
    stop = submit(c, side="Buy", order_qty=1_000_000, ord_type="Stop", stop_px="50500")
    settle(engine)
    assert fresh(stop).ord_status == OrdStatus.UNTRIGGERED
    submit(a, side="Sell", order_qty=3_000_000, price="50500")
    submit(a, side="Sell", order_qty=3_000_000, price="50000")
    settle(engine)
    submit(b, side="Buy", order_qty=1_000_000, price="50000")  # last 50,000: below the stop
    settle(engine)
    assert fresh(stop).ord_status == OrdStatus.UNTRIGGERED
    submit(b, side="Buy", order_qty=3_000_000, price="50500")  # sweeps 50,000 then trades at 50,500
    settle(engine)
    fresh(stop)
    assert stop.triggered == "StopOrderTriggered" and stop.ord_status == OrdStatus.FILLED
    assert stop.avg_px == D(50500)
    assert Execution.objects.filter(order=stop).count() == 1
    submit(b, side="Buy", order_qty=1_000_000, price="50500")
    settle(engine)
    assert Execution.objects.filter(order=stop).count() == 1  # only once


def test_stop_orders_trigger_in_the_order_the_price_crossed_them(engine, make_trader):
    a, b, c = make_trader(), make_trader(), make_trader()
    far = submit(c, side="Sell", order_qty=1_000_000, ord_type="StopLimit", stop_px="48000", price="40000")
    near = submit(c, side="Sell", order_qty=1_000_000, ord_type="StopLimit", stop_px="49000", price="40000")
    submit(a, side="Buy", order_qty=1_000_000, price="50000")
    submit(a, side="Buy", order_qty=1_000_000, price="47000")
    submit(a, side="Buy", order_qty=1_000_000, price="46000")
    settle(engine)
    submit(b, side="Sell", order_qty=2_000_000, price="47000")  # last trades at 50,000 then 47,000
    settle(engine)
    # the 49,000 stop was crossed first: it takes the best bid left (46,000 after b took 47,000)
    assert fresh(near).ord_status == OrdStatus.FILLED and near.avg_px == D(46000)
    assert fresh(far).ord_status == OrdStatus.NEW and far.triggered == "StopOrderTriggered"


def test_take_profit_limit_if_touched_triggers_when_the_price_comes_to_it(engine, make_trader):
    a, b, c = make_trader(), make_trader(), make_trader()
    take_profit = submit(c, side="Sell", order_qty=1_000_000, ord_type="LimitIfTouched", stop_px="51000",
                         price="51000")
    submit(a, side="Sell", order_qty=1_000_000, price="51000")
    settle(engine)
    assert fresh(take_profit).ord_status == OrdStatus.UNTRIGGERED
    submit(b, side="Buy", order_qty=1_000_000, price="51000")
    settle(engine)
    assert fresh(take_profit).ord_status == OrdStatus.NEW and take_profit.triggered


def test_trailing_stop_follows_the_price_up_and_never_back(engine, make_trader):
    a, b, c = make_trader(), make_trader(), make_trader()
    submit(a, side="Sell", order_qty=1_000_000, price="50000")
    settle(engine)
    submit(b, side="Buy", order_qty=1_000_000, price="50000")
    settle(engine)
    trail = submit(c, side="Sell", order_qty=1_000_000, ord_type="Stop", peg_price_type="TrailingStopPeg",
                   peg_offset_value="-1000")
    assert trail.stop_px == D(49000)
    for price in ("52000", "51500"):
        submit(a, side="Sell", order_qty=1_000_000, price=price)
        settle(engine)
        submit(b, side="Buy", order_qty=1_000_000, price=price)
        settle(engine)
    assert fresh(trail).stop_px == D(51000) and trail.ord_status == OrdStatus.UNTRIGGERED


def test_conditional_orders_placed_at_an_unchanged_price_are_checked_on_their_own(engine, make_trader):
    """After a trade every stop was checked at the last price; a new or amended one is checked
    alone, and still fires at once when that price has already crossed it."""
    a, b, c = make_trader(), make_trader(), make_trader()
    submit(a, side="Sell", order_qty=1_000_000, price="50000")
    submit(b, side="Buy", order_qty=1_000_000, price="50000")
    submit(a, side="Sell", order_qty=1_000_000, price="50500")
    settle(engine)  # last 50,000
    waiting = submit(c, side="Buy", order_qty=1_000_000, ord_type="Stop", stop_px="51000")
    crossed = submit(c, side="Buy", order_qty=1_000_000, ord_type="Stop", stop_px="49500")
    settle(engine)
    assert fresh(waiting).ord_status == OrdStatus.UNTRIGGERED
    assert fresh(crossed).triggered == "StopOrderTriggered" and crossed.ord_status == OrdStatus.FILLED
    assert crossed.avg_px == D(50500)
    services.amend_order(account=c, order=waiting, stop_px="50400")  # the price is above it now
    settle(engine)
    assert fresh(waiting).triggered == "StopOrderTriggered"


def test_reduce_only_is_cut_to_the_position_and_canceled_without_one(engine, make_trader):
    a, b = make_trader(), make_trader()
    nothing = submit(b, side="Sell", order_qty=1_000_000, price="60000", exec_inst="ReduceOnly")
    settle(engine)
    assert fresh(nothing).ord_status == OrdStatus.CANCELED
    submit(a, side="Sell", order_qty=1_000_000, price="50000")
    settle(engine)
    submit(b, side="Buy", order_qty=1_000_000, price="50000")
    settle(engine)
    too_big = submit(b, side="Sell", order_qty=3_000_000, price="60000", exec_inst="ReduceOnly")
    settle(engine)
    assert (fresh(too_big).ord_status, too_big.leaves_qty, too_big.margin_reserved) == (OrdStatus.NEW, 1_000_000, 0)


def test_close_order_closes_the_whole_position(engine, make_trader):
    a, b = make_trader(), make_trader()
    submit(a, side="Sell", order_qty=2_000_000, price="50000")
    settle(engine)
    submit(b, side="Buy", order_qty=1_000_000, price="50000")
    submit(a, side="Buy", order_qty=3_000_000, price="49000")
    settle(engine)
    close = submit(b, side="Sell", ord_type="Market", exec_inst="Close")
    settle(engine)
    assert fresh(close).cum_qty == 1_000_000
    assert position(b).current_qty == 0


def test_amend_to_a_new_price_can_trade_and_a_smaller_size_keeps_priority(engine, make_trader):
    a, b, c = make_trader(), make_trader(), make_trader()
    first = submit(a, side="Buy", order_qty=2_000_000, price="49000")
    second = submit(b, side="Buy", order_qty=1_000_000, price="49000")
    settle(engine)
    services.amend_order(account=a, order=first, order_qty=1_000_000)
    settle(engine)
    assert fresh(first).leaves_qty == 1_000_000 and fresh(first).priority < fresh(second).priority
    ask = submit(c, side="Sell", order_qty=1_000_000, price="50000")
    settle(engine)
    services.amend_order(account=b, order=second, price="50000")
    settle(engine)
    assert fresh(second).ord_status == OrdStatus.FILLED and fresh(ask).ord_status == OrdStatus.FILLED


def test_cancel_and_cancel_all_release_the_reserved_margin(engine, make_trader):
    a = make_trader()
    orders = [submit(a, side="Buy", order_qty=1_000_000, price=str(40000 + i)) for i in range(3)]
    settle(engine)
    assert balance(a).order_margin > 0
    text = 'a tab\there, a backslash \\ and "quotes"\non two lines'  # stored by COPY: kept as it is
    services.cancel_orders(orders=[orders[0]], text=text)
    settle(engine)
    assert fresh(orders[0]).ord_status == OrdStatus.CANCELED
    assert orders[0].commands.get().text == text
    services.cancel_all_orders(account=a, symbol=LIN)
    settle(engine)
    assert all(fresh(o).ord_status == OrdStatus.CANCELED for o in orders)
    assert balance(a).order_margin == 0


def test_cancel_of_a_filled_order_is_rejected_with_its_state(engine, make_trader):
    a, b = make_trader(), make_trader()
    ask = submit(a, side="Sell", order_qty=1_000_000, price="50000")
    settle(engine)
    submit(b, side="Buy", order_qty=1_000_000, price="50000")
    settle(engine)
    (result,) = services.cancel_orders(orders=[fresh(ask)])
    assert result.ord_status == OrdStatus.FILLED and not result.commands.exists()


def test_a_retried_cl_ord_id_returns_the_first_order(engine, make_trader):
    a = make_trader()
    first = submit(a, side="Buy", order_qty=1_000_000, price="40000", cl_ord_id="my-order-1")
    again = submit(a, side="Buy", order_qty=1_000_000, price="40000", cl_ord_id="my-order-1")
    assert first.pk == again.pk and Order.objects.filter(account=a).count() == 1
    settle(engine)


def test_an_order_beyond_the_available_margin_is_rejected_and_reserves_nothing(engine, make_trader):
    poor = make_trader(usdt="100", xbt="0")
    # 1 XBT at 50,000 with 10x leverage needs 5,000 USDT of margin
    with pytest.raises(InsufficientBalance, match="Account has insufficient Available Balance"):
        submit(poor, side="Buy", order_qty=1_000_000, price="50000")
    assert not Order.objects.filter(account=poor).exists()
    assert balance(poor).order_margin == 0


def test_an_order_that_only_reduces_needs_no_margin(engine, make_trader):
    a, b = make_trader(), make_trader()
    submit(a, side="Sell", order_qty=1_000_000, price="50000")
    settle(engine)
    submit(b, side="Buy", order_qty=1_000_000, price="50000")
    settle(engine)
    reducing = submit(b, side="Sell", order_qty=1_000_000, price="60000", exec_inst="ReduceOnly")
    assert reducing.margin_reserved == 0
    settle(engine)


def test_higher_leverage_needs_less_margin(engine, make_trader):
    a = make_trader()
    services.set_leverage(account=a, symbol=LIN, leverage=50)
    order = submit(a, side="Buy", order_qty=1_000_000, price="50000")
    assert order.margin_reserved == D(1000) + D("37.5")  # 50,000 / 50 + taker fee
    settle(engine)
    with pytest.raises(OrderRejected, match="Invalid leverage"):
        services.set_leverage(account=a, symbol=LIN, leverage=101)


def test_a_fill_after_a_leverage_change_takes_margin_at_the_new_leverage(engine, make_trader):
    """The engine reads each position's leverage as it writes the fill: a change its owner made
    since the last fill holds for the whole position."""
    a, b = make_trader(), make_trader()
    submit(a, side="Sell", order_qty=2_000_000, price="50000")
    settle(engine)
    submit(b, side="Buy", order_qty=1_000_000, price="50000")
    settle(engine)
    position = Position.objects.get(account=b, instrument__symbol=LIN)
    assert position.margin == D(5000)  # 1 XBT at 50,000 with 10x
    services.set_leverage(account=b, symbol=LIN, leverage=50)
    submit(b, side="Buy", order_qty=1_000_000, price="50000")
    settle(engine)
    position.refresh_from_db()
    assert (position.current_qty, position.leverage, position.margin) == (2_000_000, 50, D(2000))
    assert balance(b).position_margin == D(2000)


@pytest.mark.parametrize("fields, message", [
    ({"symbol": "NOPE"}, "Invalid symbol"),
    ({"price": "50000.25"}, "tickSize"),
    ({"price": "-5"}, "Invalid price"),
    ({"order_qty": 1500}, "orderQty is invalid"),
    ({"order_qty": "abc"}, "orderQty is invalid"),
    ({"side": "Up"}, "Invalid side"),
    ({"ord_type": "Stop", "price": None}, "Invalid stopPx for ordType"),
    ({"time_in_force": "Forever"}, "Invalid timeInForce"),
    ({"exec_inst": "Hidden"}, "Invalid execInst"),
    ({"cl_ord_id": "x" * 40}, "Invalid clOrdID"),
])
def test_bad_orders_are_refused_with_a_clear_message(engine, make_trader, fields, message):
    a = make_trader()
    request = {"symbol": LIN, "side": "Buy", "order_qty": 1_000_000, "price": "50000", "ord_type": "Limit", **fields}
    with pytest.raises(OrderRejected, match=message):
        services.submit_order(account=a, **request)
    assert not Order.objects.filter(account=a).exists()


def test_orders_whose_stream_entry_was_lost_are_applied_by_the_sweep(engine, make_trader, settings):
    """Redis may restart empty: the stored orders are the truth and the engine finds them."""
    from matching import streams

    a, b = make_trader(), make_trader()
    ask = submit(a, side="Sell", order_qty=1_000_000, price="50000")
    bid = submit(b, side="Buy", order_qty=1_000_000, price="50000")
    streams.client().delete(streams.stream_key(LIN))  # the stream and its consumer group are gone
    settings.ENGINE_SWEEP_SECONDS = 0
    rounds = iter(range(3))
    engine.run(stop=lambda: next(rounds, None) is None)
    assert fresh(ask).ord_status == fresh(bid).ord_status == OrdStatus.FILLED


def test_the_sweep_waits_while_the_stream_still_holds_entries(engine, make_trader, settings, monkeypatch):
    """An order stored seconds ago may be queued behind a long fan-out: the stream brings it, and the
    sweep leaves it alone, except as a last resort after MAX_SWEEP_INTERVAL."""
    from matching import engine as engine_module, streams

    settings.ENGINE_SWEEP_SECONDS = 0
    a = make_trader()
    order = submit(a, side="Buy", order_qty=1_000_000, price="40000", wait=0)
    streams.send_commands(LIN, [("order", order.pk)])  # its entry (on commit, which a test never reaches)
    monkeypatch.setattr(streams, "read_entries", lambda *args, **kwargs: [])  # read before it arrived
    engine.last_sweep = time.monotonic() - 5
    engine.step()
    assert fresh(order).ord_status == OrdStatus.PENDING_NEW
    monkeypatch.setattr(engine_module, "MAX_SWEEP_INTERVAL", 0)
    engine.last_sweep = 0
    engine.step()
    assert fresh(order).ord_status == OrdStatus.NEW


@pytest.mark.django_db(transaction=True)
def test_two_orders_at_once_cannot_both_reserve_the_same_margin(engine_streams, make_trader):
    import threading

    from django.db import connections

    account = make_trader(usdt="6000", xbt="0")  # one 1 XBT order at 10x needs 5,037.5
    barrier = threading.Barrier(2)
    results = []

    def place(i):
        try:
            barrier.wait()
            submit(account, side="Buy", order_qty=1_000_000, price="50000", cl_ord_id=f"race-{i}", wait=0)
            results.append("accepted")
        except InsufficientBalance:
            results.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=place, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["accepted", "refused"]
    assert balance(account).order_margin == D("5037.5")


@pytest.mark.django_db(transaction=True)
def test_a_retry_waiting_for_its_first_trys_lock_gets_that_order_not_a_refusal(engine_streams, make_trader,
                                                                               monkeypatch):
    """The retry of a request still being written waits for the balance lock; once the first try
    commits, its margin is taken, and the retry must answer with that order rather than try to
    reserve the margin again."""
    from django.db import transaction

    from tests.conftest import retry_while_first_try_commits

    account = make_trader(usdt="6000", xbt="0")  # one 1 XBT order at 10x needs 5,037.5, two do not fit
    answers = retry_while_first_try_commits(monkeypatch, transaction, "on_commit", lambda: submit(
        account, side="Buy", order_qty=1_000_000, price="50000", cl_ord_id="once", wait=0))
    assert isinstance(answers["retry"], Order) and answers["retry"].pk == answers["first"].pk, answers
    assert Order.objects.filter(account=account).count() == 1 and balance(account).order_margin == D("5037.5")


def pipelined_engine_with_slow_writes(monkeypatch):
    """An engine that commits on its writer thread, one entry per batch, each write 0.3 s: every
    batch is matched while the one before it still commits."""
    from matching import persistence
    from matching.engine import Engine

    write_batch = persistence.write_batch

    def slow_write(rows):
        time.sleep(0.3)
        return write_batch(rows)

    monkeypatch.setattr(persistence, "write_batch", slow_write)
    return Engine(batch_size=1, pipelined=True)


@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_keys_cannot_be_taken_is_matched_again_after_a_rebuild(engine_streams, make_trader,
                                                                              monkeypatch):
    """A batch's keys are taken from the database before it is handed to the writer thread, while
    the previous batch still commits. If that fails, the batch is in the books but will not be
    written: the engine rebuilds and matches it again, once."""
    from django.db import OperationalError

    from matching import persistence

    a, b = make_trader(), make_trader()
    engine = pipelined_engine_with_slow_writes(monkeypatch)
    prepare_write = persistence.prepare_write
    calls = []

    def failing_once(**rows):
        calls.append(1)
        if len(calls) == 2:  # the fill's batch, matched while the ask's batch commits
            raise OperationalError("connection lost")
        return prepare_write(**rows)

    monkeypatch.setattr(persistence, "prepare_write", failing_once)
    ask = submit(a, side="Sell", order_qty=1_000_000, price="50000", wait=0)
    bid = submit(b, side="Buy", order_qty=1_000_000, price="50000", time_in_force="ImmediateOrCancel", wait=0)
    deadline = time.monotonic() + 20
    engine.run(stop=lambda: time.monotonic() > deadline or (
        fresh(bid).ord_status != OrdStatus.PENDING_NEW and engine.in_flight is None))
    assert len(calls) >= 3
    assert fresh(bid).ord_status == fresh(ask).ord_status == OrdStatus.FILLED
    assert Execution.objects.filter(order__in=[ask, bid]).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_cancel_matched_while_its_filled_order_still_commits_finds_it_filled(engine_streams, make_trader,
                                                                              monkeypatch, caplog):
    """Pipelined, the engine matches batch N+1 while the writer thread commits batch N. A cancel in
    N+1 for an order N filled must find it filled, although the database still shows it pending:
    taken for a lost order, it would be applied a second time."""
    from matching.models import OrderCommand

    a, b = make_trader(), make_trader()
    engine = pipelined_engine_with_slow_writes(monkeypatch)
    ask = submit(a, side="Sell", order_qty=1_000_000, price="50000", wait=0)
    bid = submit(b, side="Buy", order_qty=1_000_000, price="50000", time_in_force="ImmediateOrCancel", wait=0)
    services.cancel_orders(orders=[bid], wait=0)  # queued right behind it
    command = OrderCommand.objects.get(order=bid)
    deadline = time.monotonic() + 20
    engine.run(stop=lambda: time.monotonic() > deadline or (
        not OrderCommand.objects.filter(pk=command.pk, status=OrderCommand.Status.PENDING).exists()
        and engine.in_flight is None))
    command.refresh_from_db()
    assert command.status == OrderCommand.Status.REJECTED and "Filled" in command.reason
    assert fresh(bid).ord_status == fresh(ask).ord_status == OrdStatus.FILLED
    assert Execution.objects.filter(order=bid).count() == 1
    # applied twice, its margin would be released twice: the database refuses that batch and the
    # engine rebuilds, so the outcome alone would not tell
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.django_db(transaction=True)
def test_an_order_a_command_applied_ahead_of_its_entry_is_not_applied_again(engine_streams, make_trader,
                                                                           monkeypatch, caplog):
    """A cancel that arrives before its order's entry applies the order first. When the order's own
    entry follows while that batch still commits, the database still shows the order pending: it
    must not be applied a second time (a canceled order would come back to the book)."""
    from matching import streams
    from matching.models import OrderCommand

    a = make_trader()
    engine = pipelined_engine_with_slow_writes(monkeypatch)
    order = submit(a, side="Buy", order_qty=1_000_000, price="40000", wait=0)
    services.cancel_orders(orders=[order], wait=0)
    command = OrderCommand.objects.get(order=order)
    streams.client().delete(streams.stream_key(LIN))  # the entries as they were sent: dropped ...
    streams.send_commands(LIN, [("command", command.pk)])  # ... and the command's arrives first
    streams.send_commands(LIN, [("order", order.pk)])
    deadline = time.monotonic() + 20
    engine.run(stop=lambda: time.monotonic() > deadline or (
        not streams.unread([streams.stream_key(LIN)]) and engine.in_flight is None
        and not OrderCommand.objects.filter(pk=command.pk, status=OrderCommand.Status.PENDING).exists()))
    assert fresh(order).ord_status == OrdStatus.CANCELED
    assert engine.states[order.instrument_id].book.depth(10) == ([], [])
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.django_db(transaction=True)
def test_a_committed_batch_is_announced_even_when_the_next_one_fails(engine_streams, make_trader, monkeypatch):
    """Batch N commits on the writer thread while N+1 fails to match: the books are rebuilt, and N is
    still acknowledged and announced (its leader fills must reach the fan-out)."""
    from matching.engine import Engine
    from matching.signals import batch_committed

    a, b = make_trader(), make_trader()
    engine = pipelined_engine_with_slow_writes(monkeypatch)
    ask = submit(a, side="Sell", order_qty=1_000_000, price="50000", wait=0)
    bid = submit(b, side="Buy", order_qty=1_000_000, price="50000", wait=0)
    announced = []

    def record(sender, batch, **kwargs):
        announced.extend(batch.applied)

    batch_committed.connect(record, dispatch_uid="test.record")
    prepare, failures = Engine.prepare, []

    def prepare_failing_once(self, entries, waiting=frozenset()):
        if ("order", bid.pk) in entries and not failures:
            failures.append(entries)
            raise RuntimeError("a bug")
        return prepare(self, entries, waiting)

    monkeypatch.setattr(Engine, "prepare", prepare_failing_once)
    deadline = time.monotonic() + 20
    try:
        engine.run(stop=lambda: time.monotonic() > deadline or ("order", bid.pk) in announced)
    finally:
        batch_committed.disconnect(dispatch_uid="test.record")
    assert failures and ("order", ask.pk) in announced and ("order", bid.pk) in announced
    assert fresh(ask).ord_status == fresh(bid).ord_status == OrdStatus.FILLED


@pytest.mark.django_db(transaction=True)
def test_a_committed_batch_is_announced_while_the_next_one_is_still_matched(engine_streams, make_trader,
                                                                            monkeypatch):
    """The writer thread acknowledges and announces batch N as soon as it commits: N's replies and
    fills do not wait until N+1 has been matched."""
    import threading

    from matching.engine import Engine
    from matching.signals import batch_committed

    a, b = make_trader(), make_trader()
    engine = pipelined_engine_with_slow_writes(monkeypatch)
    ask = submit(a, side="Sell", order_qty=1_000_000, price="50000", wait=0)
    bid = submit(b, side="Buy", order_qty=1_000_000, price="40000", wait=0)
    ask_announced, seen_while_matching = threading.Event(), []

    def record(sender, batch, **kwargs):
        if ("order", ask.pk) in batch.applied:
            ask_announced.set()

    batch_committed.connect(record, dispatch_uid="test.record")
    prepare = Engine.prepare

    def slow_prepare(self, entries, waiting=frozenset()):
        if ("order", bid.pk) in entries:  # matched while the ask's batch commits
            seen_while_matching.append(ask_announced.wait(timeout=5))
        return prepare(self, entries, waiting)

    monkeypatch.setattr(Engine, "prepare", slow_prepare)
    deadline = time.monotonic() + 20
    try:
        engine.run(stop=lambda: time.monotonic() > deadline or (
            fresh(bid).ord_status != OrdStatus.PENDING_NEW and engine.in_flight is None))
    finally:
        batch_committed.disconnect(dispatch_uid="test.record")
    assert seen_while_matching == [True]
    assert fresh(ask).ord_status == fresh(bid).ord_status == OrdStatus.NEW


def test_stream_entries_are_applied_once_and_malformed_ones_are_dropped(engine, make_trader):
    """A repeated entry finds its order no longer pending; an entry without a valid id is acknowledged
    and dropped without stopping the batch."""
    from matching import streams

    a, b = make_trader(), make_trader()
    ask = submit(a, side="Sell", order_qty=1_000_000, price="50000")
    bid = submit(b, side="Buy", order_qty=1_000_000, price="50000")
    key = streams.stream_key(LIN)
    client = streams.client()
    client.xadd(key, {"kind": "order", "id": "not-a-number"})
    client.xadd(key, {"kind": "order"})
    client.xadd(key, {"kind": "nonsense", "id": ask.pk})
    streams.send_commands(LIN, [("order", bid.pk), ("order", ask.pk)])  # each a second time
    engine._ensure_groups()
    while engine.step():
        pass
    assert fresh(ask).ord_status == fresh(bid).ord_status == OrdStatus.FILLED
    assert Execution.objects.filter(order__in=[ask, bid]).count() == 2
    assert client.xpending(key, "engine")["pending"] == 0
    assert client.xlen(key) == 0  # applied entries are deleted once committed


def test_stream_replies_are_read_in_both_protocol_shapes():
    """Redis answers XREADGROUP as a map (RESP3) or as pairs (RESP2); the engine reads both."""
    from unittest import mock

    from matching import streams

    fields = [b"kind", b"order", b"id", b"7,8", b"reply", b"1"]
    for reply in ({b"s": [[b"1-0", fields]]}, [[b"s", [[b"1-0", fields]]]]):
        with mock.patch.object(streams, "_engine_client") as client:
            client.return_value.xreadgroup.return_value = reply
            assert streams.read_entries("c", {"s": ">"}, 10) == [("s", b"1-0", "order", [7, 8], True)]


def test_a_run_of_orders_shares_stream_entries_and_keeps_its_order(engine, make_trader):
    """Thousands of copied orders are a few stream entries; orders and commands keep their order."""
    from matching import streams

    maker, taker = make_trader(usdt="10000000"), make_trader()
    asks = [services.submit_order(account=maker, symbol=LIN, side="Sell", order_qty=1_000_000,
                                  price=str(50000 + i), wait=0) for i in range(streams.IDS_PER_ENTRY + 3)]
    key = streams.stream_key(LIN)  # empty: the requests' own entries go out after their commit
    services.cancel_orders(orders=[asks[1]], wait=0)
    command = asks[1].commands.latest("pk")
    bid = submit(taker, side="Buy", order_qty=2_000_000, price="50001", wait=0)
    entries = [("order", o.pk) for o in asks] + [("command", command.pk), ("order", bid.pk)]
    before = streams.client().xlen(key)
    streams.send_commands(LIN, entries)
    assert streams.client().xlen(key) - before == 4  # 250 orders, 3 orders, the cancel, the bid
    engine._ensure_groups()
    while engine.step():
        pass
    assert fresh(asks[1]).ord_status == OrdStatus.CANCELED  # canceled before the bid arrived
    assert fresh(asks[0]).ord_status == OrdStatus.FILLED and fresh(asks[2]).ord_status == OrdStatus.NEW
    assert fresh(bid).ord_status == OrdStatus.PARTIALLY_FILLED


def test_the_any_lookup_matches_the_in_lookup(make_trader):
    """`field__any` sends a list as one array parameter: same rows as `__in`, on keys and foreign keys."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.models import Account

    ids = [make_trader().pk, make_trader().pk]
    with CaptureQueriesContext(connection) as queries:
        by_any = sorted(Balance.objects.filter(account_id__any=ids).values_list("pk", flat=True))
    assert by_any == sorted(Balance.objects.filter(account_id__in=ids).values_list("pk", flat=True))
    assert len(by_any) == 4 and "= ANY(" in queries[0]["sql"]
    # cast to the column's type (not the driver's int2[]), so PostgreSQL can hash a long list
    assert queries[0]["sql"].endswith("::bigint[])")
    assert list(Balance.objects.filter(account_id__any=[])) == []
    accounts = list(Account.objects.filter(pk__in=ids))
    assert sorted(Balance.objects.filter(account__any=accounts).values_list("pk", flat=True)) == by_any
    with pytest.raises(TypeError, match="list of values"):
        list(Balance.objects.filter(account_id__any=ids[0]))
    with CaptureQueriesContext(connection) as queries:
        assert Balance.objects.filter(asset_id__any=["USDT", "XBT"]).count() == Balance.objects.filter(
            asset_id__in=["USDT", "XBT"]).count()
    assert "[]" not in queries[0]["sql"]  # no cast to varchar(n)[], which would cut longer values


@pytest.mark.django_db
def test_array_literals_bring_every_value_back_unchanged():
    """The raw bulk reads and writes send each column as one array literal: every value, odd
    text included, reaches PostgreSQL as it was."""
    from datetime import datetime, timezone as tz

    from config.rawsql import array_text, fetch_all

    cases = [
        ([1, None, -(2**62), 0], "bigint"),
        ([D("1E-8"), D("-0.5"), None, D("123456789.123456789")], "numeric"),
        (["", "NULL", "null", "a,b", "{x}", 'say "hi"', "back\\slash", " padded ", "ünï", None], "text"),
        ([True, False, None], "boolean"),
        ([datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=tz.utc), None], "timestamptz"),
        (["2026-01-02T03:04:05.678901+00:00"], "timestamptz"),  # already text, as COPY rows carry it
        ([], "bigint"),
    ]
    for values, sqltype in cases:
        ((back,),) = fetch_all(f"SELECT %s::{sqltype}[]", [array_text(values, sqltype)])
        if values and isinstance(values[0], str) and sqltype == "timestamptz":
            values = [datetime.fromisoformat(v) for v in values]
        assert back == values, sqltype
    assert array_text(iter([3, 4])) == "{3,4}"  # any iterable, read once


def test_an_order_the_engine_cannot_apply_is_rejected_and_the_others_go_on(engine, make_trader, settings):
    """One bad entry must not stop the engine: its batch fails, comes again entry by entry, and the
    entry that fails again is rejected with its margin released."""
    import time
    from unittest import mock

    a, b, c = make_trader(), make_trader(), make_trader()
    ask = submit(a, side="Sell", order_qty=1_000_000, price="50000")
    bad = submit(c, side="Buy", order_qty=1_000_000, price="49000")
    bid = submit(b, side="Buy", order_qty=1_000_000, price="50000")
    settings.ENGINE_SWEEP_SECONDS = 0
    apply_new_order = engine.apply_new_order

    def poisoned(state, order, batch):
        if order.pk == bad.pk:
            raise RuntimeError("a bug")
        apply_new_order(state, order, batch)

    deadline = time.monotonic() + 20
    with mock.patch.object(engine, "apply_new_order", poisoned):
        engine.run(stop=lambda: fresh(bad).ord_status != OrdStatus.PENDING_NEW or time.monotonic() > deadline)
    bad = fresh(bad)
    assert bad.ord_status == OrdStatus.REJECTED and "could not apply" in bad.ord_rej_reason
    assert bad.margin_reserved == 0 and balance(c).order_margin == 0
    assert fresh(ask).ord_status == fresh(bid).ord_status == OrdStatus.FILLED


def test_runengine_refuses_a_batch_size_below_one():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        call_command("runengine", batch_size=0)


def test_an_order_filled_many_times_in_one_batch_has_one_entry_of_each_kind(engine, make_trader):
    """A resting order taken by three orders of one batch: three executions each side, but one fee
    entry for the resting order, naming it, of the three fees together; a taker's one fill names
    its execution. The books balance."""
    maker = make_trader()
    resting = services.submit_order(account=maker, symbol="XBTUSDT", side="Sell", order_qty=3_000_000, price="50000")
    settle(engine)
    takers = [make_trader() for _ in range(3)]
    for taker in takers:
        services.submit_order(account=taker, symbol="XBTUSDT", side="Buy", order_qty=1_000_000, price="50000")
    settle(engine)  # the three in one batch
    fills = Execution.objects.filter(order_id=resting.pk)
    assert fills.count() == 3
    (entry,) = LedgerEntry.objects.filter(account=maker, kind=LedgerEntry.Kind.FEE)
    assert entry.reference == f"order:{resting.pk}" and entry.amount == -sum(f.exec_comm for f in fills)
    for taker in takers:
        (entry,) = LedgerEntry.objects.filter(account=taker, kind=LedgerEntry.Kind.FEE)
        (fill,) = Execution.objects.filter(account=taker)
        assert entry.reference == f"execution:{fill.exec_id}" and entry.amount == -fill.exec_comm


@pytest.mark.django_db(transaction=True)
def test_an_amend_locks_its_order_and_not_its_instrument(engine, make_trader):
    """The engine writes the instrument's prices while it holds balance rows: an amend that locked
    the instrument too could wait for it, and it for the amend."""
    import psycopg
    from django.db import connection

    from bench.engine import database_url

    trader = make_trader()
    order = services.submit_order(account=trader, symbol="XBTUSDT", side="Buy", order_qty=1_000_000, price="40000")
    settle(engine)
    with psycopg.connect(database_url()) as other:  # holds the instrument's row, as a writing engine does
        other.execute("SELECT 1 FROM matching_instrument WHERE id = %s FOR UPDATE", [order.instrument_id])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
        try:
            services.amend_order(account=trader, order=order, price="40500", wait=0)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = 0")
    settle(engine)
    order.refresh_from_db()
    assert order.price == D("40500")


@pytest.mark.django_db(transaction=True)
def test_an_amend_takes_its_balance_before_its_order_as_the_engine_does(engine, make_trader):
    """The engine's write holds balance rows, then updates orders: an amend that held its order while
    it waited for its balance deadlocked with it."""
    import threading

    import psycopg
    from django.db import connection

    from bench.engine import database_url

    trader = make_trader()
    order = submit(trader, side="Buy", order_qty=1_000_000, price="40000")
    settle(engine)
    errors = []

    def amend():
        try:
            services.amend_order(account=trader, order=order, order_qty=2_000_000, wait=0)
        except Exception as error:  # noqa: BLE001 - the test reports it
            errors.append(error)
        finally:
            connection.close()

    with psycopg.connect(database_url()) as writer:  # as the engine's write: the balance, then the order
        writer.execute("SELECT 1 FROM accounts_balance WHERE account_id = %s FOR NO KEY UPDATE", [trader.pk])
        thread = threading.Thread(target=amend)
        thread.start()
        time.sleep(0.5)  # the amend waits for a lock by now
        writer.execute("UPDATE matching_order SET text = text WHERE id = %s", [order.pk])
    thread.join(10)
    assert errors == []
    settle(engine)
    assert fresh(order).order_qty == 2_000_000


def available(account, asset="USDT"):
    return available_balance(balance(account, asset))


def test_an_orderqty_amend_sets_the_total_even_when_a_fill_came_first(engine, make_trader):
    maker, taker = make_trader(usdt="10000000"), make_trader(usdt="10000000")
    ask = submit(maker, side="Sell", order_qty=3_000_000, price="50000")
    settle(engine)
    submit(taker, side="Buy", order_qty=1_500_000, price="50000")  # stored, and so applied, before the amend
    services.amend_order(account=maker, order=ask, order_qty=2_000_000)
    settle(engine)
    assert (fresh(ask).order_qty, ask.cum_qty, ask.leaves_qty) == (2_000_000, 1_500_000, 500_000)
    # an amend to less than has filled meanwhile ends the order with what it has
    services.cancel_orders(orders=[ask])
    ask2 = submit(maker, side="Sell", order_qty=3_000_000, price="50000")
    settle(engine)
    submit(taker, side="Buy", order_qty=2_500_000, price="50000")
    services.amend_order(account=maker, order=ask2, order_qty=2_000_000)
    settle(engine)
    assert (fresh(ask2).ord_status, ask2.order_qty, ask2.cum_qty, ask2.leaves_qty, ask2.margin_reserved) == (
        OrdStatus.CANCELED, 2_500_000, 2_500_000, 0, 0)


def test_a_reduce_only_order_amended_larger_across_the_book_never_flips_the_position(engine, make_trader):
    market_maker, trader = make_trader(usdt="10000000"), make_trader(usdt="5200")
    submit(market_maker, side="Sell", order_qty=1_000_000, price="50000")
    settle(engine)
    submit(trader, side="Buy", order_qty=1_000_000, price="50000")
    settle(engine)
    take_profit = submit(trader, side="Sell", order_qty=1_000_000, price="60000", exec_inst="ReduceOnly")
    submit(market_maker, side="Buy", order_qty=5_000_000, price="49000")
    settle(engine)
    services.amend_order(account=trader, order=take_profit, order_qty=3_000_000, price="49000")
    settle(engine)
    assert position(trader).current_qty == 0
    assert (fresh(take_profit).ord_status, take_profit.cum_qty) == (OrdStatus.FILLED, 1_000_000)


@pytest.mark.parametrize("first_resting", [False, True])  # the first still PendingNew, or held in the book
def test_orders_reducing_the_same_position_share_it_so_the_excess_holds_margin(engine, make_trader, first_resting):
    market_maker, trader = make_trader(usdt="10000000"), make_trader(usdt="5200")
    submit(market_maker, side="Sell", order_qty=1_000_000, price="50000")
    settle(engine)
    submit(trader, side="Buy", order_qty=1_000_000, price="50000")
    settle(engine)
    first = submit(trader, side="Sell", order_qty=1_000_000, price="51000")
    assert first.margin_reserved == D("38.25")  # the fee alone: it only closes the long
    if first_resting:
        settle(engine)
    with pytest.raises(InsufficientBalance):  # the long is taken: this one would open a short
        submit(trader, side="Sell", order_qty=1_000_000, price="51000")
    settle(engine)


@pytest.mark.parametrize("symbol, side, cross, resting, funds", [
    (LIN, "Sell", "40000", "50000", {"usdt": "4030"}),  # 10x of 40,000 and the fee: 50,000 is the bid it sells into
    (INV, "Buy", "100000", "50000", {"usdt": "0", "xbt": "0.010075"}),  # 10,000 USD at 100,000; the ask is 50,000
])
def test_an_order_crossing_the_book_holds_margin_at_the_price_it_will_fill(engine, make_trader, symbol, side,
                                                                           cross, resting, funds):
    market_maker, trader = make_trader(usdt="10000000", xbt="100"), make_trader(**funds)
    qty = 1_000_000 if symbol == LIN else 10_000
    submit(market_maker, symbol=symbol, side="Buy" if side == "Sell" else "Sell", order_qty=qty, price=resting)
    settle(engine)
    with pytest.raises(InsufficientBalance):
        submit(trader, symbol=symbol, side=side, order_qty=qty, price=cross)
    settle(engine)


def test_leverage_is_not_lowered_under_open_orders_whose_margin_it_would_not_cover(engine, make_trader):
    trader = make_trader(usdt="100000")
    services.set_leverage(account=trader, symbol=LIN, leverage=10)
    order = submit(trader, side="Buy", order_qty=1_000_000, price="50000")
    settle(engine)
    with pytest.raises(OrderRejected, match="cancel your open XBTUSDT orders before lowering it"):
        services.set_leverage(account=trader, symbol=LIN, leverage=1)
    assert services.set_leverage(account=trader, symbol=LIN, leverage=20).leverage == 20
    services.cancel_orders(orders=[order])
    settle(engine)
    assert services.set_leverage(account=trader, symbol=LIN, leverage=1).leverage == 1


def test_an_isolated_positions_loss_beyond_its_margin_is_never_available(engine, make_trader):
    market_maker, trader = make_trader(usdt="10000000"), make_trader(usdt="10000")
    services.set_leverage(account=trader, symbol=LIN, leverage=10, cross_margin=False)
    submit(market_maker, side="Sell", order_qty=1_000_000, price="50000")
    settle(engine)
    submit(trader, side="Buy", order_qty=1_000_000, price="50000")
    settle(engine)
    submit(market_maker, side="Sell", order_qty=1_000_000, price="44000")
    submit(make_trader(usdt="100000"), side="Buy", order_qty=1_000_000, price="44000")  # the last price: 44,000
    settle(engine)
    services.set_leverage(account=trader, symbol=LIN, leverage=100)  # its margin: 5,000 -> 500
    # 10,000 - 37.5 fee - 500 margin - 6,000 loss, not - 500 as if the loss stopped at the margin
    assert available(trader) == D("10000") - D("37.5") - D("500") - D("6000")


def test_an_account_never_trades_with_itself_its_newer_order_replaces_the_resting_one(engine, make_trader):
    trader, other = make_trader(), make_trader()
    own_ask = submit(trader, side="Sell", order_qty=1_000_000, price="50000")
    other_ask = submit(other, side="Sell", order_qty=1_000_000, price="50500")
    settle(engine)
    bid = submit(trader, side="Buy", order_qty=2_000_000, price="50500")
    settle(engine)
    assert (fresh(own_ask).ord_status, own_ask.text) == (OrdStatus.CANCELED, "Canceled: self-trade prevention")
    assert (fresh(bid).ord_status, bid.cum_qty, bid.avg_px) == (OrdStatus.PARTIALLY_FILLED, 1_000_000, D(50500))
    assert fresh(other_ask).ord_status == OrdStatus.FILLED
    assert not Execution.objects.filter(order=own_ask).exists()


def test_a_positions_realized_pnl_adds_up_its_closes_until_a_new_one_opens(engine, make_trader):
    short, long_ = make_trader(), make_trader()
    submit(short, side="Sell", order_qty=2_000_000, price="50000")
    settle(engine)
    submit(long_, side="Buy", order_qty=2_000_000, price="50000")
    settle(engine)
    for price in ("51000", "52000"):  # closed in two halves: +1,000 then +2,000
        submit(short, side="Buy", order_qty=1_000_000, price=price)
        settle(engine)
        submit(long_, side="Sell", order_qty=1_000_000, price=price)
        settle(engine)
    assert (position(long_).current_qty, position(long_).realized_pnl, position(long_).cum_realized_pnl) == (
        0, D(3000), D(3000))
    submit(short, side="Sell", order_qty=1_000_000, price="52000")
    settle(engine)
    submit(long_, side="Buy", order_qty=1_000_000, price="52000")
    settle(engine)
    assert (position(long_).realized_pnl, position(long_).cum_realized_pnl) == (0, D(3000))


def test_a_conditional_order_holds_margin_at_its_trigger_not_at_todays_book(engine, make_trader):
    market_maker, trader = make_trader(usdt="10000000"), make_trader()
    submit(market_maker, side="Buy", order_qty=1_000_000, price="50000")  # the bid
    settle(engine)
    stop = submit(trader, side="Sell", order_qty=1_000_000, ord_type="Stop", stop_px="45000")
    instrument = stop.instrument
    at_trigger = services.order_margin(instrument=instrument, side="Sell", qty=1_000_000, price=D(45000),
                                       leverage=position(trader).leverage, position_qty=0)
    assert stop.margin_reserved == at_trigger  # not at the 50,000 bid it cannot sell into once triggered
    settle(engine)


def longs(engine, make_trader, *accounts_and_qty):
    """Each account buys its quantity at 50,000 from a market maker of their own; returns it."""
    market_maker = make_trader(usdt="10000000")
    submit(market_maker, side="Sell", order_qty=sum(qty for _, qty in accounts_and_qty), price="50000")
    settle(engine)
    for account, qty in accounts_and_qty:
        submit(account, side="Buy", order_qty=qty, price="50000")
    settle(engine)
    return market_maker


def long_of(engine, make_trader, lots: int, usdt: str = "100000"):
    """(market maker, trader long `lots` XBT bought at 50,000)."""
    trader = make_trader(usdt=usdt)
    return longs(engine, make_trader, (trader, lots * 1_000_000)), trader


def test_a_take_profit_that_only_closed_the_position_is_canceled_once_the_position_is_gone(engine, make_trader):
    market_maker, trader = long_of(engine, make_trader, 1, usdt="5200")
    take_profit = submit(trader, side="Sell", order_qty=1_000_000, price="55000")  # no ReduceOnly
    assert (take_profit.margin_reserved, take_profit.unmargined_qty) == (D("41.25"), 1_000_000)  # the fee alone
    settle(engine)
    submit(market_maker, side="Buy", order_qty=1_000_000, price="49000")
    close = submit(trader, side="Sell", order_qty=1_000_000, ord_type="Market", exec_inst="ReduceOnly")
    settle(engine)
    assert fresh(close).ord_status == OrdStatus.FILLED and position(trader).current_qty == 0
    # it holds no margin to open a short of 55,000 USDT: resting on, it would have opened one unmargined
    assert (fresh(take_profit).ord_status, take_profit.leaves_qty, take_profit.margin_reserved) == (
        OrdStatus.CANCELED, 0, 0)
    assert take_profit.text.startswith("Canceled: the position it would have reduced is gone")
    submit(market_maker, side="Buy", order_qty=1_000_000, price="55000")
    settle(engine)
    assert position(trader).current_qty == 0 and balance(trader).order_margin == 0


def test_an_order_is_cut_to_the_part_of_the_position_left_and_keeps_its_place(engine, make_trader):
    market_maker, trader = long_of(engine, make_trader, 2)
    take_profit = submit(trader, side="Sell", order_qty=2_000_000, price="55000")
    settle(engine)
    behind = submit(market_maker, side="Sell", order_qty=1_000_000, price="55000")
    submit(market_maker, side="Buy", order_qty=1_000_000, price="49000")
    submit(trader, side="Sell", order_qty=1_000_000, ord_type="Market", exec_inst="ReduceOnly")
    settle(engine)
    assert position(trader).current_qty == 1_000_000
    fresh(take_profit)
    assert (take_profit.ord_status, take_profit.order_qty, take_profit.leaves_qty, take_profit.unmargined_qty) == (
        OrdStatus.NEW, 1_000_000, 1_000_000, 1_000_000)
    assert take_profit.text.startswith("Quantity cut: the position it would have reduced is smaller now")
    buyer = make_trader()
    submit(buyer, side="Buy", order_qty=1_000_000, price="55000")
    settle(engine)
    assert fresh(take_profit).ord_status == OrdStatus.FILLED and fresh(behind).cum_qty == 0  # still ahead in the queue
    assert position(trader).current_qty == 0


def test_an_order_partly_margined_keeps_the_margin_of_its_opening_part_while_it_reduces(engine, make_trader):
    market_maker, trader = long_of(engine, make_trader, 1)
    flip = submit(trader, side="Sell", order_qty=2_000_000, price="55000")  # closes 1 XBT, opens a short of 1
    opening = D(55000) / 10  # 1 XBT at 55,000, 10x
    assert flip.margin_reserved == opening + 2 * D("41.25") and flip.unmargined_qty == 1_000_000
    settle(engine)
    submit(market_maker, side="Buy", order_qty=1_000_000, price="55000")
    settle(engine)
    assert position(trader).current_qty == 0
    fresh(flip)
    # the fill closed the long: the margin of the short still to open is all there (before: half was
    # released); so is the fee reserved for the whole order, released when the rest fills
    assert (flip.unmargined_qty, flip.margin_reserved) == (0, opening + 2 * D("41.25"))
    submit(market_maker, side="Buy", order_qty=1_000_000, price="55000")
    settle(engine)
    assert position(trader).current_qty == -1_000_000 and position(trader).margin == opening
    assert fresh(flip).margin_reserved == 0 and balance(trader).order_margin == 0


def test_a_stop_that_would_only_have_closed_is_canceled_when_triggered_without_a_position(engine, make_trader):
    market_maker, trader = long_of(engine, make_trader, 1, usdt="5200")
    stop_loss = submit(trader, side="Sell", order_qty=1_000_000, ord_type="Stop", stop_px="45000")  # no ReduceOnly
    assert stop_loss.unmargined_qty == 1_000_000
    submit(market_maker, side="Buy", order_qty=1_000_000, price="52000")
    settle(engine)
    submit(trader, side="Sell", order_qty=1_000_000, ord_type="Market", exec_inst="Close")
    settle(engine)
    assert position(trader).current_qty == 0 and fresh(stop_loss).ord_status == OrdStatus.UNTRIGGERED
    seller = make_trader()
    submit(market_maker, side="Buy", order_qty=2_000_000, price="44000")
    submit(seller, side="Sell", order_qty=1_000_000, price="44000")  # the price falls through the stop
    settle(engine)
    assert fresh(stop_loss).ord_status == OrdStatus.CANCELED and stop_loss.cum_qty == 0
    assert stop_loss.text.startswith("Canceled: the position it would have reduced is gone")
    assert position(trader).current_qty == 0


def test_an_amend_takes_its_unmargined_part_from_the_position_as_it_stands(engine, make_trader):
    market_maker, trader = long_of(engine, make_trader, 1)
    take_profit = submit(trader, side="Sell", order_qty=1_000_000, price="55000")
    settle(engine)
    services.amend_order(account=trader, order=take_profit, order_qty=3_000_000)  # closes 1, opens 2
    settle(engine)
    fresh(take_profit)
    assert (take_profit.leaves_qty, take_profit.unmargined_qty) == (3_000_000, 1_000_000)
    assert take_profit.margin_reserved == 2 * D(5500) + 3 * D("41.25")


@pytest.mark.parametrize("stop_inst, take_profit", [
    ("ReduceOnly", dict(price="55000", exec_inst="ReduceOnly")),
    ("Close", dict(price="55000", exec_inst="ReduceOnly")),
    ("Close", dict(ord_type="LimitIfTouched", stop_px="50000", price="56000", exec_inst="Close")),  # triggered, resting
])
def test_a_stop_loss_closes_the_position_beside_a_resting_take_profit_which_is_canceled(engine, make_trader,
                                                                                        stop_inst, take_profit):
    market_maker, trader = long_of(engine, make_trader, 1)
    tp = submit(trader, side="Sell", order_qty=1_000_000, **take_profit)
    sl = submit(trader, side="Sell", order_qty=1_000_000, ord_type="Stop", stop_px="48000", exec_inst=stop_inst)
    settle(engine)
    assert fresh(tp).ord_status == OrdStatus.NEW and fresh(sl).ord_status == OrdStatus.UNTRIGGERED
    submit(market_maker, side="Buy", order_qty=3_000_000, price="47000")
    submit(make_trader(), side="Sell", order_qty=1_000_000, price="47000")  # trades at 47,000: through the stop
    settle(engine)
    assert (fresh(sl).ord_status, sl.cum_qty, position(trader).current_qty) == (OrdStatus.FILLED, 1_000_000, 0)
    assert fresh(tp).ord_status == OrdStatus.CANCELED and tp.text == "Canceled: ReduceOnly order exceeded the position"


def test_the_least_aggressive_reduce_only_order_is_cut_first(engine, make_trader):
    market_maker, trader = long_of(engine, make_trader, 1)
    far = submit(trader, side="Sell", order_qty=500_000, price="60000", exec_inst="ReduceOnly")
    near = submit(trader, side="Sell", order_qty=500_000, price="52000", exec_inst="ReduceOnly")
    settle(engine)
    submit(market_maker, side="Buy", order_qty=500_000, price="49000")
    submit(trader, side="Sell", order_qty=500_000, ord_type="Market")  # 1 XBT long -> 0.5
    settle(engine)
    assert position(trader).current_qty == 500_000
    assert fresh(near).ord_status == OrdStatus.NEW and fresh(far).ord_status == OrdStatus.CANCELED


def trade_at(engine, make_trader, price: str) -> None:
    """A trade of 1 XBT at `price` between two traders of its own."""
    submit(make_trader(), side="Sell", order_qty=1_000_000, price=price)
    settle(engine)
    submit(make_trader(), side="Buy", order_qty=1_000_000, price=price)
    settle(engine)


def test_a_trailing_stop_is_pegged_at_the_engines_price_when_it_takes_the_order(engine, make_trader):
    market_maker, trader = long_of(engine, make_trader, 1)
    submit(market_maker, side="Buy", order_qty=5_000_000, price="48500")
    submit(make_trader(), side="Sell", order_qty=1_000_000, price="48500")  # queued: the web still sees 50,000
    trail = submit(trader, side="Sell", order_qty=1_000_000, ord_type="Stop", peg_price_type="TrailingStopPeg",
                   peg_offset_value="-1000", exec_inst="ReduceOnly")
    assert trail.stop_px == D(49000)  # at the price the web knows: where its margin would be reserved
    settle(engine)
    # 1,000 below the 48,500 the engine had: not triggered at once at 49,000
    assert (fresh(trail).ord_status, trail.stop_px) == (OrdStatus.UNTRIGGERED, D(47500))
    assert position(trader).current_qty == 1_000_000


def test_a_trailing_stops_offset_is_amended_and_its_stop_px_is_refused(engine, make_trader):
    trade_at(engine, make_trader, "50000")
    trader = make_trader()
    trail = submit(trader, side="Sell", order_qty=1_000_000, ord_type="Stop", peg_price_type="TrailingStopPeg",
                   peg_offset_value="-1000")
    settle(engine)
    with pytest.raises(OrderRejected, match="a trailing order's stopPx follows the price; amend its pegOffsetValue"):
        services.amend_order(account=trader, order=trail, stop_px="47000")
    with pytest.raises(OrderRejected, match="trails below it"):
        services.amend_order(account=trader, order=trail, peg_offset_value="500")
    services.amend_order(account=trader, order=trail, peg_offset_value="-3000")
    settle(engine)
    assert (fresh(trail).peg_offset_value, trail.stop_px, trail.ord_status) == (D(-3000), D(47000), OrdStatus.UNTRIGGERED)
    trade_at(engine, make_trader, "52000")
    assert fresh(trail).stop_px == D(49000)  # trails at its new offset
    limit = submit(trader, side="Buy", order_qty=1_000_000, price="40000")
    with pytest.raises(OrderRejected, match="the order does not trail the price"):
        services.amend_order(account=trader, order=limit, peg_offset_value="-100")
    settle(engine)


def test_a_trailing_take_profit_follows_the_price_down_and_triggers_on_the_rebound(engine, make_trader):
    market_maker, trader = long_of(engine, make_trader, 1)
    with pytest.raises(OrderRejected, match="Invalid pegOffsetValue"):  # a sell take-profit trails above the price
        submit(trader, side="Sell", order_qty=1_000_000, ord_type="MarketIfTouched", peg_price_type="TrailingStopPeg",
               peg_offset_value="-1000", exec_inst="Close")
    take_profit = submit(trader, side="Sell", order_qty=1_000_000, ord_type="MarketIfTouched",
                         peg_price_type="TrailingStopPeg", peg_offset_value="1000", exec_inst="Close")
    settle(engine)
    assert (fresh(take_profit).stop_px, take_profit.ord_status) == (D(51000), OrdStatus.UNTRIGGERED)
    trade_at(engine, make_trader, "48000")
    assert fresh(take_profit).stop_px == D(49000)  # followed the price down
    trade_at(engine, make_trader, "48500")
    assert fresh(take_profit).stop_px == D(49000)  # and never back up
    submit(market_maker, side="Buy", order_qty=1_000_000, price="48900")
    trade_at(engine, make_trader, "49000")
    assert fresh(take_profit).ord_status == OrdStatus.FILLED and position(trader).current_qty == 0


def test_a_close_order_without_side_or_quantity_closes_the_position(engine, make_trader):
    market_maker, trader = long_of(engine, make_trader, 1)
    with pytest.raises(OrderRejected, match="there is no XBTUSDT position to close"):
        submit(make_trader(), exec_inst="Close")
    with pytest.raises(OrderRejected, match="Invalid symbol: NOPE"):
        submit(trader, symbol="NOPE", exec_inst="Close")
    submit(market_maker, side="Buy", order_qty=2_000_000, price="49000")
    close = submit(trader, exec_inst="Close")  # BitMEX: {"symbol": ..., "execInst": "Close"}
    assert (close.side, close.ord_type) == ("Sell", "Market")
    settle(engine)
    assert fresh(close).ord_status == OrdStatus.FILLED and position(trader).current_qty == 0


def test_a_reduce_only_order_behind_the_accounts_other_sells_never_opens_a_short_in_one_sweep(engine, make_trader):
    market_maker, trader = long_of(engine, make_trader, 1)
    reduce_only = submit(trader, side="Sell", order_qty=1_000_000, price="53000", exec_inst="ReduceOnly")
    ahead = submit(trader, side="Sell", order_qty=1_000_000, price="50500")  # margined: the other reduces first
    settle(engine)
    services.amend_order(account=trader, order=reduce_only, price="51000")  # into the taker's reach
    settle(engine)
    submit(make_trader(), side="Buy", order_qty=2_000_000, price="51000")  # takes both at once
    settle(engine)
    assert fresh(ahead).ord_status == OrdStatus.FILLED and position(trader).current_qty == 0
    assert (fresh(reduce_only).ord_status, reduce_only.cum_qty) == (OrdStatus.CANCELED, 0)


def test_a_sideless_close_is_retried_by_its_clordid(engine, make_trader):
    market_maker, trader = long_of(engine, make_trader, 1)
    submit(market_maker, side="Buy", order_qty=2_000_000, price="49000")
    close = submit(trader, exec_inst="Close", cl_ord_id="close-1")
    assert submit(trader, exec_inst="Close", cl_ord_id="close-1").pk == close.pk  # still pending
    settle(engine)
    assert fresh(close).ord_status == OrdStatus.FILLED and position(trader).current_qty == 0
    assert submit(trader, exec_inst="Close", cl_ord_id="close-1").pk == close.pk  # no position left: the same answer


def test_a_stop_that_opens_fills_no_further_than_its_margin_covers_when_the_price_gaps(engine, make_trader):
    market_maker, opener, short = make_trader(usdt="10000000"), make_trader(), make_trader()
    submit(market_maker, side="Buy", order_qty=1_000_000, price="50000")
    settle(engine)
    submit(short, side="Sell", order_qty=1_000_000, price="50000")
    settle(engine)  # short 1 XBT at 50,000
    breakout = submit(opener, side="Buy", order_qty=1_000_000, ord_type="Stop", stop_px="51000")
    stop_loss = submit(short, side="Buy", order_qty=1_000_000, ord_type="Stop", stop_px="51000", exec_inst="Close")
    # margin for the breakout's fills up to the band around its trigger: 51,000 + 5%
    assert breakout.margin_reserved == services.order_margin(
        instrument=breakout.instrument, side="Buy", qty=1_000_000, price=D(53550), leverage=D(10), position_qty=0)
    submit(market_maker, side="Sell", order_qty=5_000_000, price="60500")
    settle(engine)
    trade_at(engine, make_trader, "60000")  # the price gaps through 51,000
    assert (fresh(breakout).ord_status, breakout.cum_qty, breakout.protect_price) == (
        OrdStatus.CANCELED, 0, D(53550))
    assert position(opener).current_qty == 0 and balance(opener).order_margin == 0
    assert (fresh(stop_loss).ord_status, stop_loss.avg_px) == (OrdStatus.FILLED, D(60500))  # closes whatever the gap
    assert position(short).current_qty == 0


TENTH = 100_000  # 0.1 XBT on XBTUSDT


def test_a_cut_that_lets_the_taker_reach_further_still_keeps_reduce_only_orders_there(engine, make_trader):
    a, b = make_trader(), make_trader()
    longs(engine, make_trader, (a, 8 * TENTH), (b, TENTH))
    submit(a, side="Sell", order_qty=8 * TENTH, price="50100", exec_inst="ReduceOnly")  # cut to 6 before the taker
    submit(a, side="Sell", order_qty=2 * TENTH, price="50050")
    b_reduce_only = submit(b, side="Sell", order_qty=TENTH, price="50300", exec_inst="ReduceOnly")
    submit(b, side="Sell", order_qty=TENTH, price="50200")
    settle(engine)
    submit(make_trader(), side="Buy", order_qty=10 * TENTH, price="50300")  # so it reaches b's orders too
    settle(engine)
    assert position(a).current_qty == 0 and position(b).current_qty == 0
    assert fresh(b_reduce_only).cum_qty == 0


def test_an_amend_that_crosses_keeps_the_reduce_only_orders_it_sweeps(engine, make_trader):
    a, taker = make_trader(), make_trader()
    longs(engine, make_trader, (a, TENTH))
    reduce_only = submit(a, side="Sell", order_qty=TENTH, price="50200", exec_inst="ReduceOnly")
    submit(a, side="Sell", order_qty=TENTH, price="50100")
    bid = submit(taker, side="Buy", order_qty=2 * TENTH, price="49000")
    settle(engine)
    services.amend_order(account=taker, order=bid, price="50200")
    settle(engine)
    assert position(a).current_qty == 0 and fresh(reduce_only).cum_qty == 0


def test_a_small_taker_leaves_the_reduce_only_orders_it_cannot_reach(engine, make_trader):
    a, market_maker = make_trader(), make_trader()
    longs(engine, make_trader, (a, TENTH))
    reduce_only = submit(a, side="Sell", order_qty=TENTH, price="51500", exec_inst="ReduceOnly")
    submit(a, side="Sell", order_qty=TENTH, price="51000")
    submit(make_trader(), side="Sell", order_qty=10 * TENTH, price="50000")
    submit(market_maker, side="Buy", order_qty=TENTH, price="40000")  # its own order, on its own side
    settle(engine)
    submit(market_maker, side="Buy", order_qty=1000, price="52000")  # one lot, filled at 50,000
    settle(engine)
    assert (fresh(reduce_only).ord_status, reduce_only.leaves_qty) == (OrdStatus.NEW, TENTH)


def test_a_take_profit_that_opens_is_cut_to_its_margin_when_the_price_gaps_past_it(engine, make_trader):
    trade_at(engine, make_trader, "50000")
    opener = make_trader(usdt="520")
    sell_high = submit(opener, side="Sell", order_qty=TENTH, ord_type="MarketIfTouched", stop_px="51000")
    submit(make_trader(), side="Buy", order_qty=2 * TENTH, price="60000")
    settle(engine)
    submit(make_trader(), side="Sell", order_qty=TENTH, price="60000")  # trades there: it triggers, then
    settle(engine)  # sells into what is left of the 60,000 bid
    fresh(sell_high)
    assert (sell_high.ord_status, sell_high.cum_qty) == (OrdStatus.FILLED, 85_000)  # 51,000 / 60,000 of it
    assert sell_high.text.startswith("Quantity cut: the price gapped past its trigger")
    assert available_balance(balance(opener)) >= 0


def test_an_inverse_stop_fills_where_a_gap_needs_less_margin(engine, make_trader):
    buyer = make_trader()
    submit(make_trader(), symbol=INV, side="Sell", order_qty=1000, price="50000")
    settle(engine)
    submit(make_trader(), symbol=INV, side="Buy", order_qty=1000, price="50000")
    settle(engine)
    stop = submit(buyer, symbol=INV, side="Buy", order_qty=1000, ord_type="Stop", stop_px="51000")
    submit(make_trader(), symbol=INV, side="Sell", order_qty=2000, price="60000")
    settle(engine)
    submit(make_trader(), symbol=INV, side="Buy", order_qty=1000, price="60000")  # gaps through 51,000
    settle(engine)
    assert (fresh(stop).ord_status, stop.cum_qty, stop.avg_px) == (OrdStatus.FILLED, 1000, D(60000))


def test_a_take_profit_placed_flat_that_now_closes_the_position_is_not_cut_by_a_gap(engine, make_trader):
    trade_at(engine, make_trader, "50000")
    trader = make_trader()
    take_profit = submit(trader, side="Sell", order_qty=TENTH, ord_type="MarketIfTouched", stop_px="51000")
    settle(engine)
    longs(engine, make_trader, (trader, TENTH))  # it now closes the position: it needs no margin
    submit(make_trader(), side="Buy", order_qty=2 * TENTH, price="60000")
    settle(engine)
    submit(make_trader(), side="Sell", order_qty=TENTH, price="60000")  # gaps up through 51,000
    settle(engine)
    assert fresh(take_profit).cum_qty == TENTH and position(trader).current_qty == 0


def test_a_reduce_only_order_left_alone_by_a_fill_is_cut_before_a_trigger_at_that_price(engine, make_trader):
    b, c = make_trader(), make_trader()
    longs(engine, make_trader, (b, TENTH))
    reduce_only = submit(b, side="Sell", order_qty=TENTH, price="50100", exec_inst="ReduceOnly")
    submit(b, side="Sell", order_qty=TENTH, price="49900")
    submit(c, side="Buy", order_qty=TENTH, ord_type="MarketIfTouched", stop_px="49950")
    settle(engine)
    submit(make_trader(), side="Buy", order_qty=TENTH, price="49900")  # b is flat; 49,900 fires c's order
    settle(engine)
    assert position(b).current_qty == 0 and fresh(reduce_only).ord_status == OrdStatus.CANCELED


def test_a_takers_own_orders_beyond_its_limit_do_not_stretch_its_reach(engine, make_trader):
    a, market_maker = make_trader(), make_trader(usdt="10000000")
    longs(engine, make_trader, (a, TENTH))
    reduce_only = submit(a, side="Sell", order_qty=TENTH, price="51500", exec_inst="ReduceOnly")
    submit(a, side="Sell", order_qty=TENTH, price="51000")
    submit(make_trader(), side="Sell", order_qty=10 * TENTH, price="50000")
    submit(market_maker, side="Sell", order_qty=50 * TENTH, price="52000")  # its own, out of its reach
    settle(engine)
    submit(market_maker, side="Buy", order_qty=1000, price="51600")  # one lot, filled at 50,000
    settle(engine)
    assert (fresh(reduce_only).ord_status, reduce_only.leaves_qty) == (OrdStatus.NEW, TENTH)
