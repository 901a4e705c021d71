"""A running, pipelined engine under a random stream: limit, IOC, market, stop, stop-limit and close
orders, reduce-only ones, cancels and amends, some stream entries held back (a command then arrives
before its order, which the engine applies first) and some never sent (the sweep finds the orders).
When it has drained, the open orders are exactly the held ones, none is left pending, no batch
failed, and the books balance (the books_balance fixture runs check_ledger)."""
import logging
import random
import threading
import time
from decimal import Decimal as D

import pytest
from django.db import connections

from matching import services, streams
from matching.engine import Engine
from matching.models import HeldOrder, Instrument, Order, OrderCommand, OrdStatus, PendingOrder
from matching.services import BulkOrder, OrderRejected

SYMBOL = "XBTUSDT"


class Problems(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def random_orders(rng, traders, base: int, prefix: str):
    """(bulk orders, single submissions) of one round."""
    bulk, singles = [], []
    for i in range(rng.randint(5, 30)):
        trader, side, kind = rng.choice(traders), rng.choice(["Buy", "Sell"]), rng.random()
        qty, cl_ord_id = rng.randint(1, 20) * 1000, f"{prefix}-{i}"
        stop_px = D(base + (rng.randint(0, 12) if side == "Buy" else -rng.randint(0, 12)))
        if kind < 0.55:
            bulk.append(BulkOrder(trader.pk, side, qty, "Limit", D(base + rng.randint(-10, 10)),
                                  rng.choice(["GoodTillCancel"] * 4 + ["ImmediateOrCancel"]), cl_ord_id,
                                  exec_inst=rng.choice([""] * 6 + ["ReduceOnly"])))
        elif kind < 0.65:
            bulk.append(BulkOrder(trader.pk, side, qty, "Market", None, "ImmediateOrCancel", cl_ord_id))
        elif kind < 0.8:
            bulk.append(BulkOrder(trader.pk, side, 0, "Stop", None, "ImmediateOrCancel", cl_ord_id,
                                  stop_px=stop_px, exec_inst="Close"))
        else:
            stop_limit = rng.random() < 0.5
            singles.append(dict(account=trader, symbol=SYMBOL, side=side, order_qty=qty, stop_px=str(stop_px),
                                ord_type="StopLimit" if stop_limit else "Stop", cl_ord_id=cl_ord_id,
                                price=str(stop_px + (5 if side == "Buy" else -5)) if stop_limit else None,
                                exec_inst=rng.choice(["", "", "ReduceOnly"])))
    return bulk, singles


def cancel_or_amend(rng, order: Order) -> None:
    if rng.random() < 0.6:
        services.cancel_orders(orders=[order], wait=0)
        return
    try:
        if order.price is not None:
            services.amend_order(account=order.account, order=order,
                                 price=str(order.price + rng.choice([-3, -1, 1, 3])), wait=0)
        elif order.stop_px is not None:
            services.amend_order(account=order.account, order=order, stop_px=str(order.stop_px + rng.choice([-3, 3])),
                                 wait=0)
    except OrderRejected:
        pass  # it ended meanwhile


@pytest.mark.django_db(transaction=True)
def test_a_pipelined_engine_keeps_the_books_and_its_lists_under_a_random_stream(engine_streams, make_trader,
                                                                                  settings, monkeypatch):
    settings.ENGINE_SWEEP_SECONDS = 0.5
    rng = random.Random(7)
    traders = [make_trader(usdt="1000000", xbt="0") for _ in range(6)]
    instrument = Instrument.objects.select_related("settle_asset").get(symbol=SYMBOL)
    problems = Problems()
    logging.getLogger("matching.engine").addHandler(problems)
    engine = Engine(symbols=[SYMBOL], batch_size=12, pipelined=True)  # small batches: many in flight
    stop = threading.Event()

    def run():
        try:
            engine.run(stop=stop.is_set)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    placed, send = [], streams.send_commands
    try:
        for round_ in range(60):
            bulk, singles = random_orders(rng, traders, 50000 + rng.randint(-30, 30), f"r{round_}")
            held_back = []
            hold_back = rng.random() < 0.25
            if hold_back:
                monkeypatch.setattr(streams, "send_commands", lambda *entry, **reply: held_back.append((entry, reply)))
            new = [r.order_pk for r in services.submit_orders_bulk(instrument=instrument, orders=bulk) if r.order_pk]
            for submission in singles:
                try:
                    new.append(services.submit_order(wait=0, **submission).pk)
                except OrderRejected:
                    pass
            monkeypatch.setattr(streams, "send_commands", send)
            placed += new
            for _ in range(rng.randint(0, 6)):  # often of orders whose entries are held back
                pool = new if hold_back and new and rng.random() < 0.7 else placed
                if pool:
                    cancel_or_amend(rng, Order.objects.select_related("instrument").get(pk=rng.choice(pool)))
            if held_back and rng.random() < 0.6:  # late; otherwise never: the sweep finds them
                for entry, reply in held_back:
                    send(*entry, **reply)
            time.sleep(rng.choice([0, 0, 0.01, 0.05]))
        deadline = time.monotonic() + 60
        while (Order.objects.filter(ord_status=OrdStatus.PENDING_NEW).exists()
               or OrderCommand.objects.filter(status=OrderCommand.Status.PENDING).exists()):
            assert time.monotonic() < deadline, "the engine did not apply everything"
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(30)
        logging.getLogger("matching.engine").removeHandler(problems)
    assert len(placed) > 500
    open_orders = set(Order.objects.filter(ord_status__in=["New", "PartiallyFilled", "Untriggered"])
                      .values_list("pk", flat=True))
    assert set(HeldOrder.objects.values_list("order_id", flat=True)) == open_orders
    assert not PendingOrder.objects.exists()
    assert problems.messages == []  # no batch failed


@pytest.mark.django_db
def test_behind_a_backlog_a_batch_commits_while_the_next_is_matched(reference_data, monkeypatch):
    """A large batch, or the rest of a read that took all it asked for, is handed to the writer and
    the engine goes on; a small batch of a short read waits for its commit (latency at a rate the
    engine keeps up with)."""
    from concurrent.futures import ThreadPoolExecutor

    from matching import engine as engine_module
    from matching.engine import BACKLOG_BATCH, Batch

    engine = Engine(symbols=[SYMBOL], batch_size=50, pipelined=True)
    engine.writer = ThreadPoolExecutor(max_workers=1)
    monkeypatch.setattr(engine, "prepare", lambda entries, waiting: Batch())
    monkeypatch.setattr(engine, "write_of", lambda batch: None)
    monkeypatch.setattr(engine, "commit", lambda batch, rows: None)
    monkeypatch.setattr(engine, "after_commit", lambda batch, acks=None: None)
    waited_for = []  # the commits the engine waited for before going on
    real_wait = engine_module.wait
    monkeypatch.setattr(engine_module, "wait", lambda futures: waited_for.append(futures) or real_wait(futures))

    def entries_of(count: int, ids_each: int = 1, stream: str = "s") -> list[tuple]:  # as a read returns them
        return [(stream, f"{n}-0", "order", list(range(n * ids_each, (n + 1) * ids_each)), False) for n in range(count)]

    def serial(read: list[tuple]) -> bool:
        """Whether any batch of the read was committed before the engine went on."""
        waited_for.clear()
        engine.apply_stream_entries(read)
        engine.finish_in_flight()
        return bool(waited_for)

    try:
        assert serial(entries_of(10))  # a short read: its batch commits before the next read
        assert serial(entries_of(16, ids_each=3))  # 48 ids, in a read short of 50 entries
        # a full read of 50 entries of 3 ids: batches of 51 and 51, then the rest, 48, also a backlog
        assert not serial(entries_of(50, ids_each=3))
        # 30 entries of each of two streams: a full batch of 50, then a rest of 10 that waits, as
        # neither stream gave all that was asked of it (50 each)
        assert serial(entries_of(30, stream="a") + entries_of(30, stream="b"))
        engine.batch_size = 10_000
        assert BACKLOG_BATCH < 10_000
        assert serial(entries_of(BACKLOG_BATCH - 1))
        assert not serial(entries_of(BACKLOG_BATCH))  # short of a full read, but a large batch
    finally:
        engine.writer.shutdown(wait=True)
        engine.writer = None


@pytest.mark.django_db(transaction=True)
def test_the_engine_process_prepares_its_statements_on_the_server(reference_data):
    """runengine's connections prepare a statement on its fifth use (Django leaves that off), for the
    engine's own statements: they bind on the server (config.rawsql), where Django's cursors bind in
    the client and are never prepared."""
    from django.db import connection

    from config.rawsql import raw_cursor
    from matching.engine import PREPARE_THRESHOLD, prepare_statements_on_the_server

    options = connection.settings_dict.setdefault("OPTIONS", {})
    saved = dict(options)
    try:
        options.pop("prepare_threshold", None)
        prepare_statements_on_the_server()
        connection.ensure_connection()
        assert connection.connection.prepare_threshold == PREPARE_THRESHOLD
        with raw_cursor() as cursor:
            for _ in range(PREPARE_THRESHOLD + 1):
                cursor.execute("SELECT count(*) FROM matching_instrument WHERE symbol = %s", ["XBTUSDT"])
            cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                           ["%FROM matching_instrument WHERE symbol%"])
            assert cursor.fetchone()[0] == 1
        for _ in range(PREPARE_THRESHOLD + 1):  # Django's own cursors bind in the client: never prepared
            list(Instrument.objects.filter(symbol="XBTUSDT").values_list("pk", flat=True))
        with raw_cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                           ['%FROM "matching_instrument"%'])
            assert cursor.fetchone()[0] == 0

        options["prepare_threshold"] = None  # as DATABASE_PREPARE_THRESHOLD=none sets it: kept
        prepare_statements_on_the_server()
        connection.ensure_connection()
        assert connection.connection.prepare_threshold is None
    finally:
        options.clear()
        options.update(saved)
        connection.close()
