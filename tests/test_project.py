"""The project as a whole: configuration from the environment, the services it needs, its pages."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.conf import settings
from django.db import connection

from matching.selectors import demo_book_depth

REPO = Path(__file__).resolve().parent.parent


def run_python(code: str, **env: str | None) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter at the repository root, with env on top of ours."""
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env}
    for name in [name for name, value in environment.items() if value is None]:
        del environment[name]
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=120)


PRINT_SETTINGS = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "db": [db["ENGINE"], db["NAME"], db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]],
    "channels": settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"],
    "broker": settings.CELERY_BROKER_URL,
    "backend": settings.CELERY_RESULT_BACKEND,
}))
"""


def test_settings_take_database_and_redis_from_their_urls():
    result = run_python(PRINT_SETTINGS, DATABASE_URL="postgres://alice:s3cret@db.internal:6543/trades",
                        REDIS_URL="redis://cache.internal:6380/2")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "db": ["django.db.backends.postgresql", "trades", "alice", "s3cret", "db.internal", 6543],
        "channels": ["redis://cache.internal:6380/2"],
        "broker": "redis://cache.internal:6380/2",
        "backend": "redis://cache.internal:6380/2",
    }


@pytest.mark.django_db
def test_djangos_connections_run_without_the_jit_compiler_keeping_options_of_their_url():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone() == ("off",)
    print_options = "import json; from django.conf import settings; print(json.dumps(settings.DATABASES['default']['OPTIONS']))"

    def options(url: str, jit: str | None = None) -> dict:
        result = run_python(print_options, DATABASE_URL=url, DATABASE_JIT=jit)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    url = "postgres://alice@db.internal/trades"
    assert options(f"{url}?options=-c%20work_mem%3D64MB")["options"] == "-c work_mem=64MB -c jit=off"
    assert options(f"{url}?options=-c%20work_mem%3D64MB&options=-c%20lock_timeout%3D5s")["options"] == (
        "-c work_mem=64MB -c lock_timeout=5s -c jit=off")
    assert "options" not in options(url, jit="server")  # behind a pooler that refuses startup options
    for name, value in (("DATABASE_JIT", "maybe"), ("DATABASE_PREPARE_THRESHOLD", "often")):
        refused = run_python(print_options, DATABASE_URL=url, **{name: value})
        assert refused.returncode != 0 and f"{name} must be" in refused.stderr


def test_celery_reaches_a_redis_socket_by_kombus_scheme():
    result = run_python(PRINT_SETTINGS, DATABASE_URL="postgres://alice@db.internal/trades",
                        REDIS_URL="unix:///run/followtrade/redis.sock")
    assert result.returncode == 0, result.stderr
    configured = json.loads(result.stdout)
    assert configured["channels"] == ["unix:///run/followtrade/redis.sock"]
    assert configured["broker"] == configured["backend"] == "redis+socket:///run/followtrade/redis.sock"


def test_a_database_other_than_postgresql_is_refused():
    result = run_python(PRINT_SETTINGS, DATABASE_URL="mysql://alice@db.internal/trades",
                        REDIS_URL="redis://cache.internal:6380/2")
    assert result.returncode != 0
    assert "DATABASE_URL must point to PostgreSQL" in result.stderr


def test_celery_app_reads_the_django_settings():
    from config import celery_app

    assert celery_app.conf.broker_url == settings.CELERY_BROKER_URL
    assert celery_app.conf.task_acks_late is True
    assert celery_app.conf.task_reject_on_worker_lost is True
    assert celery_app.conf.worker_prefetch_multiplier == 1


@pytest.mark.django_db
def test_the_database_is_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version_num')::int")
        assert cursor.fetchone()[0] >= 140000


def test_redis_answers_ping_at_redis_url():
    with redis.Redis.from_url(settings.REDIS_URL) as client:
        assert client.ping() is True


def test_redis_client_fixture_uses_its_own_database(redis_client):
    redis_client.set("followtrade:probe", "1")
    with redis.Redis.from_url(settings.REDIS_URL) as application_client:
        assert application_client.connection_pool.connection_kwargs.get("db", 0) != 15
        assert application_client.get("followtrade:probe") is None
    assert redis_client.get("followtrade:probe") == b"1"


def test_channel_layer_carries_a_message_through_redis():
    from channels.layers import get_channel_layer

    layer = get_channel_layer()

    async def round_trip():
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "probe", "n": 1})
        return await layer.receive(channel)

    assert async_to_sync(round_trip)() == {"type": "probe", "n": 1}


@pytest.mark.django_db
def test_healthz_reports_database_and_redis_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "redis": "ok"}


@pytest.mark.django_db
def test_healthz_fails_when_redis_is_unreachable(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "ok"
    assert response.json()["redis"].startswith("error")


def test_demo_book_is_a_sorted_uncrossed_ladder_with_fills():
    book = demo_book_depth()
    bid_prices = [level.price for level in book.bids]
    ask_prices = [level.price for level in book.asks]
    assert bid_prices == sorted(bid_prices, reverse=True) and len(set(bid_prices)) == len(bid_prices)
    assert ask_prices == sorted(ask_prices) and len(set(ask_prices)) == len(ask_prices)
    assert bid_prices[0] < ask_prices[0]
    assert all(level.qty > 0 and level.orders > 0 for level in book.bids + book.asks)
    assert book.fills, "some demo orders cross the spread"
    assert demo_book_depth() == book, "the demo is deterministic"


@pytest.mark.django_db
def test_home_page_shows_the_depth_table_and_fills(client):
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Followtrade" in page
    assert '<table id="depth"' in page and '<table id="fills"' in page
    book = demo_book_depth()
    assert f'<td class="bid">{book.bids[0].price:,.1f}</td>' in page
    assert f'<td class="ask">{book.asks[0].price:,.1f}</td>' in page


def test_asgi_application_serves_static_files():
    from config.asgi import application

    async def get(path):
        scope = {"type": "http", "method": "GET", "path": path, "query_string": b"", "headers": []}
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b""})
        start, body = await communicator.receive_output(5), b""
        while True:
            message = await communicator.receive_output(5)
            body += message.get("body", b"")
            if not message.get("more_body"):
                return start["status"], body

    status, body = async_to_sync(get)("/static/css/site.css")
    assert status == 200
    assert b".bid" in body


EMBEDDED_PROBE = """
import json, psutil, psycopg, redis
from config import embedded
database_url, redis_url = embedded.postgres_url(), embedded.redis_url()
with psycopg.connect(database_url) as conn:
    database, postmaster = conn.execute("SELECT current_database(), pg_postmaster_start_time()::text").fetchone()
with redis.Redis.from_url(redis_url) as client:
    redis_pid = client.info("server")["process_id"]
print(json.dumps([database_url, redis_url, database, postmaster, redis_pid]))
"""


@pytest.fixture
def embedded_data_dir():
    folder = tempfile.mkdtemp(prefix="ft-embedded-")  # short: Unix socket paths are limited
    yield folder
    run_python("from config import embedded; embedded.stop()", FOLLOWTRADE_DATA_DIR=folder,
               DATABASE_URL=None, REDIS_URL=None)
    shutil.rmtree(folder, ignore_errors=True)


def test_embedded_servers_start_once_and_are_shared_by_every_process(embedded_data_dir):
    def probe():
        result = run_python(EMBEDDED_PROBE, FOLLOWTRADE_DATA_DIR=embedded_data_dir,
                            DATABASE_URL=None, REDIS_URL=None)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    with ThreadPoolExecutor(3) as pool:  # three processes starting at once
        together = list(pool.map(lambda _: probe(), range(3)))
    later = probe()  # and one after they have exited

    database_url, redis_url, database, _, _ = later
    assert database == "followtrade"
    assert embedded_data_dir in database_url
    assert redis_url.startswith("unix://") and embedded_data_dir in redis_url
    assert all(seen == later for seen in together), "one PostgreSQL and one Redis for all"


@pytest.mark.django_db(transaction=True)
def test_a_worker_keeps_its_database_connection_between_tasks_until_it_is_too_old():
    """Celery's Django fix-up would close it after every task; the workers keep it for CONN_MAX_AGE
    (the Procfile gives them 600 s), so a copy fan-out does not start on a new PostgreSQL backend."""
    from types import SimpleNamespace

    from celery.fixups.django import DjangoWorkerFixup
    from celery.signals import task_postrun, task_prerun

    from config.celery import app

    fixup = DjangoWorkerFixup(app)  # what a worker installs around every task

    class Task:
        def __init__(self, eager: bool):
            self.request = SimpleNamespace(is_eager=eager)

    def backend_after_a_task(max_age: int, eager: bool = False) -> tuple[int, int | None]:
        connection.close()
        connection.settings_dict["CONN_MAX_AGE"] = max_age
        connection.ensure_connection()
        before = connection.connection.info.backend_pid
        task = Task(eager)
        fixup.on_task_prerun(sender=task)
        task_prerun.send(sender=task, task_id="t", task=task)
        fixup.on_task_postrun(sender=task)
        task_postrun.send(sender=task, task_id="t", task=task)
        return before, connection.connection.info.backend_pid if connection.connection else None

    saved = connection.settings_dict["CONN_MAX_AGE"]
    try:
        kept, again = backend_after_a_task(600)
        assert again == kept
        assert backend_after_a_task(0)[1] is None  # Django's default: one connection per task
        kept, again = backend_after_a_task(0, eager=True)  # inside the caller's own request: left alone
        assert again == kept
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = saved
        connection.close()


def test_the_engine_connects_to_the_celery_broker_as_it_starts(engine, monkeypatch):
    """The first task a process sends connects it to the broker (30-35 ms) and declares its queue: the
    engine does that as it starts, not at the first leader fill; a broker that is down does not
    stop it. The tasks it sends keep no result, so sending one does not subscribe to it first."""
    from copytrade.tasks import fan_out, record_leader_stats

    calls, declared = [], []

    class Connection:
        def ensure_connection(self, **options):
            calls.append(options)
            if len(calls) > 1:
                raise ConnectionRefusedError("the broker is down")

    class Producer:
        connection = Connection()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def maybe_declare(self, queue):
            declared.append(queue.name)

    monkeypatch.setattr(fan_out.app, "producer_or_acquire", lambda *args, **kwargs: Producer())
    for _ in range(2):  # connected, then refused: the engine goes on either way
        engine.run(stop=lambda: True)
    assert calls == [{"max_retries": 0}] * 2
    assert declared == ["fanout", "celery"]  # the queues of fan_out and record_leader_stats, once
    assert fan_out.ignore_result and record_leader_stats.ignore_result


@pytest.mark.django_db(transaction=True)
def test_a_pool_process_connects_to_the_database_as_it_starts_where_connections_are_kept():
    from config.celery import connect_to_the_database

    saved = connection.settings_dict["CONN_MAX_AGE"]
    try:
        for max_age, connected in ((600, True), (0, False)):
            connection.close()
            connection.settings_dict["CONN_MAX_AGE"] = max_age
            connect_to_the_database()
            assert (connection.connection is not None) is connected
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = saved
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_pool_process_does_the_fan_outs_one_time_work_as_it_starts(reference_data, caplog, monkeypatch):
    """Its Redis client, the order keys' sequence step and the fan-out's reads, in autocommit and
    bounded in time; again when the connection is renewed after a task; never an error."""
    from psycopg.pq import TransactionStatus

    from config.celery import _connect_again_if_closed, connect_to_the_database
    from copytrade import services as copy_services
    from matching import persistence, streams
    from matching.models import Order

    ran = []
    real_warm_up = copy_services.warm_up_fan_out
    monkeypatch.setattr(copy_services, "warm_up_fan_out", lambda: ran.append(1) or real_warm_up())
    saved = connection.settings_dict["CONN_MAX_AGE"]
    try:
        connection.close()
        connection.settings_dict["CONN_MAX_AGE"] = 600
        streams.client().close()
        streams.client.cache_clear()
        persistence._id_step.cache_clear()
        persistence._spare_ids.clear()
        caplog.clear()
        connect_to_the_database()
        assert ran == [1] and "could not prepare" not in caplog.text
        assert streams.client.cache_info().currsize == 1
        assert persistence._id_step.cache_info().currsize == 1  # the step of matching_order's keys
        step = persistence._id_step("matching_order")
        assert len(persistence._spare_ids["matching_order"]) == step - 1  # kept for this process's orders
        assert connection.get_autocommit()
        assert connection.connection.info.transaction_status == TransactionStatus.IDLE
        assert not Order.objects.exists()

        _connect_again_if_closed()  # still connected after a task: nothing to do
        assert ran == [1]
        connection.close()  # as close_old_connections does once the connection is CONN_MAX_AGE old
        _connect_again_if_closed()
        assert ran == [1, 1] and connection.connection is not None

        def broken():
            raise redis.ConnectionError("no Redis yet")

        monkeypatch.setattr(copy_services, "warm_up_fan_out", broken)
        caplog.clear()
        connect_to_the_database()  # the first task does it then, as it would have anyway
        assert "could not prepare for the first task" in caplog.text
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = saved
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_the_fan_outs_warm_up_gives_up_on_a_locked_table(reference_data):
    """A pool process must be up within 4 s: a table locked by a migration fails the warm-up fast."""
    import threading
    import time

    from django.db import connections

    from copytrade import services as copy_services

    locked, release = threading.Event(), threading.Event()

    def lock_follows():
        with connections["default"].cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("LOCK TABLE copytrade_follow IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(10)
            cursor.execute("ROLLBACK")
        connections.close_all()

    holder = threading.Thread(target=lock_follows)
    holder.start()
    try:
        assert locked.wait(5)
        started = time.monotonic()
        with pytest.raises(Exception, match="timeout"):
            copy_services.warm_up_fan_out()
        assert time.monotonic() - started < 2
        assert connection.get_autocommit()  # rolled back, nothing left open
    finally:
        release.set()
        holder.join()
