#!/usr/bin/env python3
"""Order book benchmark: the C book (single calls, batch, native) against cython-orderbook and
the pure-Python reference, on the same command streams, same machine, same run.

    python bench/book.py [--json] [--ops N] [--quick]

See docs/BENCHMARKS.md for what is measured and how to read it.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
from time import perf_counter_ns

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from bench import workloads as wl  # noqa: E402

try:
    import matching.book  # noqa: F401
except ImportError as exc:  # the extension is not built
    sys.exit(f"cannot import matching.book ({exc}); build it first: python setup.py build_ext --inplace")
from matching.book import (  # noqa: E402
    COMMAND_FIELDS,
    EV_FILL,
    EV_REJECT,
    EVENT_FIELDS,
    FLAG_POST_ONLY,
    GTC,
    IOC,
    OP_AMEND,
    OP_CANCEL,
    OP_LIMIT,
    OP_MARKET,
    STP_SHIFT,
    OrderBook,
    decode_events,
)
from matching.reference_book import ReferenceBook  # noqa: E402

try:  # optional contender (pip install cython-orderbook, or the project's "bench" extra)
    import cython_orderbook.orderbook as cob
except ImportError:  # pragma: no cover - reported in the output
    cob = None

BUILD_DIR = os.path.join(ROOT, "bench", "build")
HARNESS_SRC = os.path.join(ROOT, "bench", "native", "harness.c")
BOOK_SRC = os.path.join(ROOT, "matching", "csrc", "book.c")
BOOK_H = os.path.join(ROOT, "matching", "csrc", "book.h")

# published or measured elsewhere; shown beside our figures (docs/BENCHMARKS.md has the sources)
ANCHORS = [
    ("exchange-core (Java), published", "5M ops/s, p99 42 µs; 1M ops/s, p99 4 µs (whole engine pipeline)"),
    ("liquibook (C++), this kind of machine", "about 6.6M ops/s on the exchange-core mix (book only, one core)"),
    ("cython-orderbook, measured here earlier", "about 0.37M inserts/s, 0.22M crossing orders/s"),
]

CONTENDERS = {
    "c_single": "C book, single calls",
    "c_batch": "C book, apply (whole stream)",
    "c_batch_1k": "C book, apply (1k chunks)",
    "native": "C core, native harness",
    "native_batch_1k": "C core, native ob_apply_batch 1k",
    "cython_orderbook": "cython-orderbook 0.1.2",
    "reference": "pure-Python reference",
}


# ---------------------------------------------------------------- command mapping


def calls_for_book(book, cmds):
    """Our commands as (bound method, args) pairs for a book with our interface (C or reference),
    with the arguments a caller would pass (defaults left out)."""
    place, market, cancel, amend = book.place, book.market, book.cancel, book.amend
    calls = []
    add = calls.append
    for op, oid, owner, side, price, qty, flags in cmds:
        if op == OP_LIMIT:
            if flags == GTC:
                add((place, (oid, owner, side, price, qty)))
            elif flags == IOC:
                add((place, (oid, owner, side, price, qty, IOC)))
            else:
                add((place, (oid, owner, side, price, qty, flags & 3, bool(flags & FLAG_POST_ONLY), flags >> STP_SHIFT)))
        elif op == OP_CANCEL:
            add((cancel, (oid,)))
        elif op == OP_AMEND:
            add((amend, (oid, price, qty)))
        elif op == OP_MARKET:
            if flags == IOC:
                add((market, (oid, owner, side, qty, price)))
            else:
                add((market, (oid, owner, side, qty, price, flags & 3, flags >> STP_SHIFT)))
        else:
            raise ValueError(f"unknown op {op}")
    return calls


CYTHON_MAPPING = {
    "GTC limit": "Order(side, qty, price) + add_limit_order",
    "IOC limit": "emulated: add_limit_order, then cancel_order of the remainder if it rested",
    "market (no protection)": "Order(side, qty) + add_market_order",
    "market with protection price": "emulated as an IOC limit at the protection price",
    "cancel": "cancel_order(id)",
    "amend/move": "emulated: cancel_order + a new Order with the same id at the new price (no amend in the API)",
    "FOK, post-only, STP": "unsupported (not used by these streams)",
    "ids": "our id as a str set on Order.order_id (the package generates str ids)",
    "prices": "plain int ticks (the package's examples use Decimal, which would be slower)",
}


def calls_for_cython(cmds):
    """Maps our commands onto cython-orderbook's API (see CYTHON_MAPPING). Returns (book, calls)."""
    book = cob.OrderBook()
    Order = cob.Order
    sides = (cob.OrderSide.BID, cob.OrderSide.ASK)
    add_limit, add_market, cancel = book.add_limit_order, book.add_market_order, book.cancel_order

    def gtc(sid, side, price, qty):
        o = Order(side, qty, price)
        o.order_id = sid
        add_limit(o)

    def ioc(sid, side, price, qty):
        o = Order(side, qty, price)
        o.order_id = sid
        add_limit(o)
        if o.remaining_quantity:
            cancel(sid)

    def market(sid, side, qty):
        o = Order(side, qty)
        o.order_id = sid
        add_market(o)

    def move(sid, side, price, qty):
        cancel(sid)
        o = Order(side, qty, price)
        o.order_id = sid
        add_limit(o)

    calls = []
    add = calls.append
    for op, oid, _owner, side, price, qty, flags in cmds:
        sid = str(oid)
        s = sides[side]
        if op == OP_LIMIT:
            if flags == GTC:
                add((gtc, (sid, s, price, qty)))
            elif flags == IOC:
                add((ioc, (sid, s, price, qty)))
            else:
                raise ValueError("cython-orderbook has no FOK, post-only or STP")
        elif op == OP_MARKET:
            if price:
                add((ioc, (sid, s, price, qty)))
            else:
                add((market, (sid, s, qty)))
        elif op == OP_CANCEL:
            add((cancel, (sid,)))
        elif op == OP_AMEND:
            add((move, (sid, s, price, qty)))
    return book, calls


# ---------------------------------------------------------------- timing


def run_calls(calls):
    for f, a in calls:
        f(*a)


def time_calls(calls) -> int:
    t0 = perf_counter_ns()
    for f, a in calls:
        f(*a)
    return perf_counter_ns() - t0


def time_each(calls) -> list:
    lat = []
    app = lat.append
    pc = perf_counter_ns
    for f, a in calls:
        t = pc()
        f(*a)
        app(pc() - t)
    return lat


def timer_floor(n=200_000) -> int:
    lat = []
    app = lat.append
    pc = perf_counter_ns
    for _ in range(n):
        t = pc()
        app(pc() - t)
    lat.sort()
    return lat[len(lat) // 2]


def percentiles(values) -> dict:
    v = sorted(values)
    n = len(v)
    if not n:
        return {}

    def p(q):
        return v[min(n - 1, int(q / 100.0 * (n - 1) + 0.5))]

    return {"p50": p(50), "p99": p(99), "p99.9": p(99.9), "max": v[-1], "mean": round(sum(v) / n, 1)}


class Quiet:
    """Collects garbage, then keeps the cyclic collector off while timing."""

    def __enter__(self):
        gc.collect()
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was:
            gc.enable()


def make_c(cmds):
    book = OrderBook()
    return book, calls_for_book(book, cmds)


def make_ref(cmds):
    book = ReferenceBook()
    return book, calls_for_book(book, cmds)


def bench_python(make, cmds, prefill, measured, repeat):
    """make(commands) -> (book, calls). Times `repeat` throughput passes and one latency pass on
    fresh books; the prefill is applied untimed. Returns a result dict."""
    todo = cmds[: prefill + measured]
    rates = []
    for _ in range(repeat):
        book, calls = make(todo)
        run_calls(calls[:prefill])
        body = calls[prefill:]
        with Quiet():
            ns = time_calls(body)
        rates.append(len(body) * 1e9 / ns)
        del book, calls, body
    book, calls = make(todo)
    run_calls(calls[:prefill])
    with Quiet():
        lat = time_each(calls[prefill:])
    rates.sort()
    res = {"ops": measured, "ops_per_s": rates[-1], "ops_per_s_median": rates[len(rates) // 2],
           "ops_per_s_min": rates[0], "latency_ns": percentiles(lat)}
    res["_book"] = book
    return res


def bench_batch(cmds, prefill, measured, repeat, chunk):
    packed = wl.pack(cmds[: prefill + measured])
    width = COMMAND_FIELDS
    pre = packed[: prefill * width]
    body = memoryview(packed)[prefill * width:]
    chunks = [body[i: i + chunk * width] for i in range(0, len(body), chunk * width)]
    sizes = [len(c) // width for c in chunks]
    whole, chunked = [], []
    for _ in range(repeat):
        book = OrderBook()
        book.apply(pre)
        with Quiet():
            t0 = perf_counter_ns()
            book.apply(body)
            whole.append(measured * 1e9 / (perf_counter_ns() - t0))
    passes = []  # (ops/s, chunk times) per pass
    for _ in range(repeat):
        book = OrderBook()
        book.apply(pre)
        times = []
        app = times.append
        apply = book.apply
        with Quiet():
            t_all = perf_counter_ns()
            for c in chunks:
                t = perf_counter_ns()
                apply(c)
                app(perf_counter_ns() - t)
            t_all = perf_counter_ns() - t_all
        passes.append((measured * 1e9 / t_all, times))
    whole.sort()
    passes.sort(key=lambda p: p[0])
    chunked = [p[0] for p in passes]
    chunk_ns = passes[len(passes) // 2][1]  # latencies of the median pass
    lat = {k: round(v, 1) for k, v in percentiles([t / s for t, s in zip(chunk_ns, sizes)]).items()}
    return (
        {"ops": measured, "ops_per_s": whole[-1], "ops_per_s_median": whole[len(whole) // 2], "ops_per_s_min": whole[0]},
        {"ops": measured, "ops_per_s": chunked[-1], "ops_per_s_median": chunked[len(chunked) // 2],
         "ops_per_s_min": chunked[0], "latency_ns": lat, "chunk": chunk,
         "chunk_latency_us": {k: round(v / 1000.0, 1) for k, v in percentiles(chunk_ns).items()}},
    )


def keep_freed_memory() -> bool:
    """Asks glibc to keep freed memory in the process instead of handing it back to the kernel, as
    the native harness does: every pass starts from a fresh book, and without this a growing book
    would take its page faults again on every pass (a long-lived engine takes them once)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_trim_threshold, 1 << 30)) and bool(libc.mallopt(m_mmap_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


# ---------------------------------------------------------------- checks


def events_single(make_book, cmds):
    book = make_book()
    out = []
    for f, a in calls_for_book(book, cmds):
        out.extend(f(*a))
    return out, book


def check_events(name, cmds, k, harness_events_path):
    """C single calls, C batch, the reference and the native harness must give identical events
    on the first k commands."""
    prefix = cmds[:k]
    single, cbook = events_single(OrderBook, prefix)
    batch_bytes = OrderBook().apply(wl.pack(prefix))
    batch = decode_events(batch_bytes)
    ref, rbook = events_single(ReferenceBook, prefix)
    problems = []
    for label, other in (("C batch", batch), ("reference", ref)):
        if other != single:
            i = next((j for j, (a, b) in enumerate(zip(single, other)) if a != b), min(len(single), len(other)))
            problems.append(f"{name}: C single and {label} differ at event {i}: "
                            f"{single[i] if i < len(single) else None} vs {other[i] if i < len(other) else None}")
    if harness_events_path:
        with open(harness_events_path, "rb") as f:
            native = f.read()
        os.remove(harness_events_path)
        if native != bytes(batch_bytes):
            problems.append(f"{name}: the native harness's events differ from the extension's apply")
    rejects = sum(1 for e in batch if e[0] == EV_REJECT)
    if rejects:
        problems.append(f"{name}: {rejects} commands rejected in the first {k}")
    if len(cbook) != len(rbook):
        problems.append(f"{name}: C book holds {len(cbook)} orders, the reference {len(rbook)}")
    return {"commands": k, "events": len(single), "identical": not problems}, problems


def full_pass(cmds, prefill, chunk):
    """One untimed batch pass over the whole stream with the real book: rejects, fills and the
    steady state (resting orders and price levels after every chunk)."""
    book = OrderBook()
    packed = wl.pack(cmds)
    width = COMMAND_FIELDS
    book.apply(packed[: prefill * width])
    fills = rejects = events = 0
    orders, levels = [], []
    for i in range(prefill * width, len(packed), chunk * width):
        res = book.apply(packed[i: i + chunk * width])
        types = memoryview(res).cast("q")[0::EVENT_FIELDS].tolist() if len(res) else []
        events += len(types)
        fills += types.count(EV_FILL)
        rejects += types.count(EV_REJECT)
        st = book.stats()
        orders.append(st[0])
        levels.append(st[1] + st[2])
    # fills in the prefill too, for comparing with cython-orderbook's trade log
    pre = OrderBook().apply(packed[: prefill * width])
    pre_fills = memoryview(pre).cast("q")[0::EVENT_FIELDS].tolist().count(EV_FILL) if len(pre) else 0
    n = max(len(orders), 1)
    return {
        "rejects": rejects, "events": events, "fills": fills, "fills_with_prefill": fills + pre_fills,
        "final_orders": len(book),
        "resting_orders_mean": round(sum(orders) / n, 1), "resting_orders_min": min(orders, default=0),
        "resting_orders_max": max(orders, default=0), "price_levels_mean": round(sum(levels) / n, 1),
    }


# ---------------------------------------------------------------- native harness


def build_harness():
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None, "no C compiler"
    exe = os.path.join(BUILD_DIR, "book_harness")
    srcs = [HARNESS_SRC, BOOK_SRC, BOOK_H]
    if os.path.exists(exe) and os.path.getmtime(exe) >= max(os.path.getmtime(s) for s in srcs):
        return exe, None
    os.makedirs(BUILD_DIR, exist_ok=True)
    cmd = [cc, "-O3", "-DNDEBUG", "-std=c11", "-I", os.path.dirname(BOOK_H), HARNESS_SRC, BOOK_SRC, "-o", exe]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"harness build failed: {proc.stderr.strip()[:500]}"
    return exe, None


def run_harness(exe, path, prefill, repeat, chunk, dump_n, dump_path, release_memory=False):
    cmd = [exe, path, "--prefill", str(prefill), "--repeat", str(repeat), "--warmup", "1", "--chunk", str(chunk)]
    if release_memory:
        cmd.append("--release-memory")
    if dump_path:
        cmd += ["--dump-events", str(dump_n), dump_path]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"harness failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


# ---------------------------------------------------------------- report


def fmt_rate(x):
    if x is None:
        return "—"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def fmt_ns(x):
    if x is None:
        return "—"
    if x < 1000:
        return f"{x:.0f} ns"
    if x < 1_000_000:
        return f"{x / 1000:.1f} µs"
    return f"{x / 1e6:.1f} ms"


def fmt_ratio(x):
    if x is None:
        return "—"
    return f"{x:.1f}×" if x >= 1 else f"{x:.2f}×"


def machine_info():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cc = ""
    try:
        cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        pass
    rev = ""
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "system": platform.platform(),
            "cc": cc, "git": rev, "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def targets(results):
    ec = results["workloads"].get("exchange_core", {}).get("contenders", {})

    def ops(key):
        return ec.get(key, {}).get("ops_per_s")

    out = []

    def add(label, value, goal, unit="ops/s"):
        reached = value is not None and value >= goal
        out.append({"target": label, "goal": goal, "value": value, "reached": reached, "unit": unit})

    add("native ≥ 10M ops/s (exchange-core mix)", ops("native"), 10e6)
    add("batch from Python ≥ 3M ops/s (1k chunks)", ops("c_batch_1k"), 3e6)
    add("single calls ≥ 1M ops/s", ops("c_single"), 1e6)
    for other, goal, name in (("cython_orderbook", 10, "cython-orderbook"), ("reference", 50, "the reference")):
        for key, how in (("single_over_this", "single calls"), ("batch_over_this", "batch")):
            worst = None
            for w in results["workloads"].values():
                c = w.get("contenders", {}).get(other)
                if c and key in c:
                    worst = c[key] if worst is None else min(worst, c[key])
            add(f"≥ {goal}× {name}, {how} (worst workload)", worst, goal, unit="×")
    return out


def print_report(results, console):
    m = results["machine"]
    console.print(f"[bold]Order book benchmark[/bold]  {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
                  f"{m['cc']}  (git {m['git'] or '?'}; load average {m['load_average_at_start'][0]} at start, "
                  f"{m.get('load_average_at_end', ['?'])[0]} at end)")
    for name, w in results["workloads"].items():
        s = w["stream"]
        st = w.get("steady_state", {})
        if not w["contenders"]:
            console.print(f"[red]{name}: not benchmarked, the checks failed (see the problems below)[/red]")
            continue
        mix = ", ".join(f"{k} {v:g}%" for k, v in s["stats"].get("mix_pct", {}).items())
        t = Table(title=f"{name}: {s['measured']:,} measured commands (+{s['prefill']:,} prefill)", title_justify="left")
        for col, just in (("contender", "left"), ("ops", "right"), ("ops/s", "right"), ("p50", "right"),
                          ("p99", "right"), ("p99.9", "right"), ("single ÷ this", "right"),
                          ("batch ÷ this", "right"), ("note", "left")):
            t.add_column(col, justify=just, overflow="fold")
        for key, c in w["contenders"].items():
            lat = c.get("latency_ns") or {}
            t.add_row(CONTENDERS[key], f"{c['ops']:,}", fmt_rate(c["ops_per_s"]), fmt_ns(lat.get("p50")),
                      fmt_ns(lat.get("p99")), fmt_ns(lat.get("p99.9")), fmt_ratio(c.get("single_over_this")),
                      fmt_ratio(c.get("batch_over_this")), c.get("note", ""))
        console.print(t)
        console.print(f"  mix: {mix}; steady state on the real book: {st.get('resting_orders_mean', '?')} resting "
                      f"orders (min {st.get('resting_orders_min', '?')}, max {st.get('resting_orders_max', '?')}), "
                      f"{st.get('price_levels_mean', '?')} price levels, {st.get('fills', 0):,} fills, "
                      f"{st.get('rejects', '?')} rejects; checks: {'identical events' if w['checks'].get('identical') else 'FAILED'} "
                      f"on the first {w['checks'].get('commands', 0):,} commands")
        for note in w.get("notes", []):
            console.print(f"  [dim]{note}[/dim]")
    console.print("  [dim]single ÷ this, batch ÷ this: ours (single calls, apply in 1k chunks) over the row, "
                  "on the same commands (for a contender run on a prefix, ours is timed again on that prefix)[/dim]")
    console.print(f"  [dim]timer floor (perf_counter_ns pair, included in Python latencies): "
                  f"{results['config']['python_timer_floor_ns']} ns; native clock pair: "
                  f"{results['config'].get('native_timer_floor_ns', '?')} ns[/dim]")
    tt = Table(title="Targets", title_justify="left")
    for col in ("target", "value", "reached"):
        tt.add_column(col)
    for tg in results["targets"]:
        v = tg["value"]
        val = "—" if v is None else (fmt_rate(v) + " ops/s" if tg["unit"] == "ops/s" else fmt_ratio(v))
        tt.add_row(tg["target"], val, "[green]yes[/green]" if tg["reached"] else "[red]no[/red]")
    console.print(tt)
    at = Table(title="Anchors (not measured in this run)", title_justify="left")
    at.add_column("system")
    at.add_column("figure")
    for a, b in ANCHORS:
        at.add_row(a, b)
    console.print(at)


def markdown_report(results) -> str:
    """The figures as Markdown tables, for docs/BENCHMARKS.md."""
    lines = []
    for name, w in results["workloads"].items():
        if not w["contenders"]:
            continue
        s = w["stream"]
        lines.append(f"**{name}**: {s['measured']:,} measured commands (+{s['prefill']:,} prefill)\n")
        lines.append("| contender | ops | ops/s | p50 | p99 | p99.9 | single ÷ this | batch ÷ this | note |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for key, c in w["contenders"].items():
            lat = c.get("latency_ns") or {}
            lines.append(f"| {CONTENDERS[key]} | {c['ops']:,} | {fmt_rate(c['ops_per_s'])} | {fmt_ns(lat.get('p50'))} | "
                         f"{fmt_ns(lat.get('p99'))} | {fmt_ns(lat.get('p99.9'))} | {fmt_ratio(c.get('single_over_this'))} | "
                         f"{fmt_ratio(c.get('batch_over_this'))} | {c.get('note', '')} |")
        lines.append("")
    lines.append("| target | value | reached |")
    lines.append("|---|---:|---|")
    for tg in results["targets"]:
        v = tg["value"]
        val = "—" if v is None else (fmt_rate(v) + " ops/s" if tg["unit"] == "ops/s" else fmt_ratio(v))
        lines.append(f"| {tg['target']} | {val} | {'yes' if tg['reached'] else '**no**'} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object to stdout instead of tables")
    ap.add_argument("--markdown", action="store_true", help="print the figures as Markdown tables instead")
    ap.add_argument("--ops", type=int, default=None, help="measured commands per workload (default 1,000,000; quick 100,000)")
    ap.add_argument("--quick", action="store_true", help="small run, well under 30 s")
    ap.add_argument("--ref-ops", type=int, default=None, help="commands for the pure-Python reference (default 50,000; quick 10,000)")
    ap.add_argument("--cython-ops", type=int, default=None, help="commands for cython-orderbook (default 200,000; quick 50,000)")
    ap.add_argument("--check-ops", type=int, default=None, help="commands compared event for event (default 20,000; quick 5,000)")
    ap.add_argument("--repeat", type=int, default=None, help="throughput passes per contender, the best reported (default 5; quick 2)")
    ap.add_argument("--chunk", type=int, default=1000, help="batch chunk size (default 1000)")
    ap.add_argument("--workloads", default=",".join(wl.WORKLOADS), help="comma-separated subset of " + ",".join(wl.WORKLOADS))
    ap.add_argument("--cpu", type=int, default=None, help="pin this process and the harness to one CPU")
    ap.add_argument("--release-memory", action="store_true",
                    help="let the allocator give freed memory back between passes (growing books then pay page faults on every pass)")
    args = ap.parse_args(argv)

    quick = args.quick
    n = args.ops or (100_000 if quick else 1_000_000)
    ref_n = min(n, args.ref_ops or (10_000 if quick else 50_000))
    cy_n = min(n, args.cython_ops or (50_000 if quick else 200_000))
    check_n = args.check_ops or (5_000 if quick else 20_000)
    repeat = args.repeat or (2 if quick else 5)
    native_repeat = 3 if quick else 7
    names = [x for x in args.workloads.split(",") if x]
    for x in names:
        if x not in wl.GENERATORS:
            ap.error(f"unknown workload {x}")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    kept = False if args.release_memory else keep_freed_memory()

    out = Console(soft_wrap=False, width=max(Console().width, 150))
    err = Console(stderr=True)
    results = {"machine": machine_info(),
               "config": {"ops": n, "reference_ops": ref_n, "cython_ops": cy_n, "check_ops": check_n, "repeat": repeat,
                          "native_repeat": native_repeat, "chunk": args.chunk, "quick": quick, "cpu": args.cpu,
                          "gc": "disabled while timing", "freed_memory_kept": kept, "cython_orderbook_mapping": CYTHON_MAPPING if cob else None},
               "workloads": {}, "anchors": dict(ANCHORS)}
    problems = []
    steps_per = 9
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err, transient=True) as progress:
        task = progress.add_task("building the native harness", total=1 + steps_per * len(names))
        exe, harness_problem = build_harness()
        results["config"]["python_timer_floor_ns"] = timer_floor()
        progress.advance(task)
        for name in names:
            def step(what):
                progress.update(task, description=f"{name}: {what}")

            step("generating the stream")
            w, path = wl.load_or_generate(BUILD_DIR, name, n)
            cmds, pre, measured = w.commands, w.prefill, w.measured
            progress.advance(task)
            res = {"stream": {"file": os.path.relpath(path, ROOT), "commands": len(cmds), "prefill": pre,
                              "measured": measured, "seed": w.seed, "stats": w.stats},
                   "contenders": {}, "notes": []}
            results["workloads"][name] = res

            step("checking events (C single, C batch, reference, native)")
            k = min(len(cmds), pre + check_n)
            dump = os.path.join(BUILD_DIR, f"{name}-events-{k}.bin") if exe else None
            native = None
            if exe:
                try:
                    native = run_harness(exe, path, pre, native_repeat, args.chunk, k, dump, args.release_memory)
                except (RuntimeError, ValueError) as exc:
                    problems.append(f"{name}: {exc}")
                    dump = None
            checks, probs = check_events(name, cmds, k, dump)
            res["checks"] = checks
            problems += probs
            if probs:
                progress.advance(task, steps_per - 1)
                continue
            steady = full_pass(cmds, pre, args.chunk)
            res["steady_state"] = steady
            if steady["rejects"]:
                problems.append(f"{name}: {steady['rejects']} commands rejected by the real book")
            if steady["final_orders"] != w.stats.get("final_orders", steady["final_orders"]):
                problems.append(f"{name}: the generator's model ends with {w.stats['final_orders']} orders, "
                                f"the real book with {steady['final_orders']}")
            if native and native["rejects"]:
                problems.append(f"{name}: the native harness saw {native['rejects']} rejects")
            progress.advance(task)

            step("C book, single calls")
            r = bench_python(make_c, cmds, pre, measured, repeat)
            r.pop("_book")
            res["contenders"]["c_single"] = r
            progress.advance(task)

            step("C book, apply")
            whole, chunked = bench_batch(cmds, pre, measured, repeat, args.chunk)
            whole["note"] = "one apply call over the stream"
            chunked["note"] = f"latency = chunk time / {args.chunk}"
            res["contenders"]["c_batch"] = whole
            res["contenders"]["c_batch_1k"] = chunked
            progress.advance(task)

            step("native harness")
            if native:
                res["contenders"]["native"] = {
                    "ops": native["measured"], "ops_per_s": native["ops_per_s_best"],
                    "ops_per_s_median": native["ops_per_s"], "ops_per_s_min": native["ops_per_s_worst"],
                    "latency_ns": {k2: native["latency_ns"][k2] for k2 in ("p50", "p99", "p99.9", "max", "mean")},
                    "note": "ob_apply loop",
                }
                res["contenders"]["native_batch_1k"] = {
                    "ops": native["measured"], "ops_per_s": native["batch_ops_per_s_best"],
                    "ops_per_s_median": native["batch_ops_per_s"], "note": "ob_apply_batch",
                }
                results["config"]["native_timer_floor_ns"] = native["timer_ns"]["p50"]
                res["native_raw"] = native
            else:
                res["notes"].append(f"native harness skipped: {harness_problem or 'it failed (see the problems)'}")
            progress.advance(task)

            step(f"cython-orderbook ({cy_n:,} commands)")
            if cob is not None:
                r = bench_python(calls_for_cython, cmds, pre, cy_n, repeat)
                cbook = r.pop("_book")
                res["contenders"]["cython_orderbook"] = r
                # same resting orders and trades as ours on the same prefix, or the mapping is off
                ours = OrderBook()
                ours_ev = ours.apply(wl.pack(cmds[: pre + cy_n]))
                our_fills = memoryview(ours_ev).cast("q")[0::EVENT_FIELDS].tolist().count(EV_FILL) if len(ours_ev) else 0
                same = len(cbook.orders) == len(ours) and len(cbook.trade_log) == our_fills
                res["cython_orderbook_agrees"] = {"resting_orders": [len(cbook.orders), len(ours)],
                                                  "fills": [len(cbook.trade_log), our_fills], "same": same}
                if not same:
                    res["notes"].append(f"cython-orderbook ended with {len(cbook.orders)} orders and "
                                        f"{len(cbook.trade_log)} trades, ours with {len(ours)} and {our_fills}")
                del cbook
            else:
                res["notes"].append("cython-orderbook not installed: pip install cython-orderbook")
            progress.advance(task)

            step(f"pure-Python reference ({ref_n:,} commands)")
            r = bench_python(make_ref, cmds, pre, ref_n, repeat)
            r.pop("_book")
            r["note"] = f"first {ref_n:,} commands"
            res["contenders"]["reference"] = r
            progress.advance(task)

            # a contender run on a prefix is compared with ours on that same prefix (the book of
            # insert_only grows, so a prefix is not the same work as the whole stream)
            step("ours again on the prefixes the slow contenders ran")
            same = {measured: {"c_single": res["contenders"]["c_single"]["ops_per_s"],
                               "c_batch_1k": res["contenders"]["c_batch_1k"]["ops_per_s"]}}
            for c in res["contenders"].values():
                m = c["ops"]
                if m not in same:
                    s1 = bench_python(make_c, cmds, pre, m, max(repeat, 5))
                    s1.pop("_book")
                    _, b1 = bench_batch(cmds, pre, m, max(repeat, 5), args.chunk)
                    same[m] = {"c_single": s1["ops_per_s"], "c_batch_1k": b1["ops_per_s"]}
                    res.setdefault("ours_on_prefix", {})[m] = same[m]
                c["single_over_this"] = same[m]["c_single"] / c["ops_per_s"]
                c["batch_over_this"] = same[m]["c_batch_1k"] / c["ops_per_s"]
            if "cython_orderbook" in res["contenders"]:
                note = [f"first {cy_n:,} commands"] if cy_n < measured else []
                if name != "insert_only":
                    note.append("IOC and moves emulated")
                res["contenders"]["cython_orderbook"]["note"] = "; ".join(note)
            progress.advance(task)

    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = targets(results)
    results["problems"] = problems
    if args.json:
        print(json.dumps(results, indent=1, default=float))
    elif args.markdown:
        print(markdown_report(results), end="")
    else:
        print_report(results, out)
        for p in problems:
            out.print(f"[red]problem:[/red] {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
