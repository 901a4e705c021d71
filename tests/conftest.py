"""Fixtures shared by all tests. The database comes from pytest-django (`db`, `django_db`)."""
import pytest
import redis
from django.conf import settings

# The tests own this Redis database number; the application's data stays in the one of REDIS_URL.
TEST_REDIS_DB = 15


@pytest.fixture
def redis_client():
    """A client of the Redis in REDIS_URL on the tests' own database, empty at the start of the test."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.connection_pool.connection_kwargs["db"] = TEST_REDIS_DB  # before any connection is made
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


# ---------- trading ----------

@pytest.fixture
def reference_data(db):
    """Assets and default instruments (a transactional test's flush removes what migrations seeded)."""
    from accounts.services import create_default_assets
    from matching.services import create_default_instruments

    create_default_assets()
    create_default_instruments()


@pytest.fixture
def books_balance(reference_data):
    """Checks after the test that the ledger balances and every margin adds up (check_ledger)."""
    yield
    from matching.selectors import book_problems

    assert book_problems() == []


@pytest.fixture
def engine_streams(settings):
    """Streams of the test's own, deleted afterwards; requests do not wait for an engine."""
    import uuid

    from matching import streams

    settings.ENGINE_STREAM_PREFIX = f"test-engine-{uuid.uuid4().hex[:10]}"
    settings.ENGINE_REPLY_TIMEOUT = 0
    yield settings.ENGINE_STREAM_PREFIX
    client = streams.client()
    keys = list(client.scan_iter(f"{settings.ENGINE_STREAM_PREFIX}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def engine(db, engine_streams, books_balance):
    """An engine in this process; `settle(engine)` applies everything stored so far."""
    from matching.engine import Engine

    engine = Engine()
    engine.rebuild()
    return engine


def settle(engine) -> None:
    while engine.apply_stored():
        pass


def connections_waiting_for_a_lock(count: int) -> bool:
    """Whether `count` connections are waiting for a lock, within 10 s: the moment a race test's
    competitors are both blocked on the row it holds."""
    import time

    from django.db import connection

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            # a transaction sees pg_stat_activity as it first read it, unless told to read it again
            cursor.execute("SELECT pg_stat_clear_snapshot()")
            cursor.execute("SELECT count(*) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0] >= count:
                return True
        time.sleep(0.02)
    return False


def retry_while_first_try_commits(monkeypatch, target, name: str, request) -> dict:
    """Runs request() twice at once: a first try that stops inside target.<name> (in its
    transaction, after taking its locks), and a retry started then, which waits for a lock the
    first holds; once it waits, the first goes on. Returns {"first": ..., "retry": ...}, each a
    result or the exception raised."""
    import threading

    from django.db import connections

    original, inside, release = getattr(target, name), threading.Event(), threading.Event()

    def first_try_stops_here(*args, **kwargs):
        result = original(*args, **kwargs)
        if threading.current_thread().name == "first":
            inside.set()
            release.wait(10)
        return result

    monkeypatch.setattr(target, name, first_try_stops_here)
    answers = {}

    def run():
        try:
            answers[threading.current_thread().name] = request()
        except Exception as error:  # noqa: BLE001 - the answer under test
            answers[threading.current_thread().name] = error
        finally:
            connections.close_all()

    first = threading.Thread(target=run, name="first")
    first.start()
    assert inside.wait(10)
    retry = threading.Thread(target=run, name="retry")
    retry.start()
    assert connections_waiting_for_a_lock(1)
    release.set()
    first.join()
    retry.join()
    return answers


@pytest.fixture
def make_trader(db, books_balance):
    """make_trader(usdt="100000", xbt="1") -> a new user's main account, funded through the faucet."""
    from decimal import Decimal

    from django.contrib.auth.models import User

    from accounts.services import deposit, main_account

    counter = iter(range(1, 10**6))

    def make(usdt="100000", xbt="1", name=None):
        user = User.objects.create_user(name or f"trader{next(counter)}")  # no password: tests log in with force_login
        account = main_account(user)
        for asset, amount in (("USDT", usdt), ("XBT", xbt)):
            if Decimal(amount):
                deposit(account=account, asset=asset, amount=Decimal(amount))
        return account

    return make
