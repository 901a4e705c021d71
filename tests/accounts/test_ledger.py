import threading
import uuid
from decimal import Decimal as D

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction

from accounts import services
from accounts.models import Account, Balance, CashMovement, LedgerEntry, SystemAccount
from accounts.selectors import ledger_problems
from accounts.services import InsufficientBalance, RequestIdReused
from tests.conftest import connections_waiting_for_a_lock, retry_while_first_try_commits


def balance(account, asset="USDT"):
    return Balance.objects.get(account=account, asset_id=asset).amount


@pytest.mark.django_db
def test_a_deposit_is_two_ledger_entries_that_sum_to_zero(make_trader):
    account = make_trader(usdt="0", xbt="0")
    movement = services.deposit(account=account, asset="USDT", amount=D("250.5"))
    entries = LedgerEntry.objects.filter(transaction=movement.transaction)
    assert sorted(e.amount for e in entries) == [D("-250.5"), D("250.5")]
    assert entries.get(amount__lt=0).account == services.system_account(SystemAccount.EXTERNAL)
    assert balance(account) == D("250.5")


@pytest.mark.django_db
def test_a_retried_deposit_request_is_credited_once(make_trader):
    account = make_trader(usdt="0", xbt="0")
    request_id = uuid.uuid4()
    first = services.deposit(account=account, asset="USDT", amount=D(10), request_id=request_id)
    again = services.deposit(account=account, asset="USDT", amount=D(10), request_id=request_id)
    assert first.pk == again.pk and balance(account) == D(10)


@pytest.mark.django_db
@pytest.mark.parametrize("amount, message", [
    (D("0"), "positive"), (D("-1"), "positive"), (D("0.0000001"), "decimal places"), (D("NaN"), "positive"),
    (D("sNaN"), "positive"), (D("Infinity"), "positive"),
    # more digits than the ledger adds exactly (28, counted to the micro-USDT)
    (D("1e22"), "too large"), (D("1e30"), "too large"), (D(10**40), "too large"), ("1E+999999999", "too large"),
])
def test_bad_amounts_are_refused(make_trader, amount, message):
    account = make_trader(usdt="0", xbt="0")
    with pytest.raises(ValueError, match=message):
        services.deposit(account=account, asset="USDT", amount=amount)
    assert not CashMovement.objects.filter(account=account).exists()


@pytest.mark.django_db
def test_a_request_id_sent_again_with_another_request_is_refused(make_trader):
    account, stranger = make_trader(usdt="0", xbt="0"), make_trader(usdt="0", xbt="0")
    request_id = uuid.uuid4()
    services.deposit(account=account, asset="USDT", amount=D(10), request_id=request_id)
    for other in (dict(account=stranger, asset="USDT", amount=D(10)), dict(account=account, asset="XBT", amount=D(10)),
                  dict(account=account, asset="USDT", amount=D(11))):
        with pytest.raises(RequestIdReused):
            services.deposit(request_id=request_id, **other)
    with pytest.raises(RequestIdReused):
        services.withdraw(account=account, asset="USDT", amount=D(10), request_id=request_id)
    assert list(CashMovement.objects.values_list("account", "asset", "amount")) == [(account.pk, "USDT", D(10))]


@pytest.mark.django_db(transaction=True)
def test_two_deposits_with_one_request_id_at_once_credit_once(make_trader):
    """Both requests find no movement of that id, then wait for the balance lock; the second to get
    it collides with the first's movement and answers with it, as a retry would."""
    account = make_trader(usdt="100", xbt="0")
    request_id = uuid.uuid4()
    movements = []

    def faucet():
        try:
            movements.append(services.faucet_deposit(account=account, asset="USDT", amount="10", request_id=request_id))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=faucet) for _ in range(2)]
    with transaction.atomic():
        services.lock_balances([(account.pk, "USDT")])
        for t in threads:
            t.start()
        assert connections_waiting_for_a_lock(2)
    for t in threads:
        t.join()
    assert [m.pk for m in movements] == [movements[0].pk] * 2
    assert balance(account) == D(110) and CashMovement.objects.filter(request_id=request_id).count() == 1


@pytest.mark.django_db
def test_the_faucet_gives_at_most_its_limit(make_trader):
    account = make_trader(usdt="0", xbt="0")
    services.faucet_deposit(account=account, asset="XBT")
    assert balance(account, "XBT") == D(1)
    with pytest.raises(ValueError, match="at most"):
        services.faucet_deposit(account=account, asset="XBT", amount=D(2))


@pytest.mark.django_db
@pytest.mark.parametrize("amount", ["NaN", "sNaN", "-Infinity", "lots"])
def test_the_faucet_refuses_an_amount_that_is_not_a_number(make_trader, amount):
    account = make_trader(usdt="0", xbt="0")
    with pytest.raises(ValueError, match="amount must be"):
        services.faucet_deposit(account=account, asset="USDT", amount=amount)
    assert not CashMovement.objects.filter(account=account).exists()


@pytest.mark.django_db
def test_a_withdrawal_never_exceeds_the_available_balance(make_trader):
    account = make_trader(usdt="100", xbt="0")
    services.withdraw(account=account, asset="USDT", amount=D(60))
    with pytest.raises(InsufficientBalance):
        services.withdraw(account=account, asset="USDT", amount=D(41))
    assert balance(account) == D(40)


@pytest.mark.django_db
def test_reserved_margin_is_not_available_for_withdrawal(make_trader):
    account = make_trader(usdt="100", xbt="0")
    Balance.objects.filter(account=account, asset_id="USDT").update(order_margin=D(70))
    with pytest.raises(InsufficientBalance):
        services.withdraw(account=account, asset="USDT", amount=D(31))
    Balance.objects.filter(account=account, asset_id="USDT").update(order_margin=D(0))


@pytest.mark.django_db(transaction=True)
def test_two_withdrawals_at_once_cannot_both_take_the_same_funds(books_balance):
    user = User.objects.create_user("racer")
    account = services.main_account(user)
    services.deposit(account=account, asset="USDT", amount=D(100))
    barrier = threading.Barrier(2)
    results = []

    def withdraw():
        try:
            barrier.wait()
            services.withdraw(account=account, asset="USDT", amount=D(60))
            results.append("ok")
        except InsufficientBalance:
            results.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=withdraw) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok", "refused"]
    assert balance(account) == D(40)


@pytest.mark.django_db(transaction=True)
def test_a_withdrawal_retried_while_its_first_try_commits_answers_with_that_try(books_balance, monkeypatch):
    """The retry waits for the balance lock; once the first try has taken the money, the retry is
    answered with it, not refused for want of that money."""
    account = services.main_account(User.objects.create_user("retrier"))
    services.deposit(account=account, asset="USDT", amount=D(100))
    request_id = uuid.uuid4()
    answers = retry_while_first_try_commits(monkeypatch, services, "post_transaction", lambda: services.withdraw(
        account=account, asset="USDT", amount=D(60), request_id=request_id))
    assert isinstance(answers["retry"], CashMovement) and answers["retry"].pk == answers["first"].pk, answers
    assert balance(account) == D(40)


@pytest.mark.django_db
def test_transfer_to_the_copy_sub_account_moves_available_funds(make_trader):
    main = make_trader(usdt="100", xbt="0")
    copy = Account.objects.create(user=main.user, kind=Account.Kind.COPY, name="leader-1")
    services.transfer(source=main, target=copy, asset="USDT", amount=D(30))
    assert (balance(main), balance(copy)) == (D(70), D(30))
    with pytest.raises(InsufficientBalance):
        services.transfer(source=main, target=copy, asset="USDT", amount=D(71))
    stranger = make_trader(usdt="0", xbt="0")
    with pytest.raises(ValueError, match="one user"):
        services.transfer(source=main, target=stranger, asset="USDT", amount=D(1))


@pytest.mark.django_db
def test_an_unbalanced_transaction_is_refused():
    a = services.system_account(SystemAccount.FEES)
    with pytest.raises(ValueError, match="does not balance"):
        services.post_transaction(kind="fee", legs=[(a.pk, "USDT", D(1))])


@pytest.mark.django_db
def test_check_ledger_reports_a_balance_changed_without_a_ledger_entry(make_trader):
    account = make_trader(usdt="100", xbt="0")
    call_command("check_ledger")
    Balance.objects.filter(account=account, asset_id="USDT").update(amount=D(1000))
    problems = ledger_problems()
    assert any(f"account {account.pk} holds 1000" in p for p in problems)
    with pytest.raises(CommandError):
        call_command("check_ledger")
    Balance.objects.filter(account=account, asset_id="USDT").update(amount=D(100))


@pytest.mark.django_db
def test_check_ledger_reports_an_entry_that_breaks_the_sum(make_trader):
    account = make_trader(usdt="100", xbt="0")
    tx = LedgerEntry.objects.filter(account=account).first().transaction
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO accounts_ledgerentry (transaction_id, account_id, asset_id, amount, kind, reference) "
                       "VALUES (%s, %s, 'USDT', 5, 'deposit', '')", [tx.pk, account.pk])
    problems = ledger_problems()
    assert any("USDT ledger sums to" in p for p in problems)
    assert any(f"ledger transaction {tx.pk} does not balance" in p for p in problems)
    LedgerEntry.objects.filter(transaction=tx, amount=5).delete()


@pytest.mark.django_db
def test_check_ledger_reports_references_that_do_not_resolve(make_trader):
    """Ledger entries, executions, orders, positions and copied orders carry no foreign-key
    constraints; the audit checks them instead."""
    from matching.selectors import book_problems

    account = make_trader(usdt="100", xbt="0")
    entry = LedgerEntry.objects.filter(account=account).first()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_ledgerentry SET transaction_id = -1 WHERE id = %s", [entry.pk])
        cursor.execute("INSERT INTO matching_execution (exec_id, order_id, account_id, instrument_id, trd_match_id, "
                       "side, last_qty, last_px, exec_type, last_liquidity_ind, commission, exec_comm, realized_pnl, "
                       "leaves_qty, cum_qty, ord_status, position_qty, created_at) VALUES (gen_random_uuid(), -7, %s, "
                       "(SELECT MIN(id) FROM matching_instrument), gen_random_uuid(), 'Buy', 1, 1, 'Trade', "
                       "'AddedLiquidity', 0, 0, 0, 0, 1, 'Filled', 1, now()) RETURNING id", [account.pk])
        (execution_id,) = cursor.fetchone()
        cursor.execute("INSERT INTO matching_order (order_id, account_id, instrument_id, cl_ord_id, side, ord_type, "
                       "time_in_force, exec_inst, order_qty, leaves_qty, margin_reserved, text, created_at, updated_at) "
                       "VALUES (gen_random_uuid(), -5, -9, '', 'Buy', 'Limit', 'GoodTillCancel', '', 1, 0, 0, '', now(), "
                       "now()) RETURNING id")
        (order_id,) = cursor.fetchone()
        cursor.execute("INSERT INTO copytrade_copiedorder (follow_id, leader_execution_id, reduce_only, order_id, side, "
                       "qty, status, reason, created_at) VALUES (-3, %s, FALSE, NULL, 'Buy', 1, 'skipped', '', now()) "
                       "RETURNING id", [execution_id])
        (copied_id,) = cursor.fetchone()
        cursor.execute("INSERT INTO matching_position (account_id, instrument_id, current_qty, entry_value, "
                       "realized_pnl, cum_realized_pnl, leverage, cross_margin, margin, updated_at) "
                       "VALUES (%s, -4, 0, 0, 0, 0, 10, TRUE, 0, now()) RETURNING id", [account.pk])
        (position_id,) = cursor.fetchone()
    problems = book_problems()
    assert f"ledger entry {entry.pk} names a missing transaction -1" in problems
    assert f"execution {execution_id} names a missing order -7" in problems
    assert f"order {order_id} names a missing account -5" in problems
    assert f"copied order {copied_id} names a missing follow -3" in problems
    assert f"position {position_id} names a missing instrument -4" in problems
    with pytest.raises(CommandError):
        call_command("check_ledger")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_ledgerentry SET transaction_id = %s WHERE id = %s",
                       [entry.transaction_id, entry.pk])
        cursor.execute("DELETE FROM copytrade_copiedorder WHERE id = %s", [copied_id])
        cursor.execute("DELETE FROM matching_order WHERE id = %s", [order_id])
        cursor.execute("DELETE FROM matching_execution WHERE id = %s", [execution_id])
        cursor.execute("DELETE FROM matching_position WHERE id = %s", [position_id])
    assert book_problems() == []
