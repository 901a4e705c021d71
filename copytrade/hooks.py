"""Hands a committed engine batch's leader executions to the fan-out (after the commit)."""
import logging
import time

from django.dispatch import receiver

from copytrade.models import Leader
from matching.signals import batch_committed, engine_started

log = logging.getLogger(__name__)

LEADERS_TTL = 2.0  # seconds: a new leader's fills are copied at most this long after applying
_leaders = {"accounts": frozenset(), "loaded": 0.0}


def leader_accounts() -> frozenset:
    if time.monotonic() - _leaders["loaded"] > LEADERS_TTL:
        _leaders["accounts"] = frozenset(Leader.objects.filter(status=Leader.Status.ACTIVE)
                                         .values_list("account_id", flat=True))
        _leaders["loaded"] = time.monotonic()
    return _leaders["accounts"]


def forget_leaders() -> None:
    """A new or closed leader counts at once in this process (other processes within LEADERS_TTL)."""
    _leaders["loaded"] = 0.0


@receiver(batch_committed, dispatch_uid="copytrade.fan_out")
def fan_out_leader_executions(sender, batch, **kwargs) -> None:
    leaders = leader_accounts()
    ids = [pk for pk, row in zip(batch.execution_ids, batch.executions) if row.account_id in leaders]
    if ids:
        from copytrade.tasks import fan_out, record_leader_stats

        fan_out.delay(ids)
        record_leader_stats.delay(ids)


@receiver(engine_started, dispatch_uid="copytrade.connect_to_broker")
def connect_to_broker(sender, **kwargs) -> None:
    """What the first task a process sends does once, done as the engine starts, not at the first
    leader fill after it: connect to the broker (30-35 ms), load the result backend (10-14 ms:
    Celery scans the installed packages' entry points, even for a task whose result is ignored)
    and the message sender (8 ms), and declare the tasks' queues (5 ms)."""
    from copytrade.tasks import fan_out, record_leader_stats

    app = fan_out.app
    try:
        app.backend, app.amqp.send_task_message  # noqa: B018 (lazy properties: reading one loads it)
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=0)  # one attempt
            for task in (fan_out, record_leader_stats):
                producer.maybe_declare(app.amqp.router.route({}, task.name)["queue"])
    except Exception:  # the first fan-out connects, as before
        log.warning("could not connect to the Celery broker yet", exc_info=True)
