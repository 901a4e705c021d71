"""The engine's own Python per order, by phase, against the bare C book on the same stream.

    python bench/engine_cpu.py [--orders 100000] [--batch 150 10000] [--json]

The engine's loop runs in this process, one batch after another, on the stream of
bench/engine.py (the same mix, stored the same way), and each batch is committed for real; but
only this thread's CPU time is counted (time.thread_time), phase by phase:
- read: the batch's pending orders and commands, read from the database and made live;
- match: the rest of Engine.prepare, the books and the fills;
- format: Engine.write_of, the batch's rows as the writer thread sends them;
- commit: the Python of the batch's transaction (locking reads, margins, the write statement),
  which the engine runs on its writer thread;
- announce: Engine.after_commit, the acknowledgement and the batch_committed receivers (market
  data, copy fan-out hook).
Beside them, the CPU time of the PostgreSQL backend that serves this thread (read from /proc, so
only with the server on this machine): what a batch costs PostgreSQL, per command and per batch
(two batch sizes' figures give, by subtraction, a cost per batch and one per command). The bare book applies the same
stream in the same run; `engine ÷ book` says how many times the book's cost the engine's Python
adds, which moves far less with the machine's speed than either time.
Runs in a throw-away database (test_<name of DATABASE_URL's database>).
"""
import argparse
import json
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import engine as engine_bench  # noqa: E402  (sets Django up)
from bench.engine import bare_book, console, mix, process_cpu_seconds  # noqa: E402

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from rich.table import Table  # noqa: E402

from config.heap import freeze_long_lived  # noqa: E402
from matching import persistence  # noqa: E402
from matching.engine import Engine, prepare_statements_on_the_server  # noqa: E402
from matching.models import Instrument, Order, OrdStatus  # noqa: E402

PHASES = ("read", "match", "format", "commit", "announce")


class PhaseClock:
    """CPU seconds of this thread spent in each phase; `read` is taken out of `match`, which holds it."""

    def __init__(self):
        self.seconds = dict.fromkeys(PHASES, 0.0)

    @contextmanager
    def phase(self, name: str):
        start = time.thread_time()
        try:
            yield
        finally:
            self.seconds[name] += time.thread_time() - start

    def wrap(self, module, name: str, phase: str) -> None:
        original = getattr(module, name)

        def timed(*args, **kwargs):
            with self.phase(phase):
                return original(*args, **kwargs)
        setattr(module, name, timed)


def local_backend_pid() -> int | None:
    """The pid of the PostgreSQL backend serving this thread's connection (the engine's), if it is a
    process of this machine: a remote server's pid may name some other local process."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    try:
        return pid if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres" else None
    except FileNotFoundError:
        return None


def engine_run(steps, accounts, instrument, batch_size: int) -> tuple[dict, dict]:
    """Stores the stream's orders, then applies them batch by batch: the engine's CPU µs per command
    by phase, and its PostgreSQL backend's per command and per batch (None unless local)."""
    settings.ENGINE_STREAM_PREFIX = f"bench-{uuid.uuid4().hex[:8]}"
    entries = engine_bench.prepare(steps, accounts, instrument, [])
    prepare_statements_on_the_server()  # as runengine does
    engine = Engine([instrument.symbol], batch_size=batch_size)
    engine.rebuild()
    freeze_long_lived()  # as Engine.run does after a rebuild
    clock = PhaseClock()
    originals = persistence.pending_orders, persistence.pending_commands
    clock.wrap(persistence, "pending_orders", "read")
    clock.wrap(persistence, "pending_commands", "read")
    backend = local_backend_pid()
    backend_start = process_cpu_seconds(backend, missing=None) if backend else None
    try:
        for start in range(0, len(entries), batch_size):
            part = entries[start:start + batch_size]
            with clock.phase("match"):
                batch = engine.prepare(part)
            with clock.phase("format"):
                rows = engine.write_of(batch)
            with clock.phase("commit"):
                engine.commit(batch, rows)
            with clock.phase("announce"):
                engine.after_commit(batch)
    finally:
        persistence.pending_orders, persistence.pending_commands = originals
    backend_end = process_cpu_seconds(backend, missing=None) if backend else None
    clock.seconds["match"] -= clock.seconds["read"]
    phases = {phase: seconds * 1e6 / len(entries) for phase, seconds in clock.seconds.items()}
    postgres = {"postgres_us_per_command": None, "postgres_ms_per_batch": None}
    if backend_start is not None and backend_end is not None:
        seconds, batches = backend_end - backend_start, -(-len(entries) // batch_size)
        postgres = {"postgres_us_per_command": round(seconds * 1e6 / len(entries), 1),
                    "postgres_ms_per_batch": round(seconds * 1e3 / batches, 2)}
    return phases, postgres


def run(count: int, batch_sizes: list[int]) -> dict:
    from django.test.utils import setup_databases, teardown_databases

    old = setup_databases(verbosity=0, interactive=False)
    try:
        instrument = Instrument.objects.get(symbol=engine_bench.SYMBOL)
        accounts = engine_bench.make_traders()
        results = []
        for n, batch_size in enumerate(batch_sizes):
            steps = mix(count, seed=7 + n)
            book_us = min(bare_book(steps) for _ in range(3)) * 1e6 / count  # the best of three: it is short
            console.log(f"engine in this process, batches of {batch_size:,}")
            phases, postgres = engine_run(steps, accounts, instrument, batch_size)
            total = sum(phases.values())
            results.append({"batch": batch_size, "book_us_per_command": round(book_us, 3),
                            "engine_us_per_command": round(total, 2),
                            **{f"{phase}_us": round(us, 2) for phase, us in phases.items()},
                            "engine_to_book_ratio": round(total / book_us, 1), **postgres})
            Order.objects.filter(ord_status__in=[OrdStatus.NEW, OrdStatus.PARTIALLY_FILLED]).update(
                ord_status=OrdStatus.CANCELED, leaves_qty=0)  # the next size starts on fresh books
        from matching.selectors import book_problems

        return {"commands": count, "runs": results, "books_balance": not book_problems()}
    finally:
        teardown_databases(old, verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[150, 10_000],
                        help="batch sizes, a run each (150: a paced batch at 10,000 orders/s; 10,000: a backlog)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.orders <= 0 or min(args.batch) <= 0:
        parser.error("--orders and --batch must be above 0")
    result = run(args.orders, args.batch)
    if args.json:
        print(json.dumps(result))
        return
    table = Table(title=f"The engine's Python per command (CPU of its thread) and its PostgreSQL backend's, "
                        f"{result['commands']:,} commands")
    for column in ("batch", "bare book", "engine", *PHASES, "engine ÷ book", "PostgreSQL", "PostgreSQL a batch"):
        table.add_column(column, justify="right")
    for row in result["runs"]:
        postgres = row["postgres_us_per_command"]
        table.add_row(f"{row['batch']:,}", f"{row['book_us_per_command']} µs", f"{row['engine_us_per_command']} µs",
                      *(f"{row[f'{phase}_us']} µs" for phase in PHASES), f"{row['engine_to_book_ratio']}×",
                      "not local" if postgres is None else f"{postgres} µs",
                      "" if postgres is None else f"{row['postgres_ms_per_batch']} ms")
    console.print(table)
    console.print("check_ledger:", "clean" if result["books_balance"] else "PROBLEMS")


if __name__ == "__main__":
    main()
