"""Celery tasks of copy trading: thin, ids in, a service does the work."""
from celery import shared_task

from copytrade import services


# A failed copy is tried again: its chunks already stored are found by their clOrdIDs, and the
# rest are stored (a task that raises is acknowledged, so the broker would not deliver it again).
# The engine sends these after each leader fill and never reads their results: no result is kept,
# and sending one does not subscribe to its result first (a round trip to Redis per task).
@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=1, retry_backoff_max=10, max_retries=5,
             ignore_result=True)
def fan_out(execution_ids: list[int]) -> None:
    services.copy_leader_executions(execution_ids=execution_ids)


@shared_task(acks_late=True)
def copy_missed_executions() -> int:
    return services.copy_missed_executions()


@shared_task(acks_late=True, ignore_result=True)
def record_leader_stats(execution_ids: list[int]) -> None:
    services.record_leader_executions(execution_ids=execution_ids)


@shared_task(acks_late=True)
def settle_profit_shares() -> int:
    return services.settle_all_profit_shares()


@shared_task(acks_late=True)
def check_equity_stops() -> int:
    return services.check_equity_stops()


@shared_task(acks_late=True)
def close_stopped_copies() -> int:
    return services.close_stopped_copies()
