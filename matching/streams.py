"""The Redis side of the order path: one command stream per symbol, and replies to waiting requests.

The stream only carries ids: the database holds every command, so a lost or repeated stream
entry can delay a command but never lose or duplicate it (the engine also sweeps for commands
whose entry never arrived).
"""
from functools import lru_cache

import redis
from django.conf import settings

GROUP = "engine"
STREAM_MAXLEN = 200_000
REPLY_TTL_SECONDS = 30


@lru_cache(maxsize=1)
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def stream_key(symbol: str) -> str:
    return f"{settings.ENGINE_STREAM_PREFIX}:{symbol}"


def reply_key(kind: str, pk: int) -> str:
    return f"{settings.ENGINE_STREAM_PREFIX}:reply:{kind}:{pk}"


def send_commands(symbol: str, entries: list[tuple[str, int]], reply: bool = False) -> None:
    """Appends ("order", pk) or ("command", pk) entries to the symbol's stream, in order.

    With reply, the engine wakes whoever waits for them (wait_for_engine)."""
    pipe = client().pipeline(transaction=False)
    fields = {"reply": 1} if reply else {}
    for kind, pk in entries:
        pipe.xadd(stream_key(symbol), {"kind": kind, "id": pk, **fields}, maxlen=STREAM_MAXLEN, approximate=True)
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
