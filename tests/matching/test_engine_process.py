"""The engine as a real process: orders travel through Redis Streams, the process is killed with
SIGKILL in the middle of a stream of orders and restarted, and nothing is lost or repeated."""
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from matching import services
from matching.book import BUY, EV_FILL, SELL, OrderBook
from matching.engine import ENGINE_LOCK_SPACE, SELF_TRADE_PREVENTION
from matching.models import Execution, Order, OrderCommand, OrdStatus
from matching.selectors import book_problems

ROOT = Path(__file__).resolve().parents[2]
SYMBOL = "XBTUSDT"
TICK, LOT = 2, 1000  # 0.5 USDT ticks, 1000-contract lots


def database_url() -> str:
    db = connection.settings_dict
    host = quote(db["HOST"] or "localhost", safe="")
    return f"postgres://{quote(db['USER'] or '')}:{quote(db['PASSWORD'] or '')}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def start_engine(log_path: Path, symbol: str = SYMBOL, batch_size: int = 50) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL,
           "ENGINE_STREAM_PREFIX": settings.ENGINE_STREAM_PREFIX, "PYTHONUNBUFFERED": "1"}
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "manage.py", "runengine", "--symbols", symbol,
                             "--batch-size", str(batch_size)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pending() -> int:
    return (Order.objects.filter(ord_status=OrdStatus.PENDING_NEW).count()
            + OrderCommand.objects.filter(status=OrderCommand.Status.PENDING).count())


def settled_pending() -> int:
    """The backlog of a frozen engine, once a statement or commit it had already sent has completed."""
    time.sleep(0.2)
    return pending()


def script(seed: int, count: int, mid: int = 100_000) -> list[tuple]:
    """A stream of crossing limit orders from a few traders, with cancels of earlier ones. Traders
    0 and 1 only buy, 2 and 3 only sell: no order reduces its own trader's position, so none has a
    part without margin that the engine would cut, depending on how far it had got when the order
    was stored; the book that never crashed then follows from the orders alone."""
    rng = random.Random(seed)
    steps = []
    for i in range(count):
        if i > 10 and rng.random() < 0.15:
            steps.append(("cancel", rng.randrange(i)))
        else:
            side = rng.choice(["Buy", "Sell"])
            ticks = mid + rng.randint(-20, 20)
            trader = rng.randrange(2) + (0 if side == "Buy" else 2)
            steps.append(("order", trader, side, ticks, rng.randint(1, 5)))
    return steps


def taker_maker_fills(executions) -> list[tuple[int, int, int]]:
    """(taker order, maker order, quantity) of each trade among the executions, in order."""
    takers = executions.filter(last_liquidity_ind="RemovedLiquidity").order_by("pk")
    return [(e.order_id, maker.order_id, e.last_qty) for e in takers
            for maker in [Execution.objects.get(trd_match_id=e.trd_match_id, last_liquidity_ind="AddedLiquidity")]]


def replay_without_crash(steps, order_pks) -> tuple[list, list]:
    """The same commands on a book that never crashed: its fills and its resting orders."""
    book = OrderBook()
    fills = []
    for step, pk in zip(steps, order_pks):
        if step[0] == "order":
            _, trader, side, ticks, lots = step
            events = book.place(pk, trader, BUY if side == "Buy" else SELL, ticks, lots, stp=SELF_TRADE_PREVENTION)
        elif pk in book:
            events = book.cancel(pk)
        else:
            events = []
        fills += [(taker, maker, qty * LOT) for kind, taker, maker, _, qty, _ in events if kind == EV_FILL]
    resting = [(order_id, price, qty * LOT) for order_id, _, _, price, qty, _ in
               (memoryview(book.snapshot()).cast("q").tolist()[i:i + 6] for i in range(0, len(book) * 6, 6))]
    return fills, resting


@pytest.mark.django_db(transaction=True)
def test_killed_engine_loses_and_repeats_nothing(engine_streams, make_trader, tmp_path):
    traders = [make_trader(usdt="100000", xbt="0") for _ in range(4)]
    steps = script(seed=11, count=400)
    log_path = tmp_path / "engine.log"
    process = start_engine(log_path)
    order_pks, placed = [], []
    backlog_at_kill = None
    try:
        for i, step in enumerate(steps):
            if step[0] == "order":
                _, trader, side, ticks, lots = step
                order = services.submit_order(account=traders[trader], symbol=SYMBOL, side=side,
                                              order_qty=lots * LOT, price=str(ticks / TICK), wait=0)
                placed.append(order)
                order_pks.append(order.pk)
            else:
                target = placed[min(step[1], len(placed) - 1)]
                services.cancel_orders(orders=[target], wait=0)
                order_pks.append(target.pk)
            if i == 150:
                wait_until(lambda: Order.objects.exclude(ord_status=OrdStatus.PENDING_NEW).count() > 20, 30,
                           "the engine to apply some orders")
            if 150 <= i < 300 and backlog_at_kill is None:
                # freeze it wherever it is; kill it there if it has a backlog, else let it go on (it
                # may hold row locks that the next order needs)
                process.send_signal(signal.SIGSTOP)
                if pending() and settled_pending():
                    process.send_signal(signal.SIGKILL)
                    process.wait()
                    backlog_at_kill = pending()
                else:
                    process.send_signal(signal.SIGCONT)
            if i == 300:
                process = start_engine(log_path)
        wait_until(lambda: pending() == 0, 60, "the engine to apply every order")
    finally:
        process.terminate()
        process.wait(timeout=10)
    trades = Counter(Execution.objects.values_list("trd_match_id", flat=True))
    assert trades and set(trades.values()) == {2}, "every trade has exactly its two executions"
    for order in Order.objects.all():
        assert order.cum_qty == sum(Execution.objects.filter(order=order).values_list("last_qty", flat=True))
    expected_fills, expected_resting = replay_without_crash(steps, order_pks)
    assert taker_maker_fills(Execution.objects.all()) == expected_fills
    open_orders = Order.objects.filter(ord_status__in=[OrdStatus.NEW, OrdStatus.PARTIALLY_FILLED])
    in_priority = [*open_orders.filter(side="Buy").order_by("-price", "priority"),
                   *open_orders.filter(side="Sell").order_by("price", "priority")]
    assert [(o.pk, int(o.price * TICK), o.leaves_qty) for o in in_priority] == expected_resting
    assert book_problems() == []
    assert log_path.read_bytes().count(b"engine ready") == 2
    assert backlog_at_kill, "the kill interrupted a stream of orders"


@pytest.mark.django_db(transaction=True)
def test_two_engines_one_a_symbol_commit_side_by_side_for_the_same_traders(engine_streams, make_trader, tmp_path):
    """The engine shards by symbol (DESIGN.md). Two engine processes commit batches of the same
    traders at once, both writing their balances and the exchange's fee accounts: no batch fails,
    each symbol trades as its book alone would, and the books balance."""
    traders = [make_trader(usdt="1000000", xbt="0") for _ in range(4)]
    markets = {"XBTUSDT": (2, 100_000), "ETHUSDT": (20, 60_000)}  # ticks a USDT; mid, in ticks
    scripts = {symbol: script(seed=21 + n, count=300, mid=mid) for n, (symbol, (_, mid)) in enumerate(markets.items())}
    log_path = tmp_path / "engines.log"
    processes = [start_engine(log_path, symbol, batch_size=10) for symbol in markets]
    order_pks = {symbol: [] for symbol in markets}
    placed = {symbol: [] for symbol in markets}
    try:
        wait_until(lambda: log_path.read_bytes().count(b"engine ready") == 2, 60, "the engines to start")
        for i in range(300):
            for symbol, (ticks_a_usdt, _) in markets.items():
                step = scripts[symbol][i]
                if step[0] == "order":
                    _, trader, side, ticks, lots = step
                    order = services.submit_order(account=traders[trader], symbol=symbol, side=side,
                                                  order_qty=lots * LOT, price=str(Decimal(ticks) / ticks_a_usdt),
                                                  wait=0)
                    placed[symbol].append(order)
                    order_pks[symbol].append(order.pk)
                else:
                    target = placed[symbol][min(step[1], len(placed[symbol]) - 1)]
                    services.cancel_orders(orders=[target], wait=0)
                    order_pks[symbol].append(target.pk)
        wait_until(lambda: pending() == 0, 60, "the engines to apply every order")
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
    log = log_path.read_text()
    assert "Traceback" not in log and "failed" not in log, log
    for symbol in markets:
        expected_fills, _ = replay_without_crash(scripts[symbol], order_pks[symbol])
        fills = taker_maker_fills(Execution.objects.filter(instrument__symbol=symbol))
        assert fills and fills == expected_fills
    assert book_problems() == []


@pytest.mark.django_db(transaction=True)
def test_a_second_engine_for_a_symbol_refuses_to_start_until_the_first_is_gone(engine_streams, reference_data,
                                                                                 tmp_path):
    """Two engines on one book would each match it and write it: fills twice, positions overwritten."""
    first_log, second_log, third_log = tmp_path / "first.log", tmp_path / "second.log", tmp_path / "third.log"
    first = start_engine(first_log)
    third = None
    try:
        wait_until(lambda: b"engine ready" in first_log.read_bytes(), 60, "the first engine to start")
        second = start_engine(second_log)
        assert second.wait(timeout=60) != 0
        assert b"another engine is running XBTUSDT" in second_log.read_bytes()
        first.send_signal(signal.SIGKILL)  # its connection closes with it, and the lock with the connection
        first.wait(timeout=10)
        third = start_engine(third_log)
        wait_until(lambda: b"engine ready" in third_log.read_bytes(), 60, "a new engine to start")
        assert third.poll() is None
    finally:
        for process in (first, third):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_an_engine_that_loses_its_symbol_lock_stops(engine_streams, reference_data, tmp_path):
    log_path = tmp_path / "engine.log"
    process = start_engine(log_path)
    try:
        wait_until(lambda: b"engine ready" in log_path.read_bytes(), 60, "the engine to start")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                           "AND classid = %s AND granted", [ENGINE_LOCK_SPACE])
            assert cursor.fetchall() == [(True,)]
        assert process.wait(timeout=30) != 0
        assert b"the connection holding the symbol locks was lost" in log_path.read_bytes()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
