"""Leader fills fanned out to 100, 1,000 and 10,000 followers through the real worker and engine.

    python bench/fanout.py [--followers 100 1000 10000] [--fills 3] [--json]

For each size: a leader with that many followers (proportional sizing) sends --fills market orders,
one after the other, each filling at one price. The engine process commits each; the Celery worker
(its own process) sizes the followers' IOC orders and stores them a chunk of 1,000 at a time (one
transaction each), and the engine matches each chunk against a deep book as it arrives. Figures:
from the leader's execution (as the engine stamped it, before committing it) to the commit of the
last follower order's match, as PostgreSQL delivers the engine's notification of it (the median
fill, and the slowest), and p50/p99 of each follower order's latency over all fills. Runs in a
throw-away database (test_<name>) with its own stream prefix.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["ENGINE_STREAM_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}"

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.db import connection  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from accounts.models import Account, SystemAccount  # noqa: E402
from accounts.services import deposit, main_account, post_transaction, system_account  # noqa: E402
from bench.engine import CommitClock, database_url, percentile, stop  # noqa: E402
from copytrade.models import CopiedOrder, Follow, Leader  # noqa: E402
from copytrade.services import apply_to_lead  # noqa: E402
from matching import services as trading  # noqa: E402
from matching.models import Execution, Order, OrdStatus  # noqa: E402

SYMBOL = "XBTUSDT"
console = Console(stderr=True)


def followers_of(leader: Leader, count: int) -> None:
    """count followers with 10,000 USDT each in their copy accounts, created in bulk."""
    users = User.objects.bulk_create([User(username=f"f{leader.pk}-{i}") for i in range(count)])
    accounts = Account.objects.bulk_create([Account(user=u, kind=Account.Kind.COPY, name=f"leader:{leader.pk}")
                                            for u in users])
    external = system_account(SystemAccount.EXTERNAL)
    amount = Decimal(10_000)
    post_transaction(kind="deposit", reference="bench", legs=[(external.pk, "USDT", -amount * count)] +
                     [(a.pk, "USDT", amount) for a in accounts])
    Follow.objects.bulk_create([Follow(follower=u, leader=leader, account=a, asset_id="USDT", allocated=amount,
                                       profit_share_rate=leader.profit_share_rate, slippage=Decimal("0.01"))
                                for u, a in zip(users, accounts)])


def start(args: list[str], log: Path, **extra_env: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1", **extra_env}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def wait_for(condition, timeout: float, what, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(every)


# The figures come from the commit times, not from when this process notices the end: it looks
# seldom, as its queries over ten thousand orders would take a core from the worker and engine.
FAN_OUT_POLL = 0.25


LEADER_QTY = 100_000_000


def copy_one_fill(leader: Leader, maker: Account, count: int, last_pk: int, clock: CommitClock) -> tuple[int, dict]:
    """The leader buys at market against one order of exactly its size, just below the book, so that
    it is one execution (an order filling against two would be two, each fanned out on its own); the
    figures of that fill's fan-out, in seconds from its execution. The copies fill in the book."""
    ask = trading.submit_order(account=maker, symbol=SYMBOL, side="Sell", order_qty=LEADER_QTY, price="49999.5",
                               wait=0)
    wait_for(lambda: Order.objects.filter(pk=ask.pk, ord_status=OrdStatus.NEW).exists(), 30, "the leader's ask")
    order = trading.submit_order(account=leader.account, symbol=SYMBOL, side="Buy", order_qty=LEADER_QTY,
                                 ord_type="Market", wait=0)
    executions = Execution.objects.filter(account=leader.account, pk__gt=last_pk)
    wait_for(executions.exists, 30, lambda: "the leader's execution; its order is {0.ord_status} {0.text!r}".format(
        Order.objects.get(pk=order.pk)))
    execution = executions.get()
    copied = CopiedOrder.objects.filter(leader_execution=execution)
    wait_for(lambda: copied.count() == count, 300, "the fan-out", every=FAN_OUT_POLL)
    follower_orders = Order.objects.filter(pk__in=copied.exclude(order=None).values("order_id"))
    wait_for(lambda: not follower_orders.filter(ord_status=OrdStatus.PENDING_NEW).exists(), 300,
             "the engine to apply the copies", every=FAN_OUT_POLL)
    start = execution.created_at.timestamp()  # when the leader's batch was matched, before its commit
    return execution.pk, {
        "done": [at - start for at in clock.commit_times(follower_orders).values()],
        # a chunk's orders are stamped as it starts to be stored: the first chunk's time is when all were sized
        "sized": min(at.timestamp() - start for at in follower_orders.values_list("created_at", flat=True)),
        "filled": follower_orders.filter(ord_status=OrdStatus.FILLED).count()}


def measure(leader: Leader, maker: Account, count: int, fills: int, clock: CommitClock) -> dict:
    """`fills` leader fills one after the other, each fanned out on its own: the median fill's figures
    (a single fill on a shared machine varies by a third), the slowest fill, and the followers' p50/p99
    over all fills."""
    last_pk, runs = 0, []
    for _ in range(fills):
        time.sleep(1)  # the previous fill's fan-out is over: fills are measured one at a time
        last_pk, figures = copy_one_fill(leader, maker, count, last_pk, clock)
        runs.append(figures)
    lasts = sorted(max(r["done"]) for r in runs)
    median = lasts[len(lasts) // 2]
    every = [d for r in runs for d in r["done"]]
    return {"followers": count, "fills": fills, "orders": sum(len(r["done"]) for r in runs),
            "filled": sum(r["filled"] for r in runs),
            "last_ms": round(median * 1000, 1), "slowest_fill_last_ms": round(lasts[-1] * 1000, 1),
            "each_fill_last_ms": [round(max(r["done"]) * 1000, 1) for r in runs],
            "each_fill_sized_ms": [round(r["sized"] * 1000, 1) for r in runs],
            "p50_ms": round(percentile(every, 0.5) * 1000, 1), "p99_ms": round(percentile(every, 0.99) * 1000, 1),
            "fan_out_sized_ms": round(sorted(r["sized"] for r in runs)[len(runs) // 2] * 1000, 1),
            "per_follower_us": round(median * 1e6 / count, 1)}


def run(sizes: list[int], fills: int) -> dict:
    from django.test.utils import setup_databases, teardown_databases

    old = setup_databases(verbosity=0, interactive=False)
    logs = Path(ROOT / ".data" / "bench")
    logs.mkdir(parents=True, exist_ok=True)
    engine, workers, clock = None, [], None
    try:
        maker = main_account(User.objects.create(username="bench-maker"))
        deposit(account=maker, asset="USDT", amount=Decimal(10**10))
        leaders = []
        for size in sizes:
            user = User.objects.create(username=f"bench-leader-{size}")
            deposit(account=main_account(user), asset="USDT", amount=Decimal(10_000_000))
            leader = apply_to_lead(user=user, display_name=f"bench leader {size}")
            console.log(f"{size:,} followers")
            followers_of(leader, size)
            leaders.append(leader)
        clock = CommitClock()
        engine = start([sys.executable, "manage.py", "runengine", "--symbols", SYMBOL], logs / "engine.log")
        # as in the Procfile: the fan-out has a worker of its own, so a leader's statistics never delay a copy
        workers = [start([sys.executable, "-m", "celery", "-A", "config", "worker", "--queues", queue,
                          "--concurrency", "1", "--loglevel", "WARNING", "--without-mingle", "--without-gossip",
                          "--hostname", f"bench-{queue}-{os.getpid()}@%h"], logs / f"worker-{queue}.log",
                         DATABASE_CONN_MAX_AGE="600")  # as the Procfile runs them
                   for queue in ("fanout", "celery")]
        with connection.cursor() as cursor:  # as autovacuum would long have done on a running exchange
            cursor.execute("VACUUM ANALYZE")
        time.sleep(5)
        # a deep level at 50,000 (ten orders) for the followers' copies to fill against
        levels = [trading.submit_order(account=maker, symbol=SYMBOL, side="Sell", order_qty=1_000_000_000,
                                       price="50000", wait=0).pk for _ in range(10)]
        resting = Order.objects.filter(pk__in=levels, ord_status=OrdStatus.NEW)
        wait_for(lambda: resting.count() == len(levels), 30, lambda: "the book: {}".format(
            list(Order.objects.filter(pk__in=levels).values_list("price", "ord_status", "text"))))
        results = []
        for leader, size in zip(leaders, sizes):
            time.sleep(3)  # the leader cache of the engine's hook is fresh
            console.log(f"fan-out to {size:,}")
            results.append(measure(leader, maker, size, fills, clock))
        return {"symbol": SYMBOL, "results": results}
    finally:
        for process in (*workers, engine):
            if process is not None:
                stop(process)
        if clock is not None:
            clock.close()
        teardown_databases(old, verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--followers", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--fills", type=int, default=3, help="leader fills per size; the median is reported")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.followers, args.fills)
    if args.json:
        print(json.dumps(result))
        return
    table = Table(title="Copy fan-out: one leader fill, through the real engine and worker")
    for column in ("followers", "fills", "orders placed", "filled", "sized (ms)", "last matched (ms)",
                   "slowest fill (ms)", "p50 (ms)", "p99 (ms)", "per follower (µs)"):
        table.add_column(column, justify="right")
    for r in result["results"]:
        table.add_row(f"{r['followers']:,}", str(r["fills"]), f"{r['orders']:,}", f"{r['filled']:,}",
                      str(r["fan_out_sized_ms"]), str(r["last_ms"]), str(r["slowest_fill_last_ms"]), str(r["p50_ms"]),
                      str(r["p99_ms"]), str(r["per_follower_us"]))
    Console().print(table)


if __name__ == "__main__":
    main()
