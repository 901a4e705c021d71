import logging

from celery import shared_task

from matching.selectors import book_problems

log = logging.getLogger(__name__)


@shared_task
def audit_books() -> int:
    """The periodic check_ledger: logs every way the books disagree; returns how many."""
    problems = book_problems()
    for problem in problems:
        log.error("books: %s", problem)
    return len(problems)
