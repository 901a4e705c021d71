"""Orders per second from the stream to committed in PostgreSQL, and submit-to-commit latency.

    python bench/engine.py [--orders 100000] [--rate N [N ...]] [--symbols XBTUSDT ...] [--json]

Runs in a throw-away database (test_<name of DATABASE_URL's database>) and its own stream prefix:
1. the bare C book applies the command stream in this process (the ceiling);
2. saturation: every order is queued first, then `manage.py runengine` (a real process) drains
   the stream; throughput = orders after the first batch / (last batch's commit - first batch's);
   over the same span, the CPU time of the engine process and of its PostgreSQL backends per
   order: which of the two a change made cheaper;
3. paced: a fresh engine gets the orders at a steady --rate (default: half the saturated rate), each
   stored just before its stream append as submit_order does; latency = commit - append, taken on
   the IOC and market orders (a quarter of the mix), which are written once, when their batch
   commits (resting orders are written again whenever they change later). Several rates make
   several paced runs, one after the other, each with fresh engines and a fresh mix: latency
   against throughput. Each paced run also gives the CPU time per command of the engines, their
   PostgreSQL backends, the sender (this process) and its backend, PostgreSQL's own processes and
   Redis, and how many cores all of it keeps busy at the rate asked: what the machine's two cores
   must hold.
A commit is timed when PostgreSQL delivers the engine's notification of it to this process
(CommitClock), not by the rows' own times, which are taken before the batch is written.
The stream is a realistic mix: limit orders around a moving mid (a fifth of them crossing),
market orders, cancels and amends, from 1,000 traders. With several --symbols, the orders are
shared evenly between them, the traders trade all of them, and each symbol has an engine process
of its own (DESIGN.md: the engine shards by symbol); every figure is over all of them.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from django.contrib.auth.models import User  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Account  # noqa: E402
from accounts.services import deposit  # noqa: E402
from matching import persistence, streams  # noqa: E402
from matching.ids import time_ordered_uuid_text  # noqa: E402
from matching.engine import DEFAULT_BATCH_SIZE, SELF_TRADE_PREVENTION  # noqa: E402
from matching.persistence import COMMIT_CHANNEL  # noqa: E402
from matching.book import BUY, GTC, IOC, SELL, OrderBook  # noqa: E402
from matching.models import Instrument, Order, OrderCommand, OrdStatus, OrdType, PendingOrder, TimeInForce  # noqa: E402

SYMBOL = "XBTUSDT"
TRADERS = 1000
MID_TICKS = {"XBTUSDT": 120_000, "ETHUSDT": 60_000}  # 60,000 and 3,000 USDT
console = Console(stderr=True)


def mix(count: int, seed: int = 3, mid: int = MID_TICKS[SYMBOL]) -> list[tuple]:
    """(kind, trader, side, ticks, lots, tif | target index): 62% limit, 13% IOC, 10% market, 10% cancel, 5% amend."""
    rng = random.Random(seed)
    steps, live = [], []
    for i in range(count):
        mid += rng.choice((-1, 0, 0, 1))
        roll = rng.random()
        if live and roll < 0.10:
            steps.append(("cancel", live.pop(rng.randrange(len(live)))))
        elif live and roll < 0.15:
            steps.append(("amend", live[rng.randrange(len(live))], mid + rng.randint(-30, 30)))
        elif roll < 0.25:
            steps.append(("market", rng.randrange(TRADERS), rng.choice("BS"), rng.randint(1, 5)))
        else:
            side = rng.choice("BS")
            crossing = rng.random() < 0.2
            offset = -rng.randint(0, 3) if crossing else rng.randint(1, 40)
            ticks = mid - offset if side == "B" else mid + offset
            tif = IOC if roll > 0.87 else GTC
            steps.append(("limit", rng.randrange(TRADERS), side, ticks, rng.randint(1, 10), tif))
            if tif == GTC:
                live.append(i)
    return steps


def bare_book(steps) -> float:
    """Seconds the C book alone takes on the same stream (single calls, self-trade prevention as the engine's)."""
    book = OrderBook()
    start = time.perf_counter()
    for i, step in enumerate(steps, 1):
        kind = step[0]
        if kind == "limit":
            book.place(i, step[1], BUY if step[2] == "B" else SELL, step[3], step[4], step[5], False, SELF_TRADE_PREVENTION)
        elif kind == "market":
            book.market(i, step[1], BUY if step[2] == "B" else SELL, step[3], 0, IOC, SELF_TRADE_PREVENTION)
        elif kind == "cancel" and step[1] + 1 in book:
            book.cancel(step[1] + 1)
        elif kind == "amend" and step[1] + 1 in book:
            _, _, qty, _, _ = book.order(step[1] + 1)
            book.amend(step[1] + 1, step[2], qty)
    return time.perf_counter() - start


def prepare(steps, accounts, instrument, pks: list) -> list[tuple[str, int]]:
    """Stores the orders (PendingNew, as submit_order leaves them) and commands of `steps`, which
    continue those already in `pks` (a step names its target by its index in the whole stream);
    returns their stream entries. Orders and commands go in by COPY, as the bulk path and
    cancel_orders store them (persistence.store_new_orders, store_commands): through the ORM this
    load took two thirds of a core from the machine whose engine it measures."""
    tick, lot = instrument.tick_size, instrument.lot_size
    mid = MID_TICKS[instrument.symbol] * tick
    protects = {"Buy": mid * Decimal("1.1"), "Sell": mid * Decimal("0.9")}
    stamp = timezone.now().isoformat()
    rows, kinds = [], []
    for step in steps:
        if step[0] in ("limit", "market"):
            side = "Buy" if step[2] == "B" else "Sell"
            is_limit = step[0] == "limit"
            price = step[3] * tick if is_limit else None
            qty = (step[4] if is_limit else step[3]) * lot
            protect = None if is_limit else protects[side]
            tif = TimeInForce.GOOD_TILL_CANCEL if is_limit and step[5] == GTC else TimeInForce.IMMEDIATE_OR_CANCEL
            rows.append([time_ordered_uuid_text(), accounts[step[1]].pk, instrument.pk, "", side,
                         OrdType.LIMIT if is_limit else OrdType.MARKET, tif, "", price, None, protect, qty, qty,
                         Decimal(0), 0, "", stamp, stamp])
            kinds.append(None)
        else:
            kinds.append(step)
    created = iter(persistence.store_new_orders(rows))
    first = len(pks)
    pks.extend(next(created) if kind is None else None for kind in kinds)
    commands, positions = [], []
    for i, step in enumerate(kinds, first):
        if step is None:
            continue
        if step[0] == "cancel":
            kind, price = OrderCommand.Kind.CANCEL, None
        else:
            kind, price = OrderCommand.Kind.AMEND, step[2] * tick
        commands.append((pks[step[1]], kind, None, None, price, None, "", Decimal(0), None))
        positions.append(i)
    for i, command_pk in zip(positions, persistence.store_commands(commands)):
        pks[i] = command_pk
    return [("order" if kind is None else "command", pk) for kind, pk in zip(kinds, pks[first:])]


def database_url() -> str:
    db = connection.settings_dict
    host = quote(db["HOST"] or "localhost", safe="")
    return f"postgres://{quote(db['USER'] or '')}:{quote(db['PASSWORD'] or '')}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def start_engine(prefix: str, symbol: str, sweep_seconds: float = 2) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url(), "ENGINE_STREAM_PREFIX": prefix, "PYTHONUNBUFFERED": "1",
           "ENGINE_SWEEP_SECONDS": str(sweep_seconds)}
    logs = ROOT / ".data" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "manage.py", "runengine", "--symbols", symbol],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(logs / "engine.log", "ab"))


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def wait_applied(entries, timeout: float) -> None:
    # through the small list of pending orders, by key range: a query naming every order would
    # take half a core from the engine it waits for
    order_pks = [pk for kind, pk in entries if kind == "order"]
    pending = PendingOrder.objects.filter(order_id__gte=min(order_pks), order_id__lte=max(order_pks))
    deadline = time.monotonic() + timeout
    while pending.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the engine did not apply every order in time")
        time.sleep(0.2)


def process_cpu_seconds(pid: int, missing: float | None = 0.0) -> float | None:
    """User and system CPU time a process has used (Linux /proc); `missing` if it has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return missing
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def engine_cpu(engine_pids: list[int], clock: "CommitClock") -> dict:
    """CPU seconds used so far by the engine processes together ("engine") and by each of their
    PostgreSQL backends (pid: every client backend of the benchmark's database but this process's
    and the commit clock's)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND backend_type = 'client backend' AND pid NOT IN (pg_backend_pid(), %s)",
                       [clock.backend_pid])
        backends = [pid for (pid,) in cursor.fetchall()]
    return {"engine": sum(process_cpu_seconds(pid) for pid in engine_pids),
            **{pid: process_cpu_seconds(pid) for pid in backends}}


def machine_cpu(engine_pids: list[int], clock: "CommitClock") -> dict:
    """CPU seconds used so far by everything the path runs on this machine: the engines, their
    PostgreSQL backends, this process (the sender: it stores and appends the orders, as the
    submitting processes do; and the commit clock's thread), its backend, PostgreSQL's own
    processes (WAL writer, checkpointer, autovacuum: those alive at each reading) and Redis."""
    engines = engine_cpu(engine_pids, clock)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (own_backend,) = cursor.fetchone()
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE backend_type <> 'client backend'")
        background = [pid for (pid,) in cursor.fetchall()]
    redis_cpu = streams.client().info("cpu")
    return {"engine": engines.pop("engine"), "engine_postgres": engines,
            "sender": process_cpu_seconds(os.getpid()), "sender_postgres": process_cpu_seconds(own_backend),
            "postgres_background": {pid: seconds for pid in background
                                    if (seconds := process_cpu_seconds(pid, missing=None)) is not None},
            "redis": float(redis_cpu["used_cpu_user"]) + float(redis_cpu["used_cpu_sys"])}


def cpu_per_command(before: dict, after: dict, commands: int) -> dict:
    """µs of CPU per command of each part between two machine_cpu readings, and all of them. A
    process met only at the second reading counts from its start."""
    used = {}
    for part, seconds in after.items():
        if isinstance(seconds, dict):
            used[part] = sum(s - before[part].get(pid, 0) for pid, s in seconds.items())
        else:
            used[part] = seconds - before[part]
    per = {part: round(seconds * 1e6 / commands, 1) for part, seconds in used.items()}
    per["all"] = round(sum(used.values()) * 1e6 / commands, 1)
    return per


class CommitClock:
    """When each engine batch became visible. An order's updated_at is the time its batch was
    written, taken before the write, so it cannot time the commit; PostgreSQL delivers the engine's
    notification at the commit itself, with that same time, and this listener notes its arrival."""

    def __init__(self):
        self.seen: dict = {}  # batch time (the orders' updated_at) -> time.time() the commit was seen
        self._stop = threading.Event()
        self._connection = psycopg.connect(database_url(), autocommit=True)
        self._connection.execute(f"LISTEN {COMMIT_CHANNEL}")
        self.backend_pid = self._connection.info.backend_pid
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            for notify in self._connection.notifies(timeout=0.2):
                self.seen[datetime.fromisoformat(notify.payload)] = time.time()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._connection.close()

    def commit_times(self, orders) -> dict[int, float]:
        """pk -> when the batch that last wrote the order committed, for a queryset of orders."""
        written = dict(orders.values_list("pk", "updated_at"))
        deadline = time.monotonic() + 5  # the rows can be read a moment before the notification is
        while not self.seen.keys() >= set(written.values()):
            if time.monotonic() > deadline:
                missed = sum(1 for at in written.values() if at not in self.seen)
                raise SystemExit(f"no commit was heard for {missed} orders")
            time.sleep(0.01)
        return {pk: self.seen[at] for pk, at in written.items()}


def commit_times(entries, clock: CommitClock, final_in_first_batch: bool = False) -> dict[int, float]:
    """When each order's last write committed. A resting order is written again whenever it is
    amended, filled or canceled; with final_in_first_batch only IOC and market orders count, whose
    one write is the commit of their first batch."""
    pks = [pk for kind, pk in entries if kind == "order"]
    orders = Order.objects.filter(pk__in=pks)
    if final_in_first_batch:
        orders = orders.filter(time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL)
    return clock.commit_times(orders)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def send(prefix: str, parts: list[tuple[str, list]]) -> dict[int, float]:
    """Appends each symbol's entries to its stream; returns the append time of each order."""
    return send_paced(prefix, [(symbol, entries[i:i + 100]) for symbol, entries in parts
                               for i in range(0, len(entries), 100)], rate=None)


def send_paced(prefix: str, chunks: list[tuple[str, list]], rate: float | None, store=None) -> dict[int, float]:
    """Appends (symbol, chunk) to the symbol's stream, at `rate` commands per second if given. With
    `store`, each chunk is a list of steps that store(symbol, chunk) turns into entries just before
    they are sent, as submit_order stores an order just before its stream append."""
    settings.ENGINE_STREAM_PREFIX = prefix
    sent = {}
    done = 0
    start = time.monotonic()
    for symbol, chunk in chunks:
        if rate:
            due = start + done / rate
            while (now := time.monotonic()) < due:
                time.sleep(min(due - now, 0.002))
        part = store(symbol, chunk) if store else chunk
        stamp = time.time()
        streams.send_commands(symbol, part)
        sent.update((pk, stamp) for kind, pk in part if kind == "order")
        done += len(part)
    return sent


def interleaved(symbols: list[str], per_symbol: dict[str, list], size: int) -> list[tuple[str, list]]:
    """(symbol, chunk of `size`) taking each symbol in turn, as orders of several markets arrive."""
    chunks = {symbol: [per_symbol[symbol][i:i + size] for i in range(0, len(per_symbol[symbol]), size)]
              for symbol in symbols}
    longest = max(len(c) for c in chunks.values())
    return [(symbol, chunks[symbol][i]) for i in range(longest) for symbol in symbols if i < len(chunks[symbol])]


def paced_run(rate: float, share: int, symbols: list[str], instruments: dict, accounts: list, clock: "CommitClock",
              seed: int) -> dict:
    """Fresh engines get a fresh mix of `share` commands a symbol at `rate` commands a second, each
    order stored just before its stream append; latency of each IOC and market order, append to commit."""
    console.log(f"paced at {rate:,.0f} commands/s")
    Order.objects.filter(ord_status__in=[OrdStatus.NEW, OrdStatus.PARTIALLY_FILLED]).update(
        ord_status=OrdStatus.CANCELED, leaves_qty=0)  # fresh books for the fresh engines
    paced_steps = {symbol: mix(share, seed=4 + 10 * n + 100 * seed, mid=MID_TICKS[symbol])
                   for n, symbol in enumerate(symbols)}
    pks: dict[str, list] = {symbol: [] for symbol in symbols}
    paced_entries = []
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings.ENGINE_STREAM_PREFIX = prefix
    log = ROOT / ".data" / "bench" / "engine.log"
    seen = log.read_bytes().count(b"engine ready") if log.exists() else 0
    engines = [start_engine(prefix, symbol) for symbol in symbols]
    try:
        deadline = time.monotonic() + 60  # the engines rebuild their books and join the streams
        while log.read_bytes().count(b"engine ready") < seen + len(engines) and time.monotonic() < deadline:
            time.sleep(0.1)

        def store(symbol, chunk):
            part = prepare(chunk, accounts, instruments[symbol], pks[symbol])
            paced_entries.extend(part)
            return part

        cpu_before = machine_cpu([e.pid for e in engines], clock)
        started = time.monotonic()
        sent = send_paced(prefix, interleaved(symbols, paced_steps, 50), rate, store)
        offered = len(paced_entries) / (time.monotonic() - started)
        wait_applied(paced_entries, timeout=max(120, share * len(symbols) / 500))
        cpu = cpu_per_command(cpu_before, machine_cpu([e.pid for e in engines], clock), len(paced_entries))
    finally:
        for engine in engines:
            stop(engine)
    commits = commit_times(paced_entries, clock, final_in_first_batch=True)
    latencies = [(commits[pk] - at) * 1000 for pk, at in sent.items() if pk in commits]
    by_time = [lat for _, lat in sorted(zip(sent.values(), latencies))]
    tenth = max(len(by_time) // 10, 1)
    slices = [round(max(by_time[i:i + tenth]), 1) for i in range(0, len(by_time), tenth)][:10]
    return {"rate_asked": round(rate), "offered_per_s": round(offered), "p50_ms": round(percentile(latencies, 0.5), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2), "max_ms": round(max(latencies), 2),
            "max_ms_per_tenth_of_the_run": slices, "cpu_us_per_command": cpu,
            # cores the whole path would keep busy at the rate asked: this machine has two, shared
            # by the sender, the engines and PostgreSQL
            "cores_at_rate_asked": round(cpu["all"] * rate / 1e6, 2)}


def make_traders() -> list[Account]:
    """The mix's TRADERS accounts, each with 10^9 USDT."""
    users = User.objects.bulk_create([User(username=f"bench-{i}") for i in range(TRADERS)])
    accounts = Account.objects.bulk_create([Account(user=user) for user in users])
    for account in accounts:
        deposit(account=account, asset="USDT", amount=Decimal(10**9))
    return accounts


def run(count: int, rates: list[float] | None, symbols: list[str]) -> dict:
    from django.test.utils import setup_databases, teardown_databases

    old = setup_databases(verbosity=0, interactive=False)
    try:
        instruments = {symbol: Instrument.objects.get(symbol=symbol) for symbol in symbols}
        accounts = make_traders()
        share = count // len(symbols)
        steps = {symbol: mix(share, seed=3 + n, mid=MID_TICKS[symbol]) for n, symbol in enumerate(symbols)}
        console.log(f"bare book on {share * len(symbols):,} commands")
        book_ops = share * len(symbols) / sum(bare_book(s) for s in steps.values())

        console.log(f"saturation: queue everything, then drain ({len(symbols)} engine(s))")
        entries = {symbol: prepare(steps[symbol], accounts, instruments[symbol], []) for symbol in symbols}
        everything = [entry for symbol in symbols for entry in entries[symbol]]
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        send(prefix, [(symbol, entries[symbol]) for symbol in symbols])
        clock = CommitClock()
        engines = [start_engine(prefix, symbol, sweep_seconds=3600) for symbol in symbols]  # nothing to sweep
        try:
            deadline = time.monotonic() + 120
            while not clock.seen and time.monotonic() < deadline:
                time.sleep(0.002)
            cpu_at_first_commit = engine_cpu([e.pid for e in engines], clock)
            wait_applied(everything, timeout=max(120, count / 500))
            cpu_at_end = engine_cpu([e.pid for e in engines], clock)
        finally:
            for engine in engines:
                stop(engine)
        batches = sorted(set(commit_times(everything, clock).values()))
        # Every batch but an engine's last is full (all is queued). The clock starts when the first
        # batch commits, so the orders of each engine's first batch are not counted.
        timed = sum(1 for symbol in symbols for kind, _ in entries[symbol][DEFAULT_BATCH_SIZE:] if kind == "order")
        if len(batches) < 2 or not timed:
            raise SystemExit(f"--orders must be more than one batch ({DEFAULT_BATCH_SIZE:,}) a symbol")
        saturated = timed / (batches[-1] - batches[0])
        used = {part: seconds - cpu_at_first_commit.get(part, 0) for part, seconds in cpu_at_end.items()}
        cpu_per_order = {"engine": round(used.pop("engine") * 1e6 / timed, 1),
                         "postgres": round(sum(used.values()) * 1e6 / timed, 1)}

        rates = rates or [saturated / 2]  # a rate the engines sustain: latency without a growing queue
        paced = [paced_run(rate, share, symbols, instruments, accounts, clock, seed=n)
                 for n, rate in enumerate(rates)]
        clock.close()
        from matching.selectors import book_problems

        problems = book_problems()
        return {
            "orders": share * len(symbols), "symbols": symbols, "bare_book_ops_per_s": round(book_ops),
            "saturated_orders_per_s": round(saturated),
            "paced": paced,
            "book_to_engine_ratio": round(book_ops / saturated, 1),
            "saturated_cpu_us_per_order": cpu_per_order,
            "books_balance": not problems,
        }
    finally:
        teardown_databases(old, verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--rate", type=float, nargs="+", default=None,
                        help="commands per second of the paced run, or of each of several paced runs "
                             "(default: half the saturated rate)")
    parser.add_argument("--symbols", nargs="+", default=[SYMBOL], choices=sorted(MID_TICKS),
                        help="the orders are shared between these symbols, an engine process each")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.rate and min(args.rate) <= 0:
        parser.error("--rate: commands per second, each above 0")
    if len(set(args.symbols)) < len(args.symbols):
        parser.error("--symbols: each symbol once (each has one engine)")
    result = run(args.orders, args.rate, args.symbols)
    if args.json:
        print(json.dumps(result))
        return
    table = Table(title=f"Engine: {result['orders']:,} commands of {', '.join(args.symbols)}, "
                        f"stream to committed in PostgreSQL")
    for column in ("measure", "value"):
        table.add_column(column)
    table.add_row("bare C book (single calls)", f"{result['bare_book_ops_per_s']:,} ops/s")
    table.add_row("engine, saturated", f"{result['saturated_orders_per_s']:,} orders/s")
    table.add_row("book / engine", f"{result['book_to_engine_ratio']}x")
    cpu = result["saturated_cpu_us_per_order"]
    table.add_row("saturated: CPU per order", f"engine {cpu['engine']} µs, PostgreSQL {cpu['postgres']} µs")
    for paced in result["paced"]:
        table.add_row(f"paced at {paced['offered_per_s']:,}/s: p50 / p99 / max",
                      f"{paced['p50_ms']} / {paced['p99_ms']} / {paced['max_ms']} ms")
        cpu = paced["cpu_us_per_command"]
        table.add_row("  CPU per command: engine, its PostgreSQL, sender, its PostgreSQL, PostgreSQL's own, Redis",
                      f"{cpu['engine']}, {cpu['engine_postgres']}, {cpu['sender']}, {cpu['sender_postgres']}, "
                      f"{cpu['postgres_background']}, {cpu['redis']} µs (all: {cpu['all']} µs, "
                      f"{paced['cores_at_rate_asked']} cores at {paced['rate_asked']:,}/s)")
    table.add_row("check_ledger", "clean" if result["books_balance"] else "PROBLEMS")
    Console().print(table)


if __name__ == "__main__":
    main()
