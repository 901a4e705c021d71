"""Applications to lead that arrive at the same moment: the unique indexes decide, and the one that
loses is told why, as it would be had it come second."""
import threading

import pytest
from django.db import connections, transaction

from accounts.models import Account
from copytrade import services
from copytrade.models import Leader, LeaderStats
from copytrade.services import CopyRejected
from tests.conftest import connections_waiting_for_a_lock


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("names, one_user, refusal", [
    (("Twin Whale", "Twin Whale"), False, "that name is taken"),
    (("Twin Whale", "TWIN WHALE"), False, "that name is taken"),  # names are unique whatever their case
    (("First Whale", "Second Whale"), True, "you already lead"),
])
def test_two_applications_at_once_make_one_leader(make_trader, names, one_user, refusal):
    accounts = [make_trader()] * 2 if one_user else [make_trader(), make_trader()]
    outcomes = []

    def apply(account, name):
        try:
            services.apply_to_lead(user=account.user, display_name=name)
            outcomes.append("leads")
        except CopyRejected as error:
            outcomes.append(str(error))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=apply, args=pair) for pair in zip(accounts, names)]
    with transaction.atomic():
        # both applications find no such leader, then wait: one for these rows (its foreign key's
        # check as it commits), the other for the first's index entry
        list(Account.objects.select_for_update().filter(pk__in=[a.pk for a in accounts]))
        for t in threads:
            t.start()
        assert connections_waiting_for_a_lock(2)
    for t in threads:
        t.join()
    assert sorted(outcomes) == sorted(["leads", refusal])
    assert Leader.objects.count() == LeaderStats.objects.count() == 1
