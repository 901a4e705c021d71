"""Reads of leaders, follows, copied orders and leader statistics."""
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from django.db.models import Count, Q, Sum
from django.utils import timezone

from accounts.models import LedgerEntry
from config.decimals import plain
from config.rawsql import array_text, fetch_all
from copytrade import calculations
from copytrade.models import CopiedOrder, Follow, Leader, LeaderDay, LeaderStats, ProfitShareSettlement
from matching.models import Position
from matching.selectors import unrealized_pnl_by_account

WINDOWS = {"7d": 7, "30d": 30, "90d": 90}
NET_PNL_KINDS = (LedgerEntry.Kind.REALIZED_PNL, LedgerEntry.Kind.FEE, LedgerEntry.Kind.FUNDING)


def equities(*, account_ids, asset: str) -> dict[int, Decimal]:
    """Wallet balance plus unrealized PnL, per account, in one asset."""
    wallets = dict(fetch_all("SELECT account_id, amount FROM accounts_balance "
                             "WHERE account_id = ANY(%s::bigint[]) AND asset_id = %s", [array_text(account_ids), asset]))
    unrealized = unrealized_pnl_by_account(account_ids=account_ids, asset_code=asset)
    return {a: wallets.get(a, Decimal(0)) + unrealized.get(a, Decimal(0)) for a in account_ids}


class CopyingFollow(NamedTuple):
    """What copying a leader's trade reads of a follow, as a plain row: a fan-out reads ten
    thousand, and model instances cost it a third of a second."""

    pk: int
    account_id: int
    asset_id: str
    status: str
    sizing: str
    ratio: Decimal
    fixed_notional: Decimal
    max_order_notional: Decimal | None
    max_position_notional: Decimal | None
    leverage: Decimal | None
    symbols: list
    slippage: Decimal
    take_profit: Decimal | None
    stop_loss: Decimal | None


def follows_to_copy(*, leader: Leader, followed_before) -> list[CopyingFollow]:
    """The leader's live follows that started before the trade, in primary-key order."""
    rows = (Follow.objects.filter(leader=leader, created_at__lt=followed_before).exclude(status=Follow.Status.STOPPED)
            .order_by("pk").values_list(*CopyingFollow._fields))
    return [CopyingFollow(*row) for row in rows]


class CatchUpRow(NamedTuple):
    execution_id: int
    leader_id: int
    created_at: datetime
    copied: bool  # the fan-out has stored its copies (CopiedExecution)


CATCH_UP_BATCH = 10_000  # a leader's executions per catch-up run: a backlog is read in steps


def executions_above_marks(*, before: datetime, limit: int = CATCH_UP_BATCH) -> list[CatchUpRow]:
    """Each active leader's executions above its catch-up mark that were created before `before`
    (its first `limit`), oldest first, and whether their copies are stored."""
    rows = fetch_all(
        "SELECT e.id, l.id, e.created_at, "
        "EXISTS (SELECT 1 FROM copytrade_copiedexecution c WHERE c.execution_id = e.id) "
        "FROM copytrade_leader l CROSS JOIN LATERAL ("
        # the LIMIT keeps this apart, so that each leader's rows are one range of the (account, id)
        # index; joined flat, every execution of the leaders was read (3 million: 0.9 s, against 3 ms)
        " SELECT x.id, x.created_at FROM matching_execution x"
        " WHERE x.account_id = l.account_id AND x.id > l.copied_through AND x.created_at < %s"
        " ORDER BY x.id LIMIT %s) e "
        "WHERE l.status = %s ORDER BY e.id", [before, limit, Leader.Status.ACTIVE])
    return [CatchUpRow(*row) for row in rows]


def leaders_with_uncounted_executions(*, before: datetime) -> list[int]:
    """The active leaders with an execution in their statistics currency, created before `before`,
    that their statistics have not counted yet."""
    rows = fetch_all(
        "SELECT s.leader_id FROM copytrade_leaderstats s JOIN copytrade_leader l ON l.id = s.leader_id "
        "CROSS JOIN LATERAL ("
        # as above: one index range a leader (as an EXISTS, a merge over all their executions: 0.86 s)
        " SELECT 1 FROM matching_execution x JOIN matching_instrument i ON i.id = x.instrument_id"
        " WHERE x.account_id = l.account_id AND x.id > s.last_execution_id AND x.created_at < %s"
        " AND i.settle_asset_id = l.stats_asset_id LIMIT 1) e "
        "WHERE l.status = %s ORDER BY s.leader_id", [before, Leader.Status.ACTIVE])
    return [leader_id for (leader_id,) in rows]


def copy_realized_pnl(*, follow: Follow) -> Decimal:
    """The copy's net realized profit since following: realized PnL, fees and funding on its account."""
    total = LedgerEntry.objects.filter(account_id=follow.account_id, asset_id=follow.asset_id,
                                       kind__in=NET_PNL_KINDS).aggregate(total=Sum("amount"))["total"]
    return total or Decimal(0)


def leaders(*, public_only: bool = True) -> list[Leader]:
    rows = Leader.objects.select_related("stats", "user").filter(status=Leader.Status.ACTIVE)
    if public_only:
        rows = rows.filter(is_public=True)
    return list(rows.annotate(live_followers=Count("follows", filter=~Q(follows__status=Follow.Status.STOPPED)))
                .order_by("-stats__realized_pnl", "pk"))


def leader_statistics(leader: Leader) -> dict:
    """The published statistics: the running ones, the PnL windows from the daily rows, AUM and
    followers' results from the live follows."""
    stats = LeaderStats.objects.get(leader=leader)  # fresh: the statistics move with every execution
    today = timezone.now().date()
    days = list(LeaderDay.objects.filter(leader=leader).order_by("day").values_list("day", "realized_pnl", "fees",
                                                                                     "equity"))
    net = [(day, pnl - fees) for day, pnl, fees, _ in days]
    windows = calculations.pnl_windows(net, today)
    statistics = {"pnl": {}, "roi": {}}
    for name, length in WINDOWS.items():
        start = today - timedelta(days=length)
        capital = next((equity for day, _, _, equity in reversed(days) if day < start), None)
        capital = capital or next((equity for day, _, _, equity in days if day >= start), Decimal(0))
        statistics["pnl"][name] = windows[name]
        statistics["roi"][name] = calculations.roi(windows[name], capital)
    first_equity = days[0][3] if days else Decimal(0)
    statistics["pnl"]["all"] = windows["all"]
    statistics["roi"]["all"] = calculations.roi(windows["all"], first_equity)
    follows = Follow.objects.filter(leader=leader).exclude(status=Follow.Status.STOPPED)
    accounts = list(follows.values_list("account_id", flat=True))
    aum = sum(equities(account_ids=accounts, asset=leader.stats_asset_id).values(), Decimal(0)) if accounts else Decimal(0)
    followers_pnl = (LedgerEntry.objects.filter(account__follow__leader=leader, kind__in=NET_PNL_KINDS)
                     .aggregate(total=Sum("amount"))["total"] or Decimal(0))
    sharpe = calculations.sharpe_from_sums(stats.returns_count, stats.returns_sum, stats.returns_sum_squares)
    statistics.update({
        "win_rate": (Decimal(stats.winning_trades) / stats.closed_trades) if stats.closed_trades else Decimal(0),
        "closed_trades": stats.closed_trades,
        "max_drawdown": stats.max_drawdown,
        "sharpe_ratio": sharpe.quantize(Decimal("0.0001")),
        "aum": aum,
        "followers": len(accounts),
        "followers_pnl": followers_pnl,
        "days_trading": len(days),
        "average_holding_seconds": stats.holding_seconds // stats.closed_trades if stats.closed_trades else 0,
        "equity_curve": [(day, equity) for day, _, _, equity in days],
    })
    return statistics


def follows_of(*, user) -> list[Follow]:
    return list(Follow.objects.select_related("leader", "asset", "account").filter(follower=user).order_by("-pk"))


def copied_orders(*, follow: Follow, status: str | None = None, limit: int = 100) -> list[CopiedOrder]:
    rows = CopiedOrder.objects.select_related("order", "leader_execution", "leader_execution__instrument").filter(
        follow=follow)
    if status:
        rows = rows.filter(status=status)
    return list(rows.order_by("-leader_execution_id", "reduce_only")[:limit])


def settlements(*, follow: Follow) -> list[ProfitShareSettlement]:
    return list(ProfitShareSettlement.objects.filter(follow=follow).order_by("-pk"))


def copy_positions(*, follow: Follow) -> list[Position]:
    return list(Position.objects.select_related("instrument").filter(account_id=follow.account_id).exclude(current_qty=0))


def copy_outcome(copied: CopiedOrder) -> str:
    """Why a copy did not (fully) happen: the stored skip reason, or what the slippage bound left unfilled."""
    order = copied.order
    if copied.reason or order is None:
        return copied.reason
    if order.ord_status == "Canceled" and order.cum_qty < order.order_qty and not copied.reduce_only:
        return (f"slippage exceeded: {order.cum_qty} of {order.order_qty} filled within "
                f"{plain(order.price)}")
    return ""
