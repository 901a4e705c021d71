"""The Redis side of the order path: one command stream per symbol, and replies to waiting requests.

The stream only carries ids: the database holds every command, so a lost or repeated stream
entry can delay a command but never lose or duplicate it (the engine also sweeps for commands
whose entry never arrived). An entry names one kind and up to IDS_PER_ENTRY ids, in order
(`{"kind": "order", "id": "12,13,14"}`): a copy fan-out of thousands of orders is a few entries.
"""
from functools import lru_cache

import redis
from django.conf import settings

GROUP = "engine"
STREAM_MAXLEN = 200_000
REPLY_TTL_SECONDS = 30
IDS_PER_ENTRY = 250


@lru_cache(maxsize=1)
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@lru_cache(maxsize=1)
def _engine_client() -> redis.Redis:
    """A client whose XREADGROUP replies stay as Redis sent them: turning every entry's fields into
    a dict costs the engine more than reading them."""
    engine_client = redis.Redis.from_url(settings.REDIS_URL)
    engine_client.set_response_callback("XREADGROUP", lambda response, **options: response)
    return engine_client


def read_entries(consumer: str, keys: dict[str, str], count: int, block: int | None = None) -> list[tuple]:
    """Reads from the streams as the engine's consumer: (stream, entry id, kind, pks, wants a reply)
    for each entry, in stream order. An entry without valid ids keeps its place, with no pks, so
    that it is acknowledged and dropped."""
    reply = _engine_client().xreadgroup(GROUP, consumer, keys, count=count, block=block)
    if not reply:
        return []
    entries = []
    for stream, items in (reply.items() if isinstance(reply, dict) else reply):  # RESP3 map or RESP2 pairs
        stream = stream.decode() if isinstance(stream, bytes) else stream
        for entry_id, fields in items:
            values = dict(zip(fields[::2], fields[1::2])) if fields else {}
            try:
                pks = [int(pk) for pk in values.get(b"id", b"").split(b",")]
            except ValueError:
                pks = []
            entries.append((stream, entry_id, values.get(b"kind", b"").decode(), pks, b"reply" in values))
    return entries


def unread(keys: list[str]) -> int:
    """How many entries the streams hold: an applied entry is deleted, so these are still to come."""
    pipe = client().pipeline(transaction=False)
    for key in keys:
        pipe.xlen(key)
    return sum(pipe.execute())


def stream_key(symbol: str) -> str:
    return f"{settings.ENGINE_STREAM_PREFIX}:{symbol}"


def reply_key(kind: str, pk: int) -> str:
    return f"{settings.ENGINE_STREAM_PREFIX}:reply:{kind}:{pk}"


def send_commands(symbol: str, entries: list[tuple[str, int]], reply: bool = False) -> None:
    """Appends ("order", pk) or ("command", pk) entries to the symbol's stream, in order; a run of
    one kind shares stream entries.

    With reply, the engine wakes whoever waits for them (wait_for_engine). The entries go in one
    MULTI/EXEC: an engine blocked on the stream would otherwise wake at the first of them and
    take a thousand copies as two batches."""
    pipe = client().pipeline(transaction=True)
    fields = {"reply": 1} if reply else {}
    runs: list[tuple[str, list[int]]] = []
    for kind, pk in entries:
        if runs and runs[-1][0] == kind and len(runs[-1][1]) < IDS_PER_ENTRY:
            runs[-1][1].append(pk)
        else:
            runs.append((kind, [pk]))
    for kind, pks in runs:
        pipe.xadd(stream_key(symbol), {"kind": kind, "id": ",".join(map(str, pks)), **fields},
                  maxlen=STREAM_MAXLEN, approximate=True)
    try:
        pipe.execute()
    except redis.RedisError:
        # the engine's sweep finds stored commands whose entry never arrived
        pass


def wait_for_engine(kind: str, pk: int, timeout: float) -> bool:
    """Blocks until the engine has applied this order or command, at most timeout seconds."""
    if timeout <= 0:
        return False
    try:
        return client().blpop([reply_key(kind, pk)], timeout=timeout) is not None
    except redis.RedisError:
        return False


def notify_applied(entries) -> None:
    """Wakes the requests waiting for these ("order" | "command", pk) entries."""
    pipe = client().pipeline(transaction=False)
    for kind, pk in entries:
        key = reply_key(kind, pk)
        pipe.rpush(key, 1)
        pipe.expire(key, REPLY_TTL_SECONDS)
    pipe.execute()
