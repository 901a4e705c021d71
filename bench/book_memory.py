#!/usr/bin/env python3
"""Memory of the C order book: what N resting orders cost, and whether it comes back.

    python bench/book_memory.py [--orders N] [--levels L] [--owners K] [--chunk C] [--seed S] [--json]

Places N GTC orders (default 10,000,000) that all rest, spread over L price levels per side
(default 10,000) around a fixed centre, more of them near the touch, with random owners and
quantities; then cancels them all, fills the same book again, clears it, trims the allocator,
fills a second book and deletes it. After each phase it prints the process RSS (VmRSS from
/proc/self/status) and, with glibc, the allocator's own figures (mallinfo2). Orders go in through
`apply` in batches of C commands (default 100,000), generated batch by batch so that the command
buffers stay small next to the book; the insert time counts the `apply` calls only.

How to read it (docs/ORDER_BOOK.md, "Checking memory safety", has the figures):
- `fill`: RSS growth over `start` divided by N is the cost of a resting order: the order itself
  from the book's pools plus its share of the id table (a power of two of slots at a load factor
  of at most one half, so the share depends on where N falls between two powers of two).
- `cancel_all`: canceled orders go back to the book's pools and the id table keeps its size, so
  RSS does not drop: the memory is kept for the next orders, not lost.
- `refill`: the same number of orders again in the same book: the bytes in use must not grow
  (RSS may move by a few MiB of the allocator's free pages, see below).
- `clear`: `clear()` frees the pools and the table but keeps the book's event buffer (sized for
  the largest `apply` so far, freed with the book). glibc hands blocks it obtained with mmap
  straight back to the kernel, but blocks carved from the brk heap go to its free lists, and only
  free space at the very top of the heap, beyond M_TRIM_THRESHOLD, is given back; free pages below
  a block still in use stay in RSS until `malloc_trim` (`trim`), which returns every whole free
  page. Either way the memory is free inside the process and the next fill reuses it. glibc raises
  its mmap threshold (and the trim threshold with it) each time a freed mmapped block is larger
  than the threshold, up to 32 MiB, so after the id table has grown a few times the pool chunks
  come from the heap; GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072 fixes the threshold and
  `clear` then returns the memory at once.
- `second_fill` / `delete`: a new book of the same size lands back near the `fill` figure (no
  growth from one book to the next); deleting it frees everything.
"malloc in use" is the main arena's bytes in use plus mmapped blocks (mallinfo2), over `start`.
The exit status is 1 when a check fails: an order that did not rest or cancel, a count off, or
(with mallinfo2, else by RSS with a margin) memory in use growing on a refill or a second book,
or not coming back after clear and delete.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import platform
import random
import sys
import time
from array import array
from operator import itemgetter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from matching.book import EV_CANCEL, EV_REST, OP_CANCEL, OP_LIMIT, OrderBook  # noqa: E402

CENTRE = 1_000_000  # ticks; bids at CENTRE - 1 - d, asks at CENTRE + 1 + d, so nothing crosses
POOL = 1 << 16  # (side, price) and quantity draws come from pools indexed by random 16-bit values
RECORD = 7  # int64 fields per command
EVENT_BYTES = 6 * 8
MIB = 1 << 20


# ---------------------------------------------------------------- process and allocator figures


def rss_bytes() -> int:
    return _status_kb("VmRSS") * 1024


def peak_rss_bytes() -> int:
    return _status_kb("VmHWM") * 1024


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


class Allocator:
    """glibc's malloc_trim and mallinfo2 when present (other C libraries: neither)."""

    def __init__(self) -> None:
        self.libc = None
        self.version = None
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name)
            libc.gnu_get_libc_version.restype = ctypes.c_char_p
            self.version = "glibc " + libc.gnu_get_libc_version().decode()
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
            libc.malloc_trim.restype = ctypes.c_int
            self.libc = libc
        except (OSError, AttributeError):
            return
        try:
            libc.mallinfo2.restype = _Mallinfo2
            self.has_mallinfo2 = True
        except AttributeError:  # glibc before 2.33
            self.has_mallinfo2 = False

    def trim(self) -> bool:
        return bool(self.libc and self.libc.malloc_trim(0))

    def info(self) -> dict | None:
        """Main arena: brk heap size, bytes in use and free in it, bytes in mmapped blocks."""
        if not (self.libc and self.has_mallinfo2):
            return None
        m = self.libc.mallinfo2()
        return {"heap": m.arena, "heap_in_use": m.uordblks, "heap_free": m.fordblks,
                "heap_top_releasable": m.keepcost, "mmapped": m.hblkhd, "mmapped_blocks": m.hblks}


# ---------------------------------------------------------------- commands


class Orders:
    """Seeded batches of OP_LIMIT GTC records that all rest.

    Every level of each side gets at least one pool entry, so all `levels` levels exist once about
    a million orders are in; the remaining entries fall near the touch (weight 1 / (1 + d /
    500) for the level d ticks behind the best), as real books are thicker there. Quantities are
    1 + 999 u^3 lots, owners uniform in [0, owners)."""

    def __init__(self, levels: int, owners: int, seed: int) -> None:
        if not 1 <= levels <= POOL // 2:
            raise ValueError(f"levels must be in 1..{POOL // 2}")
        if not 1 <= owners <= 1 << 16:
            raise ValueError("owners must be in 1..65536")
        self.owners = owners
        self.seed = seed
        rng = random.Random(seed)
        per_side = POOL // 2
        weights = [1.0 / (1.0 + d / 500.0) for d in range(levels)]
        extra = per_side - levels
        total = sum(weights)
        counts = [1 + int(extra * w / total) for w in weights]
        counts[0] += per_side - sum(counts)  # rounding leftovers go to the touch
        sides, prices = array("q"), array("q")
        for side, sign in ((0, -1), (1, 1)):
            for d, n in enumerate(counts):
                sides.extend([side] * n)
                prices.extend([CENTRE + sign * (1 + d)] * n)
        self.sides, self.prices = sides, prices
        self.qtys = array("q", [1 + int(999 * rng.random() ** 3) for _ in range(POOL)])

    def batches(self, n: int, chunk: int):
        """Yields command buffers (array('q')) for order ids 1..n, `chunk` orders at a time."""
        rng = random.Random(self.seed + 1)
        ones = array("q", [OP_LIMIT])
        for start in range(1, n + 1, chunk):
            m = min(chunk, n + 1 - start)
            pick = itemgetter(*array("H", rng.randbytes(2 * m)))
            take_qty = itemgetter(*array("H", rng.randbytes(2 * m)))
            owners = array("H", rng.randbytes(2 * m))
            if self.owners != 1 << 16:
                owners = [o % self.owners for o in owners]
            cmd = array("q", bytes(8 * RECORD * m))
            cmd[0::RECORD] = ones * m
            cmd[1::RECORD] = array("q", range(start, start + m))
            cmd[2::RECORD] = array("q", owners)
            if m == 1:  # itemgetter of one index returns the item, not a tuple
                cmd[3::RECORD] = array("q", [pick(self.sides)])
                cmd[4::RECORD] = array("q", [pick(self.prices)])
                cmd[5::RECORD] = array("q", [take_qty(self.qtys)])
            else:
                cmd[3::RECORD] = array("q", pick(self.sides))
                cmd[4::RECORD] = array("q", pick(self.prices))
                cmd[5::RECORD] = array("q", take_qty(self.qtys))
            # flags (field 6) stay 0: GTC, no post-only, no STP
            yield cmd


def cancel_batches(n: int, chunk: int, stride: int = 7919):
    """OP_CANCEL records for ids 1..n in a scattered order (ids k, k + stride, k + 2 stride, ...)."""
    ids = array("q")
    op = array("q", [OP_CANCEL])
    for k in range(1, min(stride, n) + 1):
        ids.extend(range(k, n + 1, stride))
        while len(ids) >= chunk or (k == min(stride, n) and ids):
            part, ids = ids[:chunk], ids[chunk:]
            cmd = array("q", bytes(8 * RECORD * len(part)))
            cmd[0::RECORD] = op * len(part)
            cmd[1::RECORD] = part
            yield cmd


# ---------------------------------------------------------------- phases


class Failed(Exception):
    pass


def apply_all(book: OrderBook, batches, expect_type: int) -> tuple[float, int]:
    """Applies every batch; returns (seconds inside apply, commands). Every command must give
    exactly one event of `expect_type`."""
    spent = 0.0
    count = 0
    for cmd in batches:
        t0 = time.perf_counter()
        out = book.apply(cmd)
        spent += time.perf_counter() - t0
        m = len(cmd) // RECORD
        if len(out) != m * EVENT_BYTES:
            raise Failed(f"{m} commands gave {len(out) // EVENT_BYTES} events, expected one each")
        if array("q", out)[0::6].count(expect_type) != m:
            raise Failed(f"an event other than type {expect_type} in a batch")
        count += m
    return spent, count


def run(args) -> dict:
    alloc = Allocator()
    orders = Orders(args.levels, args.owners, args.seed)
    phases: list[dict] = []
    gc.collect()
    base = rss_bytes()

    def in_use() -> int | None:
        info = alloc.info()
        return None if info is None else info["heap_in_use"] + info["mmapped"]

    base_in_use = in_use()
    if not args.json:
        print(f"{'phase':<12} {'RSS MiB':>9} {'over start':>11} {'malloc in use':>14} {'seconds':>8}")

    def mark(name: str, seconds: float | None = None, **extra) -> dict:
        gc.collect()
        rss = rss_bytes()
        used = in_use()
        row = {"phase": name, "rss": rss, "over_start": rss - base, "seconds": seconds,
               "malloc_in_use_over_start": None if used is None else used - base_in_use,
               "malloc": alloc.info(), **extra}
        phases.append(row)
        if not args.json:
            secs = "" if seconds is None else f"{seconds:8.2f}"
            used_s = "" if used is None else f"{(used - base_in_use) / MIB:+14.1f}"
            print(f"{name:<12} {rss / MIB:9.1f} {(rss - base) / MIB:+11.1f} {used_s:>14} {secs:>8}", flush=True)
        return row

    n, chunk = args.orders, args.chunk
    mark("start")

    book = OrderBook()
    t0 = time.perf_counter()
    insert_s, placed = apply_all(book, orders.batches(n, chunk), EV_REST)
    wall = time.perf_counter() - t0
    stats = book.stats()
    if len(book) != n or placed != n:
        raise Failed(f"{len(book)} resting orders after placing {n}")
    fill = mark("fill", insert_s, wall_seconds=wall, orders=len(book), bid_levels=stats[1],
                ask_levels=stats[2])

    cancel_s, canceled = apply_all(book, cancel_batches(n, chunk), EV_CANCEL)
    if len(book) != 0 or canceled != n:
        raise Failed(f"{len(book)} orders left after canceling {canceled}")
    mark("cancel_all", cancel_s, orders=len(book))

    refill_s, _ = apply_all(book, orders.batches(n, chunk), EV_REST)
    if len(book) != n:
        raise Failed(f"{len(book)} resting orders after the refill")
    refill = mark("refill", refill_s, orders=len(book))

    t0 = time.perf_counter()
    book.clear()
    cleared = mark("clear", time.perf_counter() - t0, orders=len(book))
    mark("trim", None, trimmed=alloc.trim())

    book = OrderBook()
    second_s, _ = apply_all(book, orders.batches(n, chunk), EV_REST)
    if len(book) != n:
        raise Failed(f"{len(book)} resting orders in the second book")
    second = mark("second_fill", second_s, orders=len(book))

    del book
    mark("delete")
    final = mark("final_trim", None, trimmed=alloc.trim())

    refill_growth = refill["rss"] - fill["rss"]
    second_growth = second["rss"] - fill["rss"]
    exact = base_in_use is not None

    def used_delta(a: dict, b: dict) -> int:
        return b["malloc_in_use_over_start"] - a["malloc_in_use_over_start"]
    result = {
        "orders": n,
        "levels_per_side": args.levels,
        "owners": args.owners,
        "chunk": chunk,
        "seed": args.seed,
        "bytes_per_order": round(fill["over_start"] / n, 1),
        "book_bytes": fill["over_start"],
        "insert_seconds": round(insert_s, 3),
        "insert_ns_per_order": round(insert_s / n * 1e9, 1),
        "fill_wall_seconds": round(wall, 3),
        "cancel_seconds": round(cancel_s, 3),
        "cancel_ns_per_order": round(cancel_s / n * 1e9, 1),
        "refill_rss_growth": refill_growth,
        "second_fill_rss_vs_first": second_growth,
        "final_over_start": final["over_start"],
        "malloc_in_use": {p["phase"]: p["malloc_in_use_over_start"] for p in phases} if exact else None,
        "peak_rss": peak_rss_bytes(),
        "phases": phases,
        "python": platform.python_version(),
        "allocator": alloc.version,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    # The checks use the bytes malloc has handed out (mallinfo2), which the book alone changes
    # here; RSS also moves with the allocator's free-but-resident pages and Python's own arenas,
    # so without mallinfo2 it is checked with a margin of 1% of the book or 32 MiB.
    if exact:
        checks = [(used_delta(fill, refill), "bytes more in use after a refill of the canceled book"),
                  (used_delta(fill, second), "bytes more in use for a second book than for the first"),
                  (final["malloc_in_use_over_start"], "bytes still in use after deleting the book"),
                  (cleared["malloc_in_use_over_start"], "bytes in use after clear()")]
        tolerance = 256 * 1024  # Python's own allocations between phases stay well under this
    else:
        checks = [(refill_growth, "bytes of RSS growth on a refill of the canceled book"),
                  (second_growth, "bytes of RSS more for a second book than for the first"),
                  (final["over_start"], "bytes of RSS still held after deleting the book and trimming")]
        tolerance = max(32 * MIB, fill["over_start"] // 100)
    result["problems"] = [f"{value} {what}" for value, what in checks if value > tolerance]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=10_000_000, help="resting orders (default 10,000,000)")
    parser.add_argument("--levels", type=int, default=10_000, help="price levels per side (default 10,000)")
    parser.add_argument("--owners", type=int, default=1 << 16, help="distinct owners (default 65,536)")
    parser.add_argument("--chunk", type=int, default=100_000, help="commands per apply call (default 100,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.chunk < 1:
        parser.error("--orders and --chunk must be positive")
    if not 1 <= args.levels <= POOL // 2 or not 1 <= args.owners <= 1 << 16:
        parser.error(f"--levels must be in 1..{POOL // 2} and --owners in 1..{1 << 16}")
    if not args.json:
        print(f"{args.orders:,} orders on {args.levels:,} levels per side, {args.owners:,} owners, "
              f"apply in batches of {args.chunk:,}", flush=True)
    try:
        result = run(args)
    except Failed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        r = result
        print(f"\nbytes per resting order: {r['bytes_per_order']:.1f} "
              f"({r['book_bytes'] / MIB:.1f} MiB for {r['orders']:,})")
        print(f"insert: {r['insert_seconds']:.2f} s in apply ({r['insert_ns_per_order']:.0f} ns/order), "
              f"{r['fill_wall_seconds']:.2f} s with command generation")
        print(f"cancel: {r['cancel_seconds']:.2f} s ({r['cancel_ns_per_order']:.0f} ns/order)")
        print(f"RSS growth on refill after cancel_all: {r['refill_rss_growth'] / MIB:+.1f} MiB; "
              f"second book vs first: {r['second_fill_rss_vs_first'] / MIB:+.1f} MiB; "
              f"after delete + malloc_trim: {r['final_over_start'] / MIB:+.1f} MiB over start")
        print(f"peak RSS (VmHWM): {r['peak_rss'] / MIB:.1f} MiB; {r['allocator'] or 'allocator unknown'}, "
              f"Python {r['python']}")
        for p in r["problems"]:
            print(f"PROBLEM: {p}")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
