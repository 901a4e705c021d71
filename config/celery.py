"""The Celery app: `celery -A config worker` and `celery -A config beat`."""
import logging
import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init

from config.heap import freeze_long_lived

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@worker_process_init.connect
def _freeze_heap(**kwargs) -> None:
    """A fan-out of ten thousand copies makes as many objects of each kind; without this the collector
    walks all of Django at every few hundred of them (10,000 followers: 0.70-0.84 s to copy, 0.48-0.52 s
    with it)."""
    freeze_long_lived()


@worker_init.connect
def _connect_pool_processes_once_started(**kwargs) -> None:
    """Connected here, as the worker starts, so that they run after the handlers Celery's Django
    fix-up connects at that moment: the one that closes every connection a pool process inherits,
    and the one that closes a connection every CELERY_DB_REUSE_MAX tasks."""
    worker_process_init.connect(connect_to_the_database, dispatch_uid="config.celery.connect_to_the_database")
    task_postrun.connect(_connect_again_if_closed, dispatch_uid="config.celery.connect_again_if_closed")


def _ran_eagerly(task) -> bool:
    """A task run inside the caller's own request or transaction, not by a worker."""
    return getattr(getattr(task, "request", None), "is_eager", False)


def _connect_again_if_closed(sender=None, **kwargs) -> None:
    """A connection closed after a task (older than CONN_MAX_AGE, broken, or Celery's recycling) is
    opened and prepared again at once, between tasks, not by the next one."""
    if _ran_eagerly(sender):
        return
    from django.db import connection

    if connection.connection is None:
        connect_to_the_database()


def connect_to_the_database(**kwargs) -> None:
    """A pool process opens its database connection as it starts, not in its first task: a leader's
    first fill after a start waited 13 ms for it. What the fan-out does once in a process and a
    database session is done here too (copytrade.services.warm_up_fan_out): a first fill of 1,000
    copies took 146-162 ms without it, 134-136 ms with it, later fills 114-120 ms. Again whenever
    the connection is renewed. Only where connections are kept between tasks (CONN_MAX_AGE, as the
    Procfile runs the workers): otherwise each task opens its own."""
    from django.db import connection

    if connection.settings_dict.get("CONN_MAX_AGE") == 0:
        return
    try:
        connection.ensure_connection()
        from copytrade.services import warm_up_fan_out

        warm_up_fan_out()
    except Exception:  # the first task connects, as it would have anyway
        logging.getLogger(__name__).warning("could not prepare for the first task", exc_info=True)


@task_prerun.connect
@task_postrun.connect
def _drop_old_connections(sender=None, **kwargs) -> None:
    """Before and after each task, as around each web request: a connection older than CONN_MAX_AGE,
    or broken, is closed and the next query opens one (settings: CELERY_DB_REUSE_MAX, so that Celery
    itself closes it only every 500 tasks). Not for a task run eagerly inside the caller's own
    request or transaction."""
    if _ran_eagerly(sender):
        return
    from django.db import close_old_connections

    close_old_connections()
