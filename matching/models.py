"""Instruments, orders, executions and positions.

The engine process is the only writer of an order's match state (status, leaves, cum, fills),
of executions and of positions; the web process only creates orders as `Pending` and queues
cancel/amend requests as `OrderCommand` rows.
"""
from decimal import Decimal
from functools import cached_property

from django.db import models
from django.db.models import Q

from accounts.models import MONEY, Account, Asset
from matching.contracts import ContractTerms
from matching.ids import time_ordered_uuid

PRICE = {"max_digits": 30, "decimal_places": 10}


class Instrument(models.Model):
    """A perpetual swap, with BitMEX's field names in the API."""

    symbol = models.CharField(max_length=20, unique=True)
    root_symbol = models.CharField(max_length=10)
    typ = models.CharField(max_length=6, default="FFWCSX")  # perpetual swap
    state = models.CharField(max_length=10, default="Open")
    underlying = models.CharField(max_length=10)
    quote_currency = models.CharField(max_length=10)
    position_currency = models.CharField(max_length=10, blank=True, default="")
    settle_asset = models.ForeignKey(Asset, on_delete=models.PROTECT)
    is_inverse = models.BooleanField(default=False)
    is_quanto = models.BooleanField(default=False)
    tick_size = models.DecimalField(**PRICE)
    lot_size = models.BigIntegerField()
    # BitMEX's raw multipliers, published as they are; contract_size is what our arithmetic uses
    multiplier = models.BigIntegerField()
    underlying_to_position_multiplier = models.BigIntegerField(null=True, blank=True)
    underlying_to_settle_multiplier = models.BigIntegerField(null=True, blank=True)
    quote_to_settle_multiplier = models.BigIntegerField(null=True, blank=True)
    contract_size = models.DecimalField(**PRICE)
    init_margin = models.DecimalField(max_digits=10, decimal_places=6)
    maint_margin = models.DecimalField(max_digits=10, decimal_places=6)
    maker_fee = models.DecimalField(max_digits=10, decimal_places=6)
    taker_fee = models.DecimalField(max_digits=10, decimal_places=6)
    max_order_qty = models.BigIntegerField()
    max_price = models.DecimalField(**PRICE)
    # kept current by the engine after every batch
    last_price = models.DecimalField(**PRICE, null=True, blank=True)
    bid_price = models.DecimalField(**PRICE, null=True, blank=True)
    ask_price = models.DecimalField(**PRICE, null=True, blank=True)
    mark_price = models.DecimalField(**PRICE, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.symbol

    @property
    def max_leverage(self) -> Decimal:
        return (Decimal(1) / self.init_margin).quantize(Decimal(1))

    @cached_property  # a bulk order check asks for every order; a contract's terms never change
    def terms(self) -> ContractTerms:
        return ContractTerms(is_inverse=self.is_inverse, contract_size=self.contract_size,
                             tick_size=self.tick_size, lot_size=self.lot_size,
                             settle_places=Decimal(1).scaleb(-self.settle_asset.scale))


class Side(models.TextChoices):
    BUY = "Buy"
    SELL = "Sell"


class OrdType(models.TextChoices):
    LIMIT = "Limit"
    MARKET = "Market"
    STOP = "Stop"  # stop-market
    STOP_LIMIT = "StopLimit"
    MARKET_IF_TOUCHED = "MarketIfTouched"  # take-profit market
    LIMIT_IF_TOUCHED = "LimitIfTouched"  # take-profit limit


def triggers_rising(side: str, ord_type: str) -> bool:
    """Whether a conditional order triggers when the price rises to its stopPx (a buy stop, a sell
    take-profit) rather than falls to it; a trailing one follows the price from the other side."""
    return (side == Side.BUY) == (ord_type in (OrdType.STOP, OrdType.STOP_LIMIT))


class TimeInForce(models.TextChoices):
    GOOD_TILL_CANCEL = "GoodTillCancel"
    IMMEDIATE_OR_CANCEL = "ImmediateOrCancel"
    FILL_OR_KILL = "FillOrKill"


class OrdStatus(models.TextChoices):
    PENDING_NEW = "PendingNew"  # stored, not yet applied by the engine
    NEW = "New"
    PARTIALLY_FILLED = "PartiallyFilled"
    FILLED = "Filled"
    CANCELED = "Canceled"
    REJECTED = "Rejected"
    UNTRIGGERED = "Untriggered"  # a conditional order waiting for its trigger price


OPEN_STATUSES = (OrdStatus.PENDING_NEW, OrdStatus.NEW, OrdStatus.PARTIALLY_FILLED, OrdStatus.UNTRIGGERED)


class Order(models.Model):
    id = models.BigAutoField(primary_key=True)  # also the order's id in the C book
    order_id = models.UUIDField(default=time_ordered_uuid, unique=True, editable=False)  # BitMEX orderID
    # indexed by the composite indexes below; single-column indexes would only slow the engine's writes
    # no foreign-key constraints: a fan-out of 10,000 orders paid for 20,000 deferred checks at
    # commit; PROTECT still holds in the ORM, and check_ledger reports any dangling reference
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="orders", db_index=False,
                                db_constraint=False)
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="orders", db_index=False,
                                   db_constraint=False)
    cl_ord_id = models.CharField(max_length=64, blank=True, default="")
    side = models.CharField(max_length=4, choices=Side.choices)
    ord_type = models.CharField(max_length=16, choices=OrdType.choices)
    time_in_force = models.CharField(max_length=20, choices=TimeInForce.choices)
    exec_inst = models.CharField(max_length=80, blank=True, default="")
    price = models.DecimalField(**PRICE, null=True, blank=True)
    stop_px = models.DecimalField(**PRICE, null=True, blank=True)
    protect_price = models.DecimalField(**PRICE, null=True, blank=True)  # worst fill price of a market order
    peg_price_type = models.CharField(max_length=20, blank=True, default="", db_default="")
    peg_offset_value = models.DecimalField(**PRICE, null=True, blank=True)
    order_qty = models.BigIntegerField()
    leaves_qty = models.BigIntegerField()
    cum_qty = models.BigIntegerField(default=0, db_default=0)
    avg_px = models.DecimalField(**PRICE, null=True, blank=True)
    # fills' total value in the quote currency (qty * price), so avg_px stays exact
    cum_notional = models.DecimalField(max_digits=40, decimal_places=10, default=Decimal(0), db_default=0)
    ord_status = models.CharField(max_length=16, choices=OrdStatus.choices, default=OrdStatus.PENDING_NEW,
                                  db_default=OrdStatus.PENDING_NEW)
    triggered = models.CharField(max_length=20, blank=True, default="", db_default="")  # "StopOrderTriggered"
    working_indicator = models.BooleanField(default=False, db_default=False)
    ord_rej_reason = models.CharField(max_length=200, blank=True, default="", db_default="")
    text = models.CharField(max_length=200, blank=True, default="")
    margin_reserved = models.DecimalField(**MONEY, default=Decimal(0))
    # the part of leaves_qty that only reduces the account's position, so its margin does not cover it;
    # if the position shrinks first, the engine cuts the order by what it could no longer reduce
    unmargined_qty = models.BigIntegerField(default=0, db_default=0)
    # position in the book's time priority; the engine rebuilds books in this order
    priority = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "cl_ord_id"], condition=~Q(cl_ord_id=""),
                                    name="order_cl_ord_id_unique_per_account"),
            models.CheckConstraint(condition=Q(order_qty__gte=0) & Q(leaves_qty__gte=0) & Q(cum_qty__gte=0),
                                   name="order_quantities_not_negative"),
        ]
        # No index names a column the engine changes (ord_status, leaves_qty...), and pages keep
        # room (fillfactor 50, see migration 0011), so its updates are HOT: a new row version on
        # the same page and no index entries (10,000 copies filled: 149 -> 57 ms). Open orders are
        # found through PendingOrder and HeldOrder instead of partial indexes on ord_status.
        indexes = [models.Index(fields=["account", "-created_at"])]

    def __str__(self):
        return f"{self.side} {self.order_qty} {self.instrument_id} @ {self.price} ({self.ord_status})"

    @property
    def is_open(self) -> bool:
        return self.ord_status in OPEN_STATUSES

    def has_exec_inst(self, name: str) -> bool:
        return name in self.exec_inst.split(",")


class PendingOrder(models.Model):
    """An order stored as PendingNew and not yet applied by the engine: the engine's sweep finds
    orders whose stream entry was lost here. A row is added by a trigger whenever a PendingNew order
    is inserted (any way: the ORM, COPY), and removed by the engine in the batch that applies it."""

    order = models.OneToOneField(Order, primary_key=True, on_delete=models.DO_NOTHING, db_constraint=False,
                                 related_name="pending")


class HeldOrder(models.Model):
    """An order the engine holds: resting in a book (New, PartiallyFilled) or waiting for its
    trigger (Untriggered). The engine adds, changes and removes rows in the batch that changes the
    order; a restart rebuilds the books from them. The row repeats what the public order book
    needs (side, price, size, status), so that the book is read from this small table alone, and
    its account, so that an account's open orders are found without walking every order it ever
    placed (the margin of a new order counts them); check_ledger verifies that it agrees with the order."""

    order = models.OneToOneField(Order, primary_key=True, on_delete=models.DO_NOTHING, db_constraint=False,
                                 related_name="held")
    account = models.ForeignKey(Account, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False,
                                related_name="+")  # indexed with the instrument, below
    instrument = models.ForeignKey(Instrument, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    side = models.CharField(max_length=4, choices=Side.choices)
    price = models.DecimalField(**PRICE, null=True, blank=True)
    leaves_qty = models.BigIntegerField()
    ord_status = models.CharField(max_length=16, choices=OrdStatus.choices)

    class Meta:
        indexes = [models.Index(fields=["account", "instrument"], name="held_order_by_account")]


HELD_STATUSES = (OrdStatus.NEW, OrdStatus.PARTIALLY_FILLED, OrdStatus.UNTRIGGERED)


class OrderCommand(models.Model):
    """A cancel or amend waiting for the engine; stored first, so no request is ever lost."""

    class Kind(models.TextChoices):
        CANCEL = "cancel"
        AMEND = "amend"

    class Status(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        REJECTED = "rejected"

    id = models.BigAutoField(primary_key=True)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="commands")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    new_order_qty = models.BigIntegerField(null=True, blank=True)
    new_leaves_qty = models.BigIntegerField(null=True, blank=True)
    new_price = models.DecimalField(**PRICE, null=True, blank=True)
    new_stop_px = models.DecimalField(**PRICE, null=True, blank=True)
    text = models.CharField(max_length=200, blank=True, default="")
    reason = models.CharField(max_length=200, blank=True, default="")
    # margin the request reserved beyond the order's own, and the order's total after the amend
    margin_delta = models.DecimalField(**MONEY, default=Decimal(0))
    new_margin = models.DecimalField(**MONEY, null=True, blank=True)
    new_unmargined_qty = models.BigIntegerField(null=True, blank=True)  # with new_margin: what it does not cover
    new_peg_offset_value = models.DecimalField(**PRICE, null=True, blank=True)  # a trailing stop's new offset
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["status"], condition=Q(status="pending"), name="order_command_pending")]


class Execution(models.Model):
    class Liquidity(models.TextChoices):
        ADDED = "AddedLiquidity"
        REMOVED = "RemovedLiquidity"

    id = models.BigAutoField(primary_key=True)
    exec_id = models.UUIDField(default=time_ordered_uuid, unique=True, editable=False)
    # No foreign-key constraints, as on ledger entries: only the engine writes executions, with ids
    # of orders it holds, and check_ledger verifies that each reference resolves.
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="executions", db_constraint=False)
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="executions", db_index=False,
                                db_constraint=False)
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="executions", db_index=False,
                                   db_constraint=False)
    trd_match_id = models.UUIDField()  # shared by the two sides of a trade
    side = models.CharField(max_length=4, choices=Side.choices)
    last_qty = models.BigIntegerField()
    last_px = models.DecimalField(**PRICE)
    exec_type = models.CharField(max_length=16, default="Trade")
    last_liquidity_ind = models.CharField(max_length=20, choices=Liquidity.choices)
    commission = models.DecimalField(max_digits=10, decimal_places=6)  # the fee rate
    exec_comm = models.DecimalField(**MONEY)  # the fee, in the settlement asset
    realized_pnl = models.DecimalField(**MONEY, default=Decimal(0))
    # the order as it stood after this execution
    leaves_qty = models.BigIntegerField()
    cum_qty = models.BigIntegerField()
    ord_status = models.CharField(max_length=16, choices=OrdStatus.choices)
    position_qty = models.BigIntegerField(default=0)  # the account's position after this execution
    created_at = models.DateTimeField()

    class Meta:
        # by instrument only the public trades are read: the taker's side of each match
        indexes = [models.Index(fields=["account", "-id"]),
                   models.Index(fields=["instrument", "-id"], condition=Q(last_liquidity_ind="RemovedLiquidity"),
                                name="execution_public_trades")]


class Position(models.Model):
    """One position per account and instrument (one-way mode). Updated on every fill, like balances:
    no index covers a column that changes, and pages keep room for HOT updates (see the migration)."""

    # no foreign-key constraints, as on orders: a first copy of 10,000 followers creates as many
    # positions, and their 20,000 deferred checks cost 18 ms at its commit; check_ledger reports a
    # dangling reference
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="positions", db_index=False,
                                db_constraint=False)
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="positions",
                                   db_constraint=False)
    current_qty = models.BigIntegerField(default=0)  # signed contracts: + long, - short
    entry_value = models.DecimalField(max_digits=48, decimal_places=18, default=Decimal(0))
    realized_pnl = models.DecimalField(**MONEY, default=Decimal(0))  # since the position was opened
    cum_realized_pnl = models.DecimalField(**MONEY, default=Decimal(0))
    leverage = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal(10))
    cross_margin = models.BooleanField(default=True)
    margin = models.DecimalField(**MONEY, default=Decimal(0))  # initial margin held for the position
    opened_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "instrument"], name="position_unique"),
            models.CheckConstraint(condition=Q(leverage__gt=0) & Q(margin__gte=0), name="position_leverage_positive"),
        ]
