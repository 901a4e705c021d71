"""Accounts, wallets and the double-entry ledger.

Every change of a balance's `amount` is a `LedgerEntry`; the entries of one `LedgerTransaction`
sum to zero per asset, so every asset's ledger sums to zero across all accounts (the exchange's
own accounts included). `order_margin` and `position_margin` are encumbrances, not money
movements: they limit what is available but do not change the amount.
"""
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

MONEY = {"max_digits": 38, "decimal_places": 10}


class Asset(models.Model):
    code = models.CharField(primary_key=True, max_length=10)  # XBT, USDT, USDC, ETH
    name = models.CharField(max_length=40)
    scale = models.PositiveSmallIntegerField(help_text="decimal places of the smallest unit (8: satoshi)")
    currency = models.CharField(max_length=10, unique=True, help_text="BitMEX wallet currency id (XBt, USDt)")

    def __str__(self):
        return self.code

    @property
    def unit(self) -> Decimal:
        return Decimal(1).scaleb(-self.scale)


class Account(models.Model):
    class Kind(models.TextChoices):
        MAIN = "main"
        COPY = "copy"  # capital a follower puts behind one leader, kept apart from manual trading
        SYSTEM = "system"  # the exchange's own accounts

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                             related_name="accounts")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MAIN)
    name = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "kind", "name"], name="account_unique_per_user",
                                    nulls_distinct=False),
            models.CheckConstraint(condition=Q(kind="system", user__isnull=True) | (~Q(kind="system") & Q(user__isnull=False)),
                                   name="account_system_has_no_user"),
        ]

    def __str__(self):
        who = self.user.username if self.user_id else "exchange"
        return f"{who}:{self.kind}{':' + self.name if self.name else ''}"


class SystemAccount(models.TextChoices):
    EXTERNAL = "external"  # the world outside: counterpart of deposits and withdrawals
    FEES = "fees"  # trading fees earned (rebates paid from it)
    CLEARING = "clearing"  # counterpart of realized PnL and funding between traders
    INSURANCE_FUND = "insurance_fund"


class Balance(models.Model):
    # Updated on every fill: the only indexes are the key and (account, asset), whose columns never
    # change, so with room left on each page (fillfactor, see the migration) updates stay HOT.
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="balances", db_index=False)
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, db_index=False)
    amount = models.DecimalField(**MONEY, default=Decimal(0))  # wallet balance: the sum of the ledger
    order_margin = models.DecimalField(**MONEY, default=Decimal(0))
    position_margin = models.DecimalField(**MONEY, default=Decimal(0))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "asset"], name="balance_unique"),
            models.CheckConstraint(condition=Q(order_margin__gte=0) & Q(position_margin__gte=0),
                                   name="balance_margin_not_negative"),
        ]

    def __str__(self):
        return f"{self.account} {self.amount} {self.asset_id}"


class LedgerTransaction(models.Model):
    """Groups entries that sum to zero per asset: one deposit, one transfer, one trade's fees and PnL."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(auto_now_add=True)


class LedgerEntry(models.Model):
    class Kind(models.TextChoices):
        DEPOSIT = "deposit"
        WITHDRAWAL = "withdrawal"
        TRANSFER = "transfer"
        FEE = "fee"
        REALIZED_PNL = "realized_pnl"
        FUNDING = "funding"
        PROFIT_SHARE = "profit_share"
        LIQUIDATION = "liquidation"
        INSURANCE_FUND = "insurance_fund"

    id = models.BigAutoField(primary_key=True)
    # No foreign-key constraints: the engine appends thousands of entries per batch and the
    # deferred per-row checks cost a quarter of its commit. Every writer takes these ids from
    # rows it has just read, and check_ledger verifies that each one resolves.
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="entries",
                                    db_constraint=False)
    # (account, asset, id) indexes both; single-column indexes would only slow the engine's writes
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="ledger_entries", db_index=False,
                                db_constraint=False)
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, db_index=False, db_constraint=False)
    amount = models.DecimalField(**MONEY)  # signed: + credits the account
    kind = models.CharField(max_length=20, choices=Kind.choices)
    reference = models.CharField(max_length=80, blank=True, default="")  # e.g. "execution:<execID>"

    class Meta:
        indexes = [models.Index(fields=["account", "asset", "id"])]
        verbose_name_plural = "ledger entries"


class CashMovement(models.Model):
    """A deposit or withdrawal request; its request_id makes a retried request a no-op."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit"
        WITHDRAWAL = "withdrawal"

    request_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="cash_movements")
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT)
    amount = models.DecimalField(**MONEY)
    transaction = models.OneToOneField(LedgerTransaction, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="cash_movement_positive")]
