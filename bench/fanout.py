"""One leader fill fanned out to 100, 1,000 and 10,000 followers through the real worker and engine.

    python bench/fanout.py [--followers 100 1000 10000] [--json]

For each size: a leader with that many followers (proportional sizing) sends one market order that
fills at one price; the engine process commits it, the Celery worker (its own process) sizes and
stores every follower's IOC order in one transaction, and the engine matches them against a deep
book. Figures: from the leader's execution (as the engine stamped it) to the last follower order
committed and matched, and p50/p99 of each follower order's latency. Runs in a throw-away database
(test_<name>) with its own stream prefix.
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
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from accounts.models import Account, SystemAccount  # noqa: E402
from accounts.services import deposit, main_account, post_transaction, system_account  # noqa: E402
from bench.engine import database_url, percentile, stop  # noqa: E402
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


def start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.02)


def measure(leader: Leader, count: int) -> dict:
    trading.submit_order(account=leader.account, symbol=SYMBOL, side="Buy", order_qty=100_000_000,
                         ord_type="Market", wait=0)
    wait_for(lambda: Execution.objects.filter(account=leader.account).exists(), 30)
    execution = Execution.objects.filter(account=leader.account).latest("pk")
    follower_orders = Order.objects.filter(account__follow__leader=leader)
    wait_for(lambda: CopiedOrder.objects.filter(leader_execution=execution).count() == count, 300)
    wait_for(lambda: not follower_orders.filter(ord_status=OrdStatus.PENDING_NEW).exists(), 300)
    start = execution.created_at.timestamp()
    done = [at.timestamp() - start for at in follower_orders.values_list("updated_at", flat=True)]
    placed = len(done)
    stored = [at.timestamp() - start for at in follower_orders.values_list("created_at", flat=True)]
    return {"followers": count, "orders": placed,
            "filled": follower_orders.filter(ord_status=OrdStatus.FILLED).count(),
            "last_ms": round(max(done) * 1000, 1), "p50_ms": round(percentile(done, 0.5) * 1000, 1),
            "p99_ms": round(percentile(done, 0.99) * 1000, 1),
            "fan_out_stored_ms": round(max(stored) * 1000, 1),
            "per_follower_us": round(max(done) * 1e6 / count, 1)}


def run(sizes: list[int]) -> dict:
    from django.test.utils import setup_databases, teardown_databases

    old = setup_databases(verbosity=0, interactive=False)
    logs = Path(ROOT / ".data" / "bench")
    logs.mkdir(parents=True, exist_ok=True)
    engine = worker = None
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
        engine = start([sys.executable, "manage.py", "runengine", "--symbols", SYMBOL], logs / "engine.log")
        worker = start([sys.executable, "-m", "celery", "-A", "config", "worker", "--queues", "fanout,celery",
                        "--concurrency", "1", "--loglevel", "WARNING", "--without-mingle", "--without-gossip",
                        "--hostname", f"bench-{os.getpid()}@%h"], logs / "worker.log")
        time.sleep(5)
        # one deep level for the leader, and deep levels for every follower's IOC order to fill against
        for price in ("50000", "50000.5", "50001"):
            trading.submit_order(account=maker, symbol=SYMBOL, side="Sell", order_qty=1_000_000_000, price=price,
                                 wait=0)
        results = []
        for leader, size in zip(leaders, sizes):
            time.sleep(3)  # the leader cache of the engine's hook is fresh
            console.log(f"fan-out to {size:,}")
            results.append(measure(leader, size))
        return {"symbol": SYMBOL, "results": results}
    finally:
        for process in (worker, engine):
            if process is not None:
                stop(process)
        teardown_databases(old, verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--followers", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.followers)
    if args.json:
        print(json.dumps(result))
        return
    table = Table(title="Copy fan-out: one leader fill, through the real engine and worker")
    for column in ("followers", "orders placed", "filled", "stored (ms)", "last matched (ms)", "p50 (ms)", "p99 (ms)",
                   "per follower (µs)"):
        table.add_column(column, justify="right")
    for r in result["results"]:
        table.add_row(f"{r['followers']:,}", f"{r['orders']:,}", f"{r['filled']:,}", str(r["fan_out_stored_ms"]),
                      str(r["last_ms"]), str(r["p50_ms"]), str(r["p99_ms"]), str(r["per_follower_us"]))
    Console().print(table)


if __name__ == "__main__":
    main()
