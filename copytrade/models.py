"""Leaders, follows, the orders copied for each follower, profit-share settlements and leader
statistics (kept current as executions arrive, never recomputed per page view)."""
import secrets
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper

from accounts.models import MONEY, Account, Asset, LedgerTransaction
from matching.models import Execution, Order


def new_invite_code() -> str:
    return secrets.token_urlsafe(9)


class Leader(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        CLOSED = "closed"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="leader")
    account = models.OneToOneField(Account, on_delete=models.PROTECT, related_name="leader")  # whose fills are copied
    display_name = models.CharField(max_length=60)  # unique whatever its case: see Meta
    description = models.TextField(blank=True, default="")
    tags = ArrayField(models.CharField(max_length=30), default=list, blank=True)
    profit_share_rate = models.DecimalField(max_digits=5, decimal_places=4, default=Decimal("0.10"))
    is_public = models.BooleanField(default=True)
    invite_code = models.CharField(max_length=20, unique=True, default=new_invite_code)
    follower_cap = models.PositiveIntegerField(default=10_000)
    # statistics count the executions settled in this asset (PnL in one currency adds up)
    stats_asset = models.ForeignKey(Asset, on_delete=models.PROTECT, default="USDT", related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    # the catch-up's mark: each of the leader's executions up to this one was copied (it has a
    # CopiedExecution row) or is past the catch-up window; only those above it are looked at
    copied_through = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(profit_share_rate__gte=0, profit_share_rate__lte=Decimal("0.30")),
                                   name="leader_profit_share_rate_range"),
            # UPPER, as the display_name__iexact lookup compares: the index and that check agree
            models.UniqueConstraint(Upper("display_name"), name="leader_display_name_unique_ignoring_case"),
        ]

    def __str__(self):
        return self.display_name


class Follow(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        STOPPED = "stopped"

    class Sizing(models.TextChoices):
        PROPORTIONAL = "proportional"  # copy equity / leader equity
        FIXED_RATIO = "fixed_ratio"  # a multiplier on the leader's size
        FIXED_NOTIONAL = "fixed_notional"  # the same value per order

    follower = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="follows")
    leader = models.ForeignKey(Leader, on_delete=models.PROTECT, related_name="follows")
    account = models.OneToOneField(Account, on_delete=models.PROTECT, related_name="follow")  # the copy sub-account
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT)  # the asset the capital was moved in
    allocated = models.DecimalField(**MONEY)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    sizing = models.CharField(max_length=16, choices=Sizing.choices, default=Sizing.PROPORTIONAL)
    ratio = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(1))
    fixed_notional = models.DecimalField(**MONEY, default=Decimal(0))
    max_order_notional = models.DecimalField(**MONEY, null=True, blank=True)
    max_position_notional = models.DecimalField(**MONEY, null=True, blank=True)
    leverage = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)  # None: the leader's
    symbols = ArrayField(models.CharField(max_length=20), default=list, blank=True)  # empty: every symbol
    slippage = models.DecimalField(max_digits=6, decimal_places=4, default=Decimal("0.005"))
    take_profit = models.DecimalField(max_digits=6, decimal_places=4, null=True, blank=True)  # fraction of entry
    stop_loss = models.DecimalField(max_digits=6, decimal_places=4, null=True, blank=True)  # fraction of entry
    equity_stop = models.DecimalField(**MONEY, null=True, blank=True)  # stop copying below this equity
    profit_share_rate = models.DecimalField(max_digits=5, decimal_places=4)  # fixed when following
    high_water_mark = models.DecimalField(**MONEY, default=Decimal(0))
    profit_share_paid = models.DecimalField(**MONEY, default=Decimal(0))
    stop_reason = models.CharField(max_length=200, blank=True, default="")
    # stopped, but its orders, positions (unless kept) or profit share not yet all dealt with: a
    # worker that dies in the middle of an unfollow leaves this set, and the periodic task finishes
    closing = models.BooleanField(default=False)
    close_positions = models.BooleanField(default=True)  # on stopping: close at market, or keep them
    created_at = models.DateTimeField(auto_now_add=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["follower", "leader"], condition=~Q(status="stopped"),
                                    name="follow_one_live_per_leader"),
        ]
        indexes = [models.Index(fields=["leader", "status"]),
                   models.Index(fields=["id"], condition=Q(closing=True), name="follow_closing")]


class CopiedOrder(models.Model):
    """What one leader execution became for one follower: an order, or a skip with its reason."""

    class Status(models.TextChoices):
        PLACED = "placed"
        SKIPPED = "skipped"

    # no foreign-key constraints (as on orders): check_ledger reports any dangling reference
    follow = models.ForeignKey(Follow, on_delete=models.CASCADE, related_name="copied_orders", db_index=False,
                               db_constraint=False)
    leader_execution = models.ForeignKey(Execution, on_delete=models.PROTECT, related_name="+", db_index=False,
                                         db_constraint=False)
    reduce_only = models.BooleanField(default=False)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False,
                              db_constraint=False)
    side = models.CharField(max_length=4)
    qty = models.BigIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices)
    reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["follow", "leader_execution", "reduce_only"],
                                               name="copied_order_once")]


class CopiedExecution(models.Model):
    """A leader execution whose copies are all stored (or that copied to nobody): the catch-up copies
    the recent executions above the leader's mark that have none. Deleted once past the catch-up
    window, so the table holds minutes of fills, not the leaders' history."""

    execution_id = models.BigIntegerField(primary_key=True)  # no foreign key: as on CopiedOrder
    created_at = models.DateTimeField(db_index=True)


class ProfitShareSettlement(models.Model):
    follow = models.ForeignKey(Follow, on_delete=models.PROTECT, related_name="settlements")
    cumulative_pnl = models.DecimalField(**MONEY)
    high_water_mark_before = models.DecimalField(**MONEY)
    amount = models.DecimalField(**MONEY)
    transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT, null=True, blank=True)
    reason = models.CharField(max_length=20)  # daily, unfollow
    created_at = models.DateTimeField(auto_now_add=True)


class LeaderStats(models.Model):
    """Running statistics of a leader's trading, updated as its executions arrive."""

    leader = models.OneToOneField(Leader, on_delete=models.CASCADE, related_name="stats", primary_key=True)
    last_execution_id = models.BigIntegerField(default=0)  # executions up to this id are counted
    realized_pnl = models.DecimalField(**MONEY, default=Decimal(0))
    fees = models.DecimalField(**MONEY, default=Decimal(0))
    closed_trades = models.PositiveIntegerField(default=0)
    winning_trades = models.PositiveIntegerField(default=0)
    holding_seconds = models.BigIntegerField(default=0)  # summed over closed trades
    peak_equity = models.DecimalField(**MONEY, default=Decimal(0))
    max_drawdown = models.DecimalField(max_digits=10, decimal_places=6, default=Decimal(0))
    returns_count = models.PositiveIntegerField(default=0)  # daily returns, for the Sharpe ratio
    returns_sum = models.DecimalField(max_digits=30, decimal_places=12, default=Decimal(0))
    returns_sum_squares = models.DecimalField(max_digits=30, decimal_places=12, default=Decimal(0))
    first_trade_at = models.DateTimeField(null=True, blank=True)
    open_since = models.JSONField(default=dict)  # instrument id -> when the current position opened
    updated_at = models.DateTimeField(auto_now=True)


class LeaderDay(models.Model):
    """A leader's day: realized PnL, fees, trades and closing equity; the equity curve and PnL windows."""

    leader = models.ForeignKey(Leader, on_delete=models.CASCADE, related_name="days")
    day = models.DateField()
    realized_pnl = models.DecimalField(**MONEY, default=Decimal(0))
    fees = models.DecimalField(**MONEY, default=Decimal(0))
    trades = models.PositiveIntegerField(default=0)
    equity = models.DecimalField(**MONEY, default=Decimal(0))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["leader", "day"], name="leader_day_unique")]
