"""Copy trading end to end in one process: a leader trades, the engine commits, the fan-out
(run eagerly) places each follower's order, the engine fills it. check_ledger stays clean."""
from decimal import Decimal as D

import pytest
from django.utils import timezone

from accounts.models import Balance, LedgerEntry, SystemAccount
from accounts.services import post_transaction, system_account
from copytrade import selectors, services
from copytrade.models import CopiedOrder, Follow
from copytrade.services import CopyRejected
from matching import services as trading
from matching.models import OPEN_STATUSES, Order, Position
from tests.conftest import settle

pytestmark = pytest.mark.django_db
SYMBOL = "XBTUSDT"  # lots of 1000 contracts of 0.000001 XBT


@pytest.fixture(autouse=True)
def eager_tasks(settings):
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def market(engine, make_trader):
    """A market maker with deep quotes around 50,000 on both sides."""
    maker = make_trader(usdt="10000000", xbt="0")
    for i in range(5):
        trading.submit_order(account=maker, symbol=SYMBOL, side="Sell", order_qty=50_000_000, price=str(50000 + i))
        trading.submit_order(account=maker, symbol=SYMBOL, side="Buy", order_qty=50_000_000, price=str(49999 - i))
    settle(engine)
    return maker


def leader_account(make_trader, usdt="1000000", **options):
    account = make_trader(usdt=usdt, xbt="0")
    leader = services.apply_to_lead(user=account.user, display_name=f"whale {account.pk}", **options)
    return leader


def copy_position(follow):
    return Position.objects.filter(account=follow.account, instrument__symbol=SYMBOL).values_list(
        "current_qty", flat=True).first() or 0


def trade(engine, account, side, qty, **kwargs):
    order = trading.submit_order(account=account, symbol=SYMBOL, side=side, order_qty=qty, ord_type="Market", **kwargs)
    settle(engine)
    return order


def test_a_follower_copies_in_proportion_to_equity_and_mirrors_closes_pro_rata(engine, market, make_trader):
    leader = leader_account(make_trader)
    follower = make_trader(usdt="150000", xbt="0")
    follow = services.follow(user=follower.user, leader=leader, amount=D(100000))  # a tenth of the leader's equity
    trade(engine, leader.account, "Buy", 10_000_000)  # 10 XBT
    # 100,000 / 999,625 (the leader's equity after its 375 USDT taker fee) of 10 XBT, in whole lots
    assert copy_position(follow) == 1_000_000
    copied = CopiedOrder.objects.get(follow=follow)
    assert copied.status == "placed" and copied.order.ord_type == "Limit" and copied.order.time_in_force == "ImmediateOrCancel"
    assert copied.order.price == D("50250")  # the leader's 50,000 plus the default 0.5% slippage
    trade(engine, leader.account, "Sell", 4_000_000)  # the leader closes 40%
    assert copy_position(follow) == 600_000  # 40% of the copy, not of equity
    trade(engine, leader.account, "Sell", 6_000_000)  # and the rest
    assert copy_position(follow) == 0  # no dust


def test_a_redelivered_fan_out_places_every_order_once(engine, market, make_trader):
    leader = leader_account(make_trader)
    follows = [services.follow(user=make_trader(usdt="100000", xbt="0").user, leader=leader, amount=D(100000))
               for _ in range(3)]
    trade(engine, leader.account, "Buy", 10_000_000)
    execution_ids = list(leader.account.executions.values_list("pk", flat=True))
    assert services.copy_leader_executions(execution_ids=execution_ids) == 3  # as a redelivered task would
    settle(engine)
    for follow in follows:
        assert Order.objects.filter(account=follow.account).count() == 1
        assert CopiedOrder.objects.filter(follow=follow).count() == 1
        assert copy_position(follow) == 1_000_000


def test_a_fan_out_stopped_between_chunks_is_completed_once_when_delivered_again(engine, market, make_trader,
                                                                                 monkeypatch):
    """Chunks commit one by one: a worker that dies after the first leaves those orders placed, and
    the redelivered task places the rest, none twice."""
    leader = leader_account(make_trader)
    follows = [services.follow(user=make_trader(usdt="100000", xbt="0").user, leader=leader, amount=D(100000))
               for _ in range(5)]
    monkeypatch.setattr(services, "COPY_CHUNK", 2)
    stored = services.submit_orders_bulk
    calls = []

    def dies_after_the_first_chunk(**kwargs):
        calls.append(len(kwargs["orders"]))
        if len(calls) == 2:
            raise SystemExit("worker killed")
        return stored(**kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(services, "submit_orders_bulk", dies_after_the_first_chunk)
        with pytest.raises(SystemExit):
            trade(engine, leader.account, "Buy", 10_000_000)
    settle(engine)
    assert sorted(Order.objects.filter(account__in=[f.account for f in follows]).values_list("account", flat=True)) == \
        sorted(f.account_id for f in follows[:2])  # the first chunk's two, committed and matched
    execution_ids = list(leader.account.executions.values_list("pk", flat=True))
    assert services.copy_leader_executions(execution_ids=execution_ids) == 5  # the task, delivered again
    settle(engine)
    for follow in follows:
        assert Order.objects.filter(account=follow.account).count() == 1
        assert CopiedOrder.objects.filter(follow=follow).count() == 1
        assert copy_position(follow) == 1_000_000


def test_orders_that_cannot_be_placed_are_recorded_with_their_reason(engine, market, make_trader):
    leader = leader_account(make_trader)
    paused = services.follow(user=make_trader().user, leader=leader, amount=D(100000))
    services.set_status(follow=paused, status="paused")
    elsewhere = services.follow(user=make_trader().user, leader=leader, amount=D(100000), symbols=["ETHUSDT"])
    tiny = services.follow(user=make_trader().user, leader=leader, amount=D(50))  # too small for one lot
    poor = services.follow(user=make_trader().user, leader=leader, amount=D(600), sizing="fixed_ratio", ratio=D("0.1"))
    trade(engine, leader.account, "Buy", 10_000_000)
    reasons = {c.follow_id: c.reason for c in CopiedOrder.objects.filter(status="skipped")}
    assert reasons[paused.pk] == "paused"
    assert "not in your symbol list" in reasons[elsewhere.pk]
    assert reasons[tiny.pk] == "below minimum size"
    assert "insufficient Available Balance" in reasons[poor.pk]
    assert all(copy_position(f) == 0 for f in (paused, elsewhere, tiny, poor))


def test_only_trades_after_following_are_copied(engine, market, make_trader):
    leader = leader_account(make_trader)
    trade(engine, leader.account, "Buy", 10_000_000)
    follow = services.follow(user=make_trader().user, leader=leader, amount=D(100000))
    trade(engine, leader.account, "Buy", 10_000_000)
    assert copy_position(follow) == 1_000_000


def test_unfollow_closes_the_copied_positions_and_settles_profit_share(engine, market, make_trader):
    leader = leader_account(make_trader, profit_share_rate="0.20")
    follower = make_trader(usdt="100000", xbt="0")
    follow = services.follow(user=follower.user, leader=leader, amount=D(100000))
    trade(engine, leader.account, "Buy", 10_000_000)
    assert copy_position(follow) == 1_000_000
    services.unfollow(follow=follow, close_positions=True)
    settle(engine)
    assert copy_position(follow) == 0
    assert Follow.objects.get(pk=follow.pk).status == "stopped"


def test_profit_share_is_paid_above_the_high_water_mark_and_a_loss_carries_forward(engine, make_trader):
    leader = leader_account(make_trader, profit_share_rate="0.10")
    follow = services.follow(user=make_trader().user, leader=leader, amount=D(100000))
    clearing = system_account(SystemAccount.CLEARING)

    def pay(amount):  # realized PnL booked on the copy account, as the engine books it
        post_transaction(kind="realized_pnl", reference="test",
                         legs=[(clearing.pk, "USDT", -D(amount)), (follow.account_id, "USDT", D(amount))])

    pay("100")
    first = services.settle_profit_share(follow=follow)
    assert first.amount == D(10)
    pay("-50")
    assert services.settle_profit_share(follow=follow) is None  # below the mark: nothing, the loss carries
    pay("80")  # cumulative 130: 30 above the mark of 100
    assert services.settle_profit_share(follow=follow).amount == D(3)
    assert Balance.objects.get(account=leader.account, asset_id="USDT").amount == D(1000000) + D(13)


def test_a_lowered_rate_applies_to_everyone_and_a_raised_one_to_new_followers(engine, make_trader):
    leader = leader_account(make_trader, profit_share_rate="0.20")
    early = services.follow(user=make_trader().user, leader=leader, amount=D(1000))
    services.update_leader(leader=leader, profit_share_rate="0.10")
    assert Follow.objects.get(pk=early.pk).profit_share_rate == D("0.10")
    services.update_leader(leader=leader, profit_share_rate="0.30")
    late = services.follow(user=make_trader().user, leader=leader, amount=D(1000))
    assert Follow.objects.get(pk=early.pk).profit_share_rate == D("0.10")
    assert late.profit_share_rate == D("0.30")
    with pytest.raises(CopyRejected, match="between 0 and 0.30"):
        services.update_leader(leader=leader, profit_share_rate="0.31")


def test_private_leaders_need_the_invite_code_and_the_cap_holds(engine, make_trader):
    leader = leader_account(make_trader, is_public=False, follower_cap=1)
    with pytest.raises(CopyRejected, match="invite code"):
        services.follow(user=make_trader().user, leader=leader, amount=D(100))
    services.follow(user=make_trader().user, leader=leader, amount=D(100), invite_code=leader.invite_code)
    with pytest.raises(CopyRejected, match="follower cap"):
        services.follow(user=make_trader().user, leader=leader, amount=D(100), invite_code=leader.invite_code)
    with pytest.raises(CopyRejected, match="yourself"):
        services.follow(user=leader.user, leader=leader, amount=D(100), invite_code=leader.invite_code)


def test_a_copy_stop_loss_on_equity_stops_copying_and_closes_everything(engine, market, make_trader):
    leader = leader_account(make_trader)
    follow = services.follow(user=make_trader().user, leader=leader, amount=D(100000), equity_stop=D(99990))
    trade(engine, leader.account, "Buy", 10_000_000)
    assert copy_position(follow) == 1_000_000  # the taker fee (37.5) took it below 99,990
    assert services.check_equity_stops() == 1
    settle(engine)
    follow.refresh_from_db()
    assert follow.status == "stopped" and "fell below the stop" in follow.stop_reason
    assert copy_position(follow) == 0


def test_leader_statistics_follow_the_executions(engine, market, make_trader):
    leader = leader_account(make_trader)
    services.follow(user=make_trader().user, leader=leader, amount=D(100000))
    trade(engine, leader.account, "Buy", 10_000_000)
    trade(engine, leader.account, "Sell", 10_000_000)
    stats = selectors.leader_statistics(leader)
    assert stats["closed_trades"] == 1 and stats["win_rate"] == 0  # bought at the ask, sold at the bid
    assert stats["pnl"]["all"] < 0 and stats["followers"] == 1 and stats["aum"] > 0
    assert stats["days_trading"] == 1


def test_a_copy_that_would_fill_beyond_its_slippage_says_so(engine, make_trader):
    thin = make_trader(usdt="10000000", xbt="0")
    trading.submit_order(account=thin, symbol=SYMBOL, side="Sell", order_qty=10_000_000, price="50000")
    trading.submit_order(account=thin, symbol=SYMBOL, side="Sell", order_qty=50_000_000, price="52000")  # 4% away
    settle(engine)
    leader = leader_account(make_trader)
    follow = services.follow(user=make_trader().user, leader=leader, amount=D(100000))
    trade(engine, leader.account, "Buy", 10_000_000)  # takes the whole 50,000 level; the copy finds 52,000
    (copied,) = selectors.copied_orders(follow=follow)
    assert selectors.copy_outcome(copied).startswith("slippage exceeded: 0 of 1000000 filled within 50250")


def test_copied_openings_get_a_take_profit_and_a_stop_loss(engine, market, make_trader):
    leader = leader_account(make_trader)
    follow = services.follow(user=make_trader().user, leader=leader, amount=D(100000), take_profit=D("0.10"),
                             stop_loss=D("0.05"))
    trade(engine, leader.account, "Buy", 10_000_000)
    protection = {o.ord_type: o for o in Order.objects.filter(account=follow.account, exec_inst="Close")}
    assert protection["MarketIfTouched"].stop_px == D(55000) and protection["MarketIfTouched"].side == "Sell"
    assert protection["Stop"].stop_px == D(47500) and protection["Stop"].ord_status == "Untriggered"
    trade(engine, leader.account, "Buy", 10_000_000)  # a new opening replaces the pair
    assert Order.objects.filter(account=follow.account, exec_inst="Close", ord_status="Untriggered").count() == 2


def test_following_can_open_the_leaders_current_positions_at_market(engine, market, make_trader):
    leader = leader_account(make_trader)
    trade(engine, leader.account, "Buy", 10_000_000)
    follow = services.follow(user=make_trader().user, leader=leader, amount=D(100000))
    (opened,) = services.open_leader_positions(follow=follow)
    settle(engine)
    assert (opened.symbol, opened.side, opened.qty, opened.reason) == (SYMBOL, "Buy", 1_000_000, "")
    assert copy_position(follow) == 1_000_000


def test_a_leader_fill_the_engine_never_announced_is_copied_by_the_catch_up(engine, market, make_trader):
    """The engine may stop between committing a leader's fill and announcing it: the periodic
    catch-up copies it, once, and brings the leader's statistics up to date."""
    from datetime import timedelta
    from unittest import mock

    from copytrade.models import LeaderStats

    leader = leader_account(make_trader)
    follower = make_trader(usdt="150000", xbt="0")
    follow = services.follow(user=follower.user, leader=leader, amount=D(100000))
    with mock.patch("copytrade.hooks.leader_accounts", return_value=frozenset()):  # the announcement is lost
        trade(engine, leader.account, "Buy", 10_000_000)
    assert copy_position(follow) == 0
    assert services.copy_missed_executions(older_than=timedelta(0)) == 1
    settle(engine)
    assert copy_position(follow) == 1_000_000
    assert services.copy_missed_executions(older_than=timedelta(0)) == 0  # once
    stats = LeaderStats.objects.get(leader=leader)
    assert stats.last_execution_id == leader.account.executions.latest("pk").pk
    trade(engine, leader.account, "Buy", 10_000_000)  # announced as usual: nothing left to catch up
    assert copy_position(follow) == 2_000_000
    assert services.copy_missed_executions(older_than=timedelta(0)) == 0


def test_a_copy_opens_at_the_leaders_leverage_or_the_follows_own(engine, market, make_trader):
    """A flat copy position takes the leader's leverage, or the follow's fixed one, and the copy's
    margin is checked at that leverage; a position already open keeps the leverage it has."""
    leader = leader_account(make_trader)
    trading.set_leverage(account=leader.account, symbol=SYMBOL, leverage=20)
    leaders_way = services.follow(user=make_trader(usdt="150000", xbt="0").user, leader=leader, amount=D(100000))
    unlevered = services.follow(user=make_trader(usdt="150000", xbt="0").user, leader=leader, amount=D(100000),
                                leverage="1")
    trade(engine, leader.account, "Buy", 30_000_000)  # 1.5 times the leader's equity

    def position(follow):
        return Position.objects.get(account=follow.account, instrument__symbol=SYMBOL)

    assert position(leaders_way).leverage == 20 and position(unlevered).leverage == 1
    copy = position(leaders_way)
    assert 3_000_000 <= copy.current_qty < 3_010_000  # a tenth of the leader's after its fee, in lots
    assert copy.margin == copy.entry_value / 20
    refused = CopiedOrder.objects.get(follow=unlevered)  # 150,000 USDT of notional at 1x, from 100,000
    assert refused.status == "skipped" and "insufficient Available Balance" in refused.reason
    assert position(unlevered).current_qty == 0
    trading.set_leverage(account=leader.account, symbol=SYMBOL, leverage=10)
    trade(engine, leader.account, "Buy", 10_000_000)
    assert position(leaders_way).leverage == 20  # open: its leverage is the follower's to change
    assert position(leaders_way).current_qty > copy.current_qty


def test_a_fill_never_announced_is_copied_even_after_a_later_fill_was(engine, market, make_trader):
    """The engine stopped (or the announcement failed) after committing a leader's fill, and the
    leader's next fill was announced and copied first: the catch-up still copies the first one."""
    from datetime import timedelta
    from unittest import mock

    leader = leader_account(make_trader)
    follow = services.follow(user=make_trader(usdt="150000", xbt="0").user, leader=leader, amount=D(100000))
    with mock.patch("copytrade.hooks.leader_accounts", return_value=frozenset()):  # the announcement is lost
        trade(engine, leader.account, "Buy", 10_000_000)
    missed = leader.account.executions.latest("pk").pk
    trade(engine, leader.account, "Buy", 10_000_000)  # announced as usual
    assert copy_position(follow) == 1_000_000
    assert services.copy_missed_executions(older_than=timedelta(0)) == 1
    settle(engine)
    assert missed in CopiedOrder.objects.filter(follow=follow).values_list("leader_execution_id", flat=True)
    assert copy_position(follow) == 2_000_000
    assert services.copy_missed_executions(older_than=timedelta(0)) == 0  # once


def test_the_catch_up_reads_only_fills_above_the_leaders_mark(engine, market, make_trader):
    """A leader's fills from before leading are not the catch-up's; a fill copied to nobody is
    recorded like any other, so it is not copied again at every run; the mark then moves past
    both, and a record long past the window is deleted."""
    from datetime import timedelta

    from copytrade.models import CopiedExecution, Leader

    account = make_trader(usdt="1000000", xbt="0")
    trade(engine, account, "Buy", 10_000_000)  # before leading
    leader = services.apply_to_lead(user=account.user, display_name="early bird")
    assert leader.copied_through == account.executions.latest("pk").pk
    trade(engine, account, "Sell", 10_000_000)  # nobody follows yet
    last = account.executions.latest("pk").pk
    assert CopiedExecution.objects.filter(execution_id=last).exists()
    assert services.copy_missed_executions(older_than=timedelta(0)) == 0
    assert Leader.objects.get(pk=leader.pk).copied_through == last
    CopiedExecution.objects.filter(execution_id=last).update(created_at=timezone.now() - timedelta(hours=1))
    services.copy_missed_executions(older_than=timedelta(0))
    assert not CopiedExecution.objects.filter(execution_id=last).exists()


def test_a_repeated_fan_out_keeps_the_copys_take_profit_and_stop_loss(engine, market, make_trader):
    """A redelivered task (or the catch-up and the queued task both) copies one fill twice: the
    second run finds the take-profit and stop-loss it placed and leaves them open."""
    leader = leader_account(make_trader)
    follow = services.follow(user=make_trader().user, leader=leader, amount=D(100000), take_profit=D("0.10"),
                             stop_loss=D("0.05"))
    trade(engine, leader.account, "Buy", 10_000_000)
    protection = Order.objects.filter(account=follow.account, exec_inst="Close", ord_status="Untriggered")
    placed = set(protection.values_list("pk", flat=True))
    assert len(placed) == 2
    services.copy_leader_executions(execution_ids=list(leader.account.executions.values_list("pk", flat=True)))
    settle(engine)
    assert set(protection.values_list("pk", flat=True)) == placed
    assert copy_position(follow) == 1_000_000


def test_a_late_copy_of_an_older_fill_leaves_the_later_fills_protection(engine, market, make_trader):
    """The catch-up copies a fill after a later one was copied: the later fill's take-profit and
    stop-loss stay, and the older fill adds none."""
    from datetime import timedelta
    from unittest import mock

    leader = leader_account(make_trader)
    follow = services.follow(user=make_trader().user, leader=leader, amount=D(100000), take_profit=D("0.10"),
                             stop_loss=D("0.05"))
    with mock.patch("copytrade.hooks.leader_accounts", return_value=frozenset()):
        trade(engine, leader.account, "Buy", 10_000_000)
    later = trade(engine, leader.account, "Buy", 10_000_000)
    later_fill = leader.account.executions.filter(order=later).latest("pk").pk
    assert services.copy_missed_executions(older_than=timedelta(0)) == 1
    settle(engine)
    assert copy_position(follow) == 2_000_000
    open_protection = Order.objects.filter(account=follow.account, exec_inst="Close", ord_status="Untriggered")
    assert sorted(open_protection.values_list("cl_ord_id", flat=True)) == [
        f"sl{later_fill}-{follow.pk}", f"tp{later_fill}-{follow.pk}"]


def killed(**kwargs):
    raise SystemExit("worker killed")


def test_an_equity_stop_killed_after_storing_the_stop_is_closed_by_the_periodic_task(engine, market, make_trader,
                                                                                     monkeypatch):
    leader = leader_account(make_trader)
    follow = services.follow(user=make_trader().user, leader=leader, amount=D(100000), equity_stop=D(99990))
    trade(engine, leader.account, "Buy", 10_000_000)
    assert copy_position(follow) == 1_000_000
    with monkeypatch.context() as patched:
        patched.setattr(services, "close_copy_positions", killed)
        with pytest.raises(SystemExit):
            services.check_equity_stops()
    follow.refresh_from_db()
    assert follow.status == "stopped" and follow.closing
    assert services.check_equity_stops() == 0  # stopped already: not the equity stop's any more
    assert services.close_stopped_copies() == 0  # the close order is on its way
    settle(engine)
    assert copy_position(follow) == 0
    assert services.close_stopped_copies() == 1
    assert not Follow.objects.get(pk=follow.pk).closing


def test_a_repeated_unfollow_finishes_a_killed_one_and_settles_the_profit_share_once(engine, market, make_trader,
                                                                                    monkeypatch):
    from copytrade.models import ProfitShareSettlement

    leader = leader_account(make_trader, profit_share_rate="0.10")
    follow = services.follow(user=make_trader().user, leader=leader, amount=D(100000), take_profit=D("0.10"))
    trade(engine, leader.account, "Buy", 10_000_000)
    clearing = system_account(SystemAccount.CLEARING)
    post_transaction(kind="realized_pnl", reference="test",  # a profit, as the engine books it
                     legs=[(clearing.pk, "USDT", -D(1000)), (follow.account_id, "USDT", D(1000))])
    with monkeypatch.context() as patched:
        patched.setattr(services, "close_copy_positions", killed)
        with pytest.raises(SystemExit):
            services.unfollow(follow=follow)
    assert copy_position(follow) == 1_000_000
    assert Order.objects.filter(account=follow.account, cl_ord_id__startswith="tp", ord_status="Untriggered").exists()
    services.unfollow(follow=follow)  # the user tries again
    services.unfollow(follow=follow)  # and again, before the engine has closed anything: one close order
    assert Order.objects.filter(account=follow.account, cl_ord_id__startswith=f"close-{follow.pk}-").count() == 1
    assert Follow.objects.get(pk=follow.pk).closing
    settle(engine)
    assert copy_position(follow) == 0
    assert not Order.objects.filter(account=follow.account, ord_status__in=OPEN_STATUSES).exists()
    assert not services.unfollow(follow=follow).closing
    assert services.close_stopped_copies() == 0  # nothing left to close
    (settlement,) = ProfitShareSettlement.objects.filter(follow=follow)
    assert settlement.reason == "unfollow" and settlement.amount > 0
    assert LedgerEntry.objects.filter(account=leader.account, kind="profit_share").count() == 1


def test_an_unfollow_that_keeps_the_positions_cancels_the_orders_and_closes_nothing(engine, market, make_trader):
    leader = leader_account(make_trader)
    follow = services.follow(user=make_trader().user, leader=leader, amount=D(100000), stop_loss=D("0.05"))
    trade(engine, leader.account, "Buy", 10_000_000)
    assert services.unfollow(follow=follow, close_positions=False).closing  # the stop-loss's cancel is queued
    settle(engine)
    assert services.close_stopped_copies() == 1
    assert copy_position(follow) == 1_000_000
    assert not Order.objects.filter(account=follow.account, ord_status="Untriggered").exists()
