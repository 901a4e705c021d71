"""Deterministic command streams for the order book benchmark.

Each generator returns a `Workload`: a list of 7-tuples `(op, order_id, owner, side, price, qty,
flags)` as in docs/ORDER_BOOK.md, the number of leading commands that only fill the book (applied
untimed before measuring) and the statistics of the stream as the generator's model saw them.

The generators track the book themselves with `_Model`, a small price-time priority matcher
(GTC/IOC limits and market orders, no STP, no post-only, no FOK), so that every cancel and move
targets a live order with its current remaining quantity and the regulation (keep about N orders
resting) sees the real book size. `bench/book.py` checks the model against the real book: no
command of a stream may be rejected and the final order count must match.

Workloads:
- `exchange_core`: exchange-core's benchmark mix (TestOrdersGenerator): ~82% moves, ~9% GTC,
  ~3% IOC, ~6% cancels, about 1,000 resting orders on about 750 price levels, 1,000 owners.
- `insert_only`: GTC limits that mostly rest (1% cross the spread); the book grows.
- `matching_heavy`: most commands take liquidity (IOC and aggressive limits, market orders),
  makers refill the touch.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import math
import os
import random
from array import array
from collections import deque
from itertools import islice
from dataclasses import dataclass, field

from matching.book_protocol import (
    BUY,
    COMMAND_FIELDS,
    GTC,
    IOC,
    OP_AMEND,
    OP_CANCEL,
    OP_LIMIT,
    OP_MARKET,
    SELL,
)

WORKLOADS = ("exchange_core", "insert_only", "matching_heavy")


@dataclass
class Workload:
    name: str
    commands: list  # of 7-tuples
    prefill: int  # leading commands applied untimed to build the book
    seed: int
    stats: dict = field(default_factory=dict)

    @property
    def measured(self) -> int:
        return len(self.commands) - self.prefill


class _Model:
    """Exact price-time priority book for the generators (no STP, post-only or FOK)."""

    __slots__ = ("orders", "levels", "heaps", "count", "last_fill", "fills", "filled_cmd")

    def __init__(self):
        self.orders = {}  # id -> [side, price, qty, owner]
        self.levels = ({}, {})  # per side: price -> deque of ids, oldest first
        self.heaps = ([], [])  # BUY: -price, SELL: price; lazily pruned
        self.count = [0, 0]
        self.last_fill = None
        self.fills = 0
        self.filled_cmd = False  # set when the last command traded

    def best(self, side):
        heap, levels = self.heaps[side], self.levels[side]
        while heap:
            price = -heap[0] if side == BUY else heap[0]
            if price in levels:
                return price
            heapq.heappop(heap)
        return None

    def _rest(self, oid, side, price, qty, owner):
        levels = self.levels[side]
        level = levels.get(price)
        if level is None:
            level = levels[price] = deque()
            heap = self.heaps[side]
            heapq.heappush(heap, -price if side == BUY else price)
            if len(heap) > 64 and len(heap) > 4 * len(levels):
                heap[:] = [-p if side == BUY else p for p in levels]
                heapq.heapify(heap)
        level.append(oid)
        self.orders[oid] = [side, price, qty, owner]
        self.count[side] += 1

    def _take(self, oid):
        side, price, qty, owner = self.orders.pop(oid)
        levels = self.levels[side]
        level = levels[price]
        level.remove(oid)
        if not level:
            del levels[price]
        self.count[side] -= 1
        return side, price, qty, owner

    def _match(self, side, limit, qty):
        """Takes liquidity for an incoming order; limit None is any price. Returns what remains."""
        opp = 1 - side
        levels, orders = self.levels[opp], self.orders
        while qty:
            best = self.best(opp)
            if best is None or (limit is not None and (best > limit if side == BUY else best < limit)):
                break
            level = levels[best]
            while qty and level:
                maker = orders[level[0]]
                q = min(qty, maker[2])
                qty -= q
                maker[2] -= q
                self.fills += 1
                if maker[2] == 0:
                    del orders[level.popleft()]
                    self.count[opp] -= 1
            if not level:
                del levels[best]
            self.last_fill = best
            self.filled_cmd = True
        return qty

    def limit(self, oid, owner, side, price, qty, tif):
        self.filled_cmd = False
        rem = self._match(side, price, qty)
        if rem and tif == GTC:
            self._rest(oid, side, price, rem, owner)

    def market(self, side, qty, protect):
        self.filled_cmd = False
        self._match(side, protect or None, qty)

    def cancel(self, oid):
        self.filled_cmd = False
        self._take(oid)

    def move(self, oid, price):
        """exchange-core's move: same remaining quantity, new price, matched as a GTC order."""
        self.filled_cmd = False
        side, _old, qty, owner = self._take(oid)
        rem = self._match(side, price, qty)
        if rem:
            self._rest(oid, side, price, rem, owner)

    def levels_count(self):
        return len(self.levels[0]) + len(self.levels[1])


class _OldestIds:
    """Live order ids in insertion order; picks uniformly among the `window` oldest, as
    exchange-core's generator does (a move keeps an order's place)."""

    __slots__ = ("ids", "window")

    def __init__(self, window=512):
        self.ids = {}
        self.window = window

    def add(self, oid):
        self.ids[oid] = None

    def discard(self, oid):
        self.ids.pop(oid, None)

    def sync(self, orders):
        if len(self.ids) != len(orders):
            for oid in [o for o in self.ids if o not in orders]:
                del self.ids[oid]

    def pick(self, rng):
        n = min(len(self.ids), self.window)
        return next(islice(self.ids, rng.randrange(n), None)) if n else None

    def __len__(self):
        return len(self.ids)


class _LiveIds:
    """Live order ids with O(1) add, remove and uniform random pick."""

    __slots__ = ("ids", "pos")

    def __init__(self):
        self.ids = []
        self.pos = {}

    def add(self, oid):
        self.pos[oid] = len(self.ids)
        self.ids.append(oid)

    def discard(self, oid):
        i = self.pos.pop(oid, None)
        if i is None:
            return
        last = self.ids.pop()
        if last != oid:
            self.ids[i] = last
            self.pos[last] = i

    def sync(self, orders):
        """Drops ids that left the book (filled)."""
        if len(self.ids) != len(orders):
            for oid in [o for o in self.ids if o not in orders]:
                self.discard(oid)

    def pick(self, rng):
        return self.ids[rng.randrange(len(self.ids))] if self.ids else None

    def __len__(self):
        return len(self.ids)


class _Sampler:
    """Steady-state statistics of the model, sampled every `every` measured commands."""

    def __init__(self, every=256):
        self.every = every
        self.orders = []
        self.levels = []

    def maybe(self, i, model):
        if i % self.every == 0:
            self.orders.append(len(model.orders))
            self.levels.append(model.levels_count())

    def summary(self):
        if not self.orders:
            return {}
        return {
            "resting_orders_mean": round(sum(self.orders) / len(self.orders), 1),
            "resting_orders_min": min(self.orders),
            "resting_orders_max": max(self.orders),
            "price_levels_mean": round(sum(self.levels) / len(self.levels), 1),
        }


def _mix(counts, total):
    return {k: round(100.0 * v / total, 2) for k, v in counts.items()} if total else {}


# exchange-core's TestOrdersGenerator, adapted:
# - the side is a coin flip (no sliding price);
# - each side is regulated to `target/2` resting orders. While a side lacks orders a command is one
#   of 10 (2 GTC, 1 cancel, 7 moves), otherwise one of 40 (2 IOC, 1 cancel, 37 moves); before the
#   book is first full, commands are GTC only (the prefill, applied untimed);
# - GTC prices: deviation `1 + u^2 * price_dev`, offset = mean of 4 uniform draws * 2 - deviation,
#   bids at or below and asks at or above the last trade price;
# - IOC orders are limits at the far price bound (in effect market orders);
# - a move shifts an order 1% of its distance towards the last trade price (at least one tick,
#   +-1 when it is on it) and keeps its remaining quantity (amend to a new price);
# - cancels and moves pick a live order uniformly (exchange-core picks among the 512 oldest);
# - sizes 1 + r6*r6*r6 (r6 uniform in 0..5), owners uniform among `owners`.
def exchange_core(n: int, seed: int = 1, target: int = 1000, owners: int = 1000,
                  center: int = 100_000, price_dev: int = 4800, pick_window: int = 512,
                  stat_every: int = 1) -> Workload:
    rng = random.Random(seed)
    rr = rng.randrange
    rand = rng.random
    model = _Model()
    live = _OldestIds(pick_window) if pick_window else _LiveIds()
    half = target // 2
    seen = [0, 0]
    min_price, max_price = center - 5 * price_dev, center + 5 * price_dev
    last_price = center
    direction = 0
    out = []
    prefill = None
    counts = {"gtc": 0, "ioc": 0, "cancel": 0, "move": 0}
    trading = 0
    sampler = _Sampler()
    next_id = 1
    measured = 0
    while measured < n:
        side = BUY if rr(4) + direction >= 2 else SELL
        if stat_every == 1 or len(out) % stat_every == 0 or prefill is None:
            seen = model.count[:]
        lack = half - seen[side]
        grow = lack > 0
        if prefill is None and not grow:
            prefill = len(out)
            counts = dict.fromkeys(counts, 0)
            trading = 0
        fast = prefill is None or lack > min(512, half * 3 // 4)
        q = rr((2 if fast else 10) if grow else 40)
        if q < 2:
            oid = next_id
            next_id += 1
            owner = 1 + rr(owners)
            qty = 1 + rr(6) * rr(6) * rr(6)
            if grow:
                dev = 1 + int(rand() ** 2 * price_dev)
                p = (rr(dev) + rr(dev) + rr(dev) + rr(dev)) // 4 * 2 - dev
                if (p > 0) != (side == SELL):
                    p = -p
                price = last_price + p
                model.limit(oid, owner, side, price, qty, GTC)
                if oid in model.orders:
                    live.add(oid)
                cmd = (OP_LIMIT, oid, owner, side, price, qty, GTC)
                kind = "gtc"
            else:
                price = max_price if side == BUY else min_price
                model.limit(oid, owner, side, price, qty, IOC)
                cmd = (OP_LIMIT, oid, owner, side, price, qty, IOC)
                kind = "ioc"
        else:
            oid = live.pick(rng)
            if oid is None:
                continue
            if q == 2:
                model.cancel(oid)
                live.discard(oid)
                cmd = (OP_CANCEL, oid, 0, 0, 0, 0, 0)
                kind = "cancel"
            else:
                o_side, prev, qty, owner = model.orders[oid]
                if prev > last_price:
                    delta = math.floor((last_price - prev) * 0.01)
                elif prev < last_price:
                    delta = math.ceil((last_price - prev) * 0.01)
                else:
                    delta = rr(2) * 2 - 1
                price = prev + delta
                model.move(oid, price)
                cmd = (OP_AMEND, oid, owner, o_side, price, qty, 0)
                kind = "move"
        out.append(cmd)
        counts[kind] += 1
        if model.filled_cmd:
            trading += 1
            fill = model.last_fill
            last_price = min(max_price, max(min_price, fill))
            if fill <= min_price:
                direction = 1
            elif fill >= max_price:
                direction = -1
            live.sync(model.orders)
        if prefill is not None:
            measured += 1
            sampler.maybe(measured, model)
    stats = {"mix_pct": _mix(counts, measured), "trading_pct": round(100.0 * trading / max(measured, 1), 2),
             **sampler.summary(), "final_orders": len(model.orders), "owners": owners}
    return Workload("exchange_core", out, prefill or 0, seed, stats)


def insert_only(n: int, seed: int = 2, owners: int = 1000, center: int = 100_000,
                spread: int = 2000, cross_pct: float = 1.0) -> Workload:
    """GTC limits on both sides within `spread` ticks of the center; `cross_pct`% of them are
    priced a few ticks through the center and trade against the touch. The book grows to about
    n orders."""
    rng = random.Random(seed)
    rr = rng.randrange
    rand = rng.random
    out = []
    cross = cross_pct / 100.0
    for oid in range(1, n + 1):
        side = rr(2)
        if rand() < cross:
            off = -rr(4)  # at or through the far side's first levels
        else:
            off = 1 + rr(spread)
        price = center - off if side == BUY else center + off
        out.append((OP_LIMIT, oid, 1 + rr(owners), side, price, 1 + rr(100), GTC))
    stats = {"mix_pct": {"gtc": 100.0}, "crossing_pct": cross_pct, "price_levels_max": 2 * spread + 8}
    return Workload("insert_only", out, 0, seed, stats)


def matching_heavy(n: int, seed: int = 3, owners: int = 1000, center: int = 100_000,
                   target: int = 200, maker_qty: int = 200) -> Workload:
    """Takers dominate: IOC limits a few ticks through the touch, market orders (half with a
    protection price), aggressive GTC limits whose remainder rests; makers post GTC limits within
    10 ticks of the touch and refill a side that falls below `target` orders; a few cancels."""
    rng = random.Random(seed)
    rr = rng.randrange
    rand = rng.random
    model = _Model()
    live = _LiveIds()
    out = []
    counts = {"maker_gtc": 0, "aggressive_gtc": 0, "ioc": 0, "market": 0, "cancel": 0}
    trading = 0
    sampler = _Sampler()
    next_id = 1
    prefill = None
    measured = 0
    last = center
    while measured < n:
        if prefill is None and model.count[0] >= target and model.count[1] >= target:
            prefill = len(out)
        r = rand()
        side = rr(2)
        opp = 1 - side
        if prefill is None or r < 0.30 or model.count[opp] < target // 4:
            # maker: refill the thinner side first
            if prefill is None or model.count[opp] < target // 4:
                side = BUY if model.count[BUY] <= model.count[SELL] else SELL
            opp_best = model.best(1 - side)
            own_best = model.best(side)
            ref = own_best if own_best is not None else (last - 1 if side == BUY else last + 1)
            if opp_best is not None:
                ref = min(ref, opp_best - 1) if side == BUY else max(ref, opp_best + 1)
            off = rr(10) if rand() < 0.8 else rr(40)
            price = ref - off if side == BUY else ref + off
            if own_best is not None and rand() < 0.3 and opp_best is not None and abs(opp_best - own_best) > 1:
                price = own_best + 1 if side == BUY else own_best - 1  # improve the touch
            oid = next_id
            next_id += 1
            owner = 1 + rr(owners)
            qty = 1 + rr(maker_qty)
            model.limit(oid, owner, side, price, qty, GTC)
            if oid in model.orders:
                live.add(oid)
            cmd = (OP_LIMIT, oid, owner, side, price, qty, GTC)
            kind = "maker_gtc"
        elif r < 0.35 and len(live):
            oid = live.pick(rng)
            model.cancel(oid)
            live.discard(oid)
            cmd = (OP_CANCEL, oid, 0, 0, 0, 0, 0)
            kind = "cancel"
        else:
            oid = next_id
            next_id += 1
            owner = 1 + rr(owners)
            best = model.best(opp)
            depth = rr(4)
            price = best + depth if side == BUY else best - depth
            if r < 0.62:
                qty = 1 + rr(90)
                model.limit(oid, owner, side, price, qty, IOC)
                cmd = (OP_LIMIT, oid, owner, side, price, qty, IOC)
                kind = "ioc"
            elif r < 0.80:
                qty = 1 + rr(90)
                protect = price if rand() < 0.5 else 0
                model.market(side, qty, protect)
                cmd = (OP_MARKET, oid, owner, side, protect, qty, IOC)
                kind = "market"
            else:
                qty = 1 + rr(90)
                model.limit(oid, owner, side, price, qty, GTC)
                if oid in model.orders:
                    live.add(oid)
                cmd = (OP_LIMIT, oid, owner, side, price, qty, GTC)
                kind = "aggressive_gtc"
        out.append(cmd)
        if model.filled_cmd:
            last = model.last_fill
            live.sync(model.orders)
        if prefill is not None:
            counts[kind] += 1
            trading += model.filled_cmd
            measured += 1
            sampler.maybe(measured, model)
    stats = {"mix_pct": _mix(counts, measured), "trading_pct": round(100.0 * trading / max(measured, 1), 2),
             "fills_per_command": round(model.fills / max(len(out), 1), 2),
             **sampler.summary(), "final_orders": len(model.orders), "owners": owners}
    return Workload("matching_heavy", out, prefill or 0, seed, stats)


GENERATORS = {"exchange_core": exchange_core, "insert_only": insert_only, "matching_heavy": matching_heavy}


def generate(name: str, n: int, seed: int | None = None) -> Workload:
    gen = GENERATORS[name]
    return gen(n) if seed is None else gen(n, seed=seed)


def pack(commands) -> array:
    """7-tuples -> array('q') in `apply`'s layout."""
    buf = array("q")
    for cmd in commands:
        buf.extend(cmd)
    return buf


def unpack(buf: array) -> list:
    it = iter(buf)
    return list(zip(*[it] * COMMAND_FIELDS))


def _source_tag() -> str:
    """Changes whenever this file does, so a cached stream never outlives its generator."""
    with open(__file__, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()[:10]


def stream_path(directory: str, name: str, n: int, seed: int | None = None) -> str:
    tag = "default" if seed is None else str(seed)
    return os.path.join(directory, f"{name}-n{n}-s{tag}-{_source_tag()}.bin")


def load_or_generate(directory: str, name: str, n: int, seed: int | None = None) -> tuple[Workload, str]:
    """Returns the workload and the path of its binary file (int64 records, `apply`'s layout,
    with a JSON sidecar holding prefill and stats). Generated once, then read back."""
    path = stream_path(directory, name, n, seed)
    meta_path = path[:-4] + ".json"
    if os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        buf = array("q")
        with open(path, "rb") as f:
            buf.frombytes(f.read())
        if len(buf) == meta["commands"] * COMMAND_FIELDS:
            return Workload(name, unpack(buf), meta["prefill"], meta["seed"], meta["stats"]), path
    wl = generate(name, n, seed)
    os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        pack(wl.commands).tofile(f)
    os.replace(tmp, path)
    with open(meta_path, "w") as f:
        json.dump({"name": name, "commands": len(wl.commands), "prefill": wl.prefill, "seed": wl.seed,
                   "stats": wl.stats, "generator": _source_tag()}, f, indent=1)
    return wl, path


if __name__ == "__main__":  # quick look: python -m bench.workloads [n]
    import sys
    import time

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    for wname in WORKLOADS:
        t = time.perf_counter()
        w = generate(wname, count)
        print(f"{wname}: {len(w.commands)} commands ({w.prefill} prefill) in {time.perf_counter() - t:.1f}s")
        print("  ", json.dumps(w.stats))
