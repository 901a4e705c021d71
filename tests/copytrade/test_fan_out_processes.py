"""The fan-out across real processes: the engine and a Celery worker run as their own processes,
on the test database, Redis and the same streams. A task delivered twice, and a worker killed with
SIGKILL in the middle of a fan-out, still give every follower each copied order exactly once."""
import os
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal as D
from pathlib import Path

import pytest
from django.conf import settings

from copytrade import services
from copytrade.models import CopiedOrder
from copytrade.tasks import fan_out
from matching import services as trading
from matching.models import Execution, Instrument, Order, OrdStatus
from tests.matching.test_engine_process import database_url, start_engine, wait_until

ROOT = Path(__file__).resolve().parents[2]
FOLLOWERS = 150


def start_worker(log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL,
           "ENGINE_STREAM_PREFIX": settings.ENGINE_STREAM_PREFIX, "CELERY_VISIBILITY_TIMEOUT": "4",
           "CELERY_RESTORE_INTERVAL": "1", "CELERY_RESTORE_THROTTLE": "1",
           "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", "worker", "--queues", "fanout,celery",
                             "--concurrency", "1", "--loglevel", "INFO", "--without-mingle", "--without-gossip",
                             "--hostname", f"test-{os.getpid()}@%h"],
                            cwd=ROOT, env=env, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def setup(engine_streams, make_trader, redis_client):
    """A market maker, a leader and many followers; the engine process running."""
    from config.celery import app

    app.control.purge()
    maker = make_trader(usdt="100000000", xbt="0")
    for i in range(6):
        trading.submit_order(account=maker, symbol="XBTUSDT", side="Sell", order_qty=100_000_000, price=str(50000 + i),
                             wait=0)
    leader = services.apply_to_lead(user=make_trader(usdt="10000000", xbt="0").user, display_name="process whale")
    follows = [services.follow(user=make_trader(usdt="20000", xbt="0").user, leader=leader, amount=D(10000))
               for _ in range(FOLLOWERS)]
    return leader, follows


def copied_once(follows) -> None:
    per_follow = Counter(Order.objects.filter(account__follow__in=follows).values_list("account__follow", flat=True))
    executions = Execution.objects.filter(account__leader__isnull=False).count()
    assert executions > 1
    assert set(per_follow.values()) == {executions}, "one order per follower and leader execution"
    keys = CopiedOrder.objects.values_list("follow", "leader_execution", "reduce_only")
    assert len(keys) == len(set(keys)) == FOLLOWERS * executions


@pytest.fixture
def running(setup, tmp_path):
    """The engine and a worker running, the maker's asks in the book; the leader's market order is
    sent by the test. Yields (leader, processes); stops whatever is in processes afterwards."""
    leader, _ = setup
    processes = {"engine": start_engine(tmp_path / "engine.log"), "worker": start_worker(tmp_path / "worker.log")}
    try:
        wait_until(lambda: b"ready" in (tmp_path / "worker.log").read_bytes(), 60, "the worker")
        wait_until(lambda: Instrument.objects.get(symbol="XBTUSDT").ask_price is not None, 60, "the maker's asks")
        yield leader, processes
    finally:
        for process in processes.values():
            stop(process)


def sweep_six_levels(leader) -> None:
    """One market order that sweeps six price levels: six leader executions."""
    trading.submit_order(account=leader.account, symbol="XBTUSDT", side="Buy", order_qty=550_000_000,
                         ord_type="Market", wait=0)


def all_applied() -> None:
    wait_until(lambda: CopiedOrder.objects.count() == FOLLOWERS * 6, 120, "the fan-out")
    wait_until(lambda: not Order.objects.filter(ord_status=OrdStatus.PENDING_NEW).exists(), 120, "the engine")


@pytest.mark.django_db(transaction=True)
def test_a_task_delivered_twice_copies_once(setup, running):
    leader, _ = running
    sweep_six_levels(leader)
    wait_until(lambda: Execution.objects.filter(account=leader.account).count() == 6, 60, "the leader's fills")
    fan_out.delay(list(Execution.objects.filter(account=leader.account).values_list("pk", flat=True)))  # again
    all_applied()
    time.sleep(2)  # the duplicate delivery has run too
    copied_once(setup[1])


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_fan_out_leaves_nothing_lost_or_doubled(setup, running, tmp_path):
    leader, processes = running
    sweep_six_levels(leader)
    wait_until(lambda: CopiedOrder.objects.exists(), 120, "the fan-out to start")
    subprocess.run(["pkill", "-9", "-f", f"test-{os.getpid()}@"], check=False)  # the worker and its pool process
    processes["worker"].wait()
    done_at_kill = CopiedOrder.objects.count()
    assert 0 < done_at_kill < FOLLOWERS * 6, "the kill came in the middle of the fan-out"
    processes["worker"] = start_worker(tmp_path / "worker.log")
    all_applied()
    copied_once(setup[1])
