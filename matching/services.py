"""Writes of the trading core: instruments, order submission, amend, cancel, leverage.

Orders are validated and their margin reserved here, in one transaction; the engine applies
them after the commit (docs/ENGINE.md). Error messages follow BitMEX's, which clients match on.
"""
import uuid
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import NamedTuple, Sequence

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account, Balance
from accounts.services import InsufficientBalance, lock_balances
from accounts.selectors import available_balance
from config.decimals import plain
from matching import contracts, persistence, selectors, streams
from matching.ids import time_ordered_uuid_text
from matching.models import (
    OPEN_STATUSES, Instrument, Order, OrderCommand, OrdStatus, OrdType, Position, Side, TimeInForce, triggers_rising,
)

EXEC_INSTS = {"ParticipateDoNotInitiate", "ReduceOnly", "Close", "LastPrice", "MarkPrice", "IndexPrice"}
TRIGGER_INSTS = {"LastPrice", "MarkPrice", "IndexPrice"}
CONDITIONAL_TYPES = {OrdType.STOP, OrdType.STOP_LIMIT, OrdType.MARKET_IF_TOUCHED, OrdType.LIMIT_IF_TOUCHED}
LIMIT_TYPES = {OrdType.LIMIT, OrdType.STOP_LIMIT, OrdType.LIMIT_IF_TOUCHED}
TRAILING_STOP_PEG = "TrailingStopPeg"
MAX_CL_ORD_ID = 36


class OrderRejected(ValueError):
    """A request the exchange refuses; the message is shown to the client as it is."""


DEFAULT_INSTRUMENTS = [
    # BitMEX's XBTUSD: 1 USD contracts settled in XBT, inverse
    dict(symbol="XBTUSD", root_symbol="XBT", underlying="XBT", quote_currency="USD", position_currency="USD",
         settle_asset_id="XBT", is_inverse=True, tick_size=Decimal("0.5"), lot_size=100,
         multiplier=-100_000_000, underlying_to_settle_multiplier=-100_000_000, contract_size=Decimal(1),
         init_margin=Decimal("0.01"), maint_margin=Decimal("0.005"), maker_fee=Decimal("-0.0001"),
         taker_fee=Decimal("0.00075"), max_order_qty=10_000_000, max_price=Decimal(1_000_000)),
    # BitMEX's XBTUSDT: contracts of 0.000001 XBT settled in USDT, linear
    dict(symbol="XBTUSDT", root_symbol="XBT", underlying="XBT", quote_currency="USDT", position_currency="XBT",
         settle_asset_id="USDT", is_inverse=False, tick_size=Decimal("0.5"), lot_size=1000,
         multiplier=1, underlying_to_position_multiplier=1_000_000, quote_to_settle_multiplier=1_000_000,
         contract_size=Decimal("0.000001"), init_margin=Decimal("0.01"), maint_margin=Decimal("0.005"),
         maker_fee=Decimal("-0.0001"), taker_fee=Decimal("0.00075"), max_order_qty=1_000_000_000,
         max_price=Decimal(1_000_000)),
    # ETHUSDT: contracts of 0.00001 ETH settled in USDT, linear
    dict(symbol="ETHUSDT", root_symbol="ETH", underlying="ETH", quote_currency="USDT", position_currency="ETH",
         settle_asset_id="USDT", is_inverse=False, tick_size=Decimal("0.05"), lot_size=1000,
         multiplier=1, underlying_to_position_multiplier=100_000, quote_to_settle_multiplier=1_000_000,
         contract_size=Decimal("0.00001"), init_margin=Decimal("0.02"), maint_margin=Decimal("0.01"),
         maker_fee=Decimal("-0.0001"), taker_fee=Decimal("0.00075"), max_order_qty=1_000_000_000,
         max_price=Decimal(100_000)),
]


def create_default_instruments(instrument_model=Instrument) -> list[Instrument]:
    instruments = []
    for spec in DEFAULT_INSTRUMENTS:
        fields = dict(spec)
        instrument, _ = instrument_model.objects.update_or_create(symbol=fields.pop("symbol"), defaults=fields)
        instruments.append(instrument)
    return instruments


# ---------- validation ----------

def _decimal(value, field: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise OrderRejected(f"Invalid {field}") from None
    if not number.is_finite():
        raise OrderRejected(f"Invalid {field}")
    return number


def side_and_qty(side, order_qty):
    """BitMEX's default side: Buy, unless orderQty is negative (a signed quantity), which is a Sell of
    its size. A side given with a negative quantity stays an invalid quantity."""
    if side not in (None, ""):
        return side, order_qty
    try:
        qty = _decimal(order_qty, "orderQty")
    except OrderRejected:
        raise OrderRejected("orderQty is invalid") from None
    if qty is None:
        raise OrderRejected("Invalid side: must be Buy or Sell")
    return (Side.SELL, -qty) if qty < 0 else (Side.BUY, qty)


def _price(value, instrument: Instrument, field: str = "price") -> Decimal | None:
    price = _decimal(value, field)
    if price is None:
        return None
    if price <= 0 or price > instrument.max_price:
        raise OrderRejected(f"Invalid {field}")
    if price % instrument.tick_size:
        raise OrderRejected(f"Invalid {field} tickSize: must be a multiple of {plain(instrument.tick_size)}")
    return price


def _qty(value, instrument: Instrument, field: str = "orderQty") -> int:
    try:
        qty = _decimal(value, field)
    except OrderRejected:
        raise OrderRejected("orderQty is invalid") from None
    if qty is None or qty <= 0 or qty != qty.to_integral_value() or qty > instrument.max_order_qty:
        raise OrderRejected("orderQty is invalid")
    qty = int(qty)
    if qty % instrument.lot_size:
        raise OrderRejected(f"orderQty is invalid: must be a multiple of lotSize {instrument.lot_size}")
    return qty


def _exec_inst(value: str, ord_type: str) -> str:
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in EXEC_INSTS]
    if unknown:
        raise OrderRejected(f"Invalid execInst: {','.join(unknown)}")
    if len(set(names) & TRIGGER_INSTS) > 1:
        raise OrderRejected("Invalid execInst: choose one of LastPrice, MarkPrice, IndexPrice")
    if set(names) & TRIGGER_INSTS and ord_type not in CONDITIONAL_TYPES:
        raise OrderRejected(f"Invalid execInst: a trigger price applies to conditional orders, not {ord_type}")
    if "ParticipateDoNotInitiate" in names and ord_type not in LIMIT_TYPES:
        raise OrderRejected("Invalid execInst: ParticipateDoNotInitiate needs a limit price")
    return ",".join(dict.fromkeys(names))


def _peg_offset(value, instrument: Instrument, side: str, ord_type: str) -> Decimal:
    offset = _decimal(value, "pegOffsetValue")
    if offset is None or offset == 0 or abs(offset) > instrument.max_price or offset % instrument.tick_size:
        raise OrderRejected("Invalid pegOffsetValue")
    if triggers_rising(side, ord_type) != (offset > 0):
        raise OrderRejected("Invalid pegOffsetValue: an order triggered by a falling price (a sell stop, a buy "
                            "take-profit) trails below it (negative), the others above it (positive)")
    return offset


def trailing_stop_px(instrument: Instrument, offset: Decimal) -> Decimal:
    """A trailing order's stopPx as the web sees the price; its margin is reserved there, and the
    engine pegs it again at the price it has when it takes the order."""
    reference = instrument.last_price or instrument.mark_price
    if reference is None:
        raise OrderRejected("Invalid pegOffsetValue: no last price to trail yet")
    if reference + offset <= 0:
        raise OrderRejected("Invalid pegOffsetValue")
    return reference + offset


@dataclass(frozen=True)
class OrderRequest:
    instrument: Instrument
    side: str
    ord_type: str
    order_qty: int  # 0: Close the whole position
    price: Decimal | None
    stop_px: Decimal | None
    time_in_force: str
    exec_inst: str
    peg_price_type: str
    peg_offset_value: Decimal | None

    @property
    def reduce_only(self) -> bool:
        return bool({"ReduceOnly", "Close"} & set(self.exec_inst.split(",")))


def validate_order(*, symbol: str, side: str | None, order_qty, ord_type: str | None, price=None, stop_px=None,
                   time_in_force: str | None = None, exec_inst: str = "", peg_price_type: str = "",
                   peg_offset_value=None) -> OrderRequest:
    instrument = Instrument.objects.select_related("settle_asset").filter(symbol=symbol).first()
    if instrument is None:
        raise OrderRejected(f"Invalid symbol: {symbol}")
    if instrument.state != "Open":
        raise OrderRejected(f"Instrument {symbol} is not open for trading")
    side, order_qty = side_and_qty(side, order_qty)
    if side not in Side.values:
        raise OrderRejected("Invalid side: must be Buy or Sell")
    if peg_price_type and peg_price_type != TRAILING_STOP_PEG:
        raise OrderRejected("Invalid pegPriceType: only TrailingStopPeg is supported")
    price_given = price not in (None, "")
    stop_given = stop_px not in (None, "") or peg_price_type
    if not ord_type:  # BitMEX infers the type from the prices given
        ord_type = {(False, False): OrdType.MARKET, (True, False): OrdType.LIMIT,
                    (False, True): OrdType.STOP, (True, True): OrdType.STOP_LIMIT}[(price_given, bool(stop_given))]
    if ord_type not in OrdType.values:
        raise OrderRejected(f"Invalid ordType: {ord_type}")
    exec_inst = _exec_inst(exec_inst, ord_type)
    closing = "Close" in exec_inst.split(",")
    qty = 0 if closing and order_qty in (None, "", 0) else _qty(order_qty, instrument)
    price = _price(price, instrument)
    if ord_type in LIMIT_TYPES and price is None:
        raise OrderRejected("Invalid price")
    if ord_type not in LIMIT_TYPES and price is not None:
        raise OrderRejected(f"Invalid price: a {ord_type} order takes no price")
    offset = None
    if peg_offset_value not in (None, "") and not peg_price_type:
        raise OrderRejected("Invalid pegOffsetValue: it needs pegPriceType TrailingStopPeg")
    if peg_price_type:
        if ord_type not in CONDITIONAL_TYPES:
            raise OrderRejected("Invalid pegPriceType: a trailing order is a Stop, StopLimit, MarketIfTouched "
                                "or LimitIfTouched order")
        offset = _peg_offset(peg_offset_value, instrument, side, ord_type)
        stop_px = trailing_stop_px(instrument, offset)
    stop = _price(stop_px, instrument, "stopPx")
    if ord_type in CONDITIONAL_TYPES and stop is None:
        raise OrderRejected("Invalid stopPx for ordType")
    if ord_type not in CONDITIONAL_TYPES and stop is not None:
        raise OrderRejected("Invalid stopPx for ordType")
    default_tif = TimeInForce.GOOD_TILL_CANCEL if ord_type in LIMIT_TYPES else TimeInForce.IMMEDIATE_OR_CANCEL
    time_in_force = time_in_force or default_tif
    if time_in_force not in TimeInForce.values:
        raise OrderRejected(f"Invalid timeInForce: {time_in_force}")
    if ord_type not in LIMIT_TYPES and time_in_force == TimeInForce.GOOD_TILL_CANCEL:
        time_in_force = TimeInForce.IMMEDIATE_OR_CANCEL  # a market order never rests
    if "ParticipateDoNotInitiate" in exec_inst and time_in_force != TimeInForce.GOOD_TILL_CANCEL:
        raise OrderRejected("Invalid execInst: ParticipateDoNotInitiate needs timeInForce GoodTillCancel")
    return OrderRequest(instrument, side, ord_type, qty, price, stop, time_in_force, exec_inst,
                        peg_price_type or "", offset)


# ---------- margin ----------

def market_protection_price(instrument: Instrument, side: str, reference: Decimal | None = None) -> Decimal:
    """The worst price a market order may fill at: the reference price moved by the protection band."""
    if reference is None:
        reference = (instrument.ask_price if side == Side.BUY else instrument.bid_price) or instrument.last_price
    if reference is None:
        raise OrderRejected("Market order rejected: there is no market price yet")
    band = Decimal(1) + (settings.MARKET_PROTECTION if side == Side.BUY else -settings.MARKET_PROTECTION)
    ticks = (reference * band / instrument.tick_size).to_integral_value(ROUND_CEILING if side == Side.BUY else ROUND_FLOOR)
    return max(ticks, 1) * instrument.tick_size


def margin_price(instrument: Instrument, side: str, *, price: Decimal | None, stop_px: Decimal | None) -> Decimal:
    """The price margin is reserved at: of the prices the order may fill at, the one that makes its
    position worth the most. It fills at its limit (a market order's: its protection price) or
    better, at the best opposite price it crosses: the book's now, or about its trigger price for a
    conditional order. A linear position is worth more the higher it was filled (a sell may fill
    above its limit, at the bid); an inverse one the lower (a buy may fill below its limit, at the ask)."""
    if price is not None:
        limit = price
    else:
        limit = market_protection_price(instrument, side, stop_px)
    crossing = stop_px if stop_px is not None else instrument.ask_price if side == Side.BUY else instrument.bid_price
    if crossing is not None:
        if instrument.is_inverse and side == Side.BUY:
            return min(limit, crossing)
        if not instrument.is_inverse and side == Side.SELL:
            return max(limit, crossing)
    return limit


def opening_qty(position_qty: int, side: str, qty: int) -> int:
    """The part of an order that opens or adds to a position; the rest only reduces it."""
    return qty - reducing_qty(position_qty, side, qty)


def reducing_qty(position_qty: int, side: str, qty: int) -> int:
    """The part of an order that only reduces the position: it holds no margin (an order's
    unmargined_qty)."""
    reducible = -position_qty if side == Side.BUY else position_qty
    return min(qty, max(reducible, 0))


def order_margin(*, instrument: Instrument, side: str, qty: int, price: Decimal, leverage: Decimal,
                 position_qty: int) -> Decimal:
    """Initial margin of the opening part plus the taker fee on the whole order."""
    terms = instrument.terms
    opening = opening_qty(position_qty, side, qty)
    margin = contracts.initial_margin(opening, price, leverage, terms) if opening else Decimal(0)
    fee = contracts.fee(qty, price, max(instrument.taker_fee, Decimal(0)), terms)
    return margin + max(fee, Decimal(0))


def position_for(account: Account, instrument: Instrument) -> Position:
    position = Position.objects.filter(account=account, instrument=instrument).first()
    if position is None:
        default = min(settings.DEFAULT_LEVERAGE, instrument.max_leverage)
        Position.objects.bulk_create([Position(account=account, instrument=instrument, leverage=default)],
                                     ignore_conflicts=True)
        position = Position.objects.get(account=account, instrument=instrument)
    return position


def _reserve(balance: Balance, amount: Decimal) -> None:
    if amount <= 0:
        return
    available = available_balance(balance)
    if amount > available:
        raise InsufficientBalance(f"{amount} {balance.asset_id} required, {available} available")
    balance.order_margin += amount
    balance.save(update_fields=["order_margin"])


# ---------- orders ----------

def submit_order(*, account: Account, symbol: str, side: str | None = None, order_qty=None, ord_type: str | None = None,
                 price=None, stop_px=None, time_in_force: str | None = None, exec_inst: str = "",
                 cl_ord_id: str = "", peg_price_type: str = "", peg_offset_value=None, text: str = "",
                 wait: float | None = None) -> Order:
    """Validate, reserve margin and queue the order for the engine.

    A repeated cl_ord_id returns the first order (a retry); on another symbol, side or type it is
    refused as BitMEX does ("Duplicate clOrdID"). With `wait`, returns the order as the engine left
    it, or as PendingNew if the engine did not answer in time."""
    cl_ord_id = (cl_ord_id or "").strip()
    if len(cl_ord_id) > MAX_CL_ORD_ID:
        raise OrderRejected(f"Invalid clOrdID: at most {MAX_CL_ORD_ID} characters")
    sideless_close = side in (None, "") and order_qty in (None, "", 0) and "Close" in str(exec_inst or "").split(",")
    if cl_ord_id and (existing := _earlier_order(account, cl_ord_id, symbol, side, order_qty, ord_type,
                                                 any_side=sideless_close)):
        return existing
    if sideless_close:
        side = _closing_side(account, symbol)
    request = validate_order(symbol=symbol, side=side, order_qty=order_qty, ord_type=ord_type, price=price,
                             stop_px=stop_px, time_in_force=time_in_force, exec_inst=exec_inst,
                             peg_price_type=peg_price_type, peg_offset_value=peg_offset_value)
    timeout = _reply_timeout(wait)
    try:
        order = _store_order(account, request, cl_ord_id, text, reply=timeout > 0)
    except IntegrityError:
        if cl_ord_id and (existing := _earlier_order(account, cl_ord_id, symbol, side, order_qty, ord_type)):
            return existing  # the same request raced with itself
        raise
    return _after_queueing(order, "order", order.pk, timeout)


def _closing_side(account: Account, symbol) -> str:
    """BitMEX's Close order without a side: the side that closes the position (the engine cuts it
    to the position it finds, should that have changed since)."""
    qty = (Position.objects.filter(account=account, instrument__symbol=symbol)
           .values_list("current_qty", flat=True).first()) or 0
    if not qty and not Instrument.objects.filter(symbol=symbol).exists():
        raise OrderRejected(f"Invalid symbol: {symbol}")
    if not qty:
        raise OrderRejected(f"Invalid side: there is no {symbol} position to close; give side and orderQty")
    return Side.SELL if qty > 0 else Side.BUY


def _earlier_order(account: Account, cl_ord_id: str, symbol, side, order_qty, ord_type,
                   any_side: bool = False) -> Order | None:
    """The order already placed with this clOrdID, if the request repeats it. Only the terms no amend
    or engine changes are compared (a reduce-only order's size may have been cut, its price amended);
    any_side: a Close without a side, which took the side of the position of its time."""
    existing = Order.objects.select_related("instrument").filter(account=account, cl_ord_id=cl_ord_id).first()
    if existing is None:
        return None
    side = existing.side if any_side else side_and_qty(side, order_qty)[0]
    if symbol != existing.instrument.symbol or side != existing.side or ord_type not in (None, "", existing.ord_type):
        raise OrderRejected("Duplicate clOrdID")
    return existing


@transaction.atomic
def _store_order(account: Account, request: OrderRequest, cl_ord_id: str, text: str, reply: bool) -> Order:
    instrument = request.instrument
    reserved = Decimal(0)
    unmargined = 0  # a reduce-only order holds no margin, and is kept to its position anyway
    protect = None
    if request.ord_type == OrdType.MARKET:
        protect = market_protection_price(instrument, request.side)
    if not request.reduce_only:
        position_for(account, instrument)  # created if missing, before any lock (the engine inserts positions too)
        # locked first: every other margin-holding order of the account, and a leverage change, is then
        # committed (or waits for this one), so the read below sees them all
        balance = lock_balances([(account.pk, instrument.settle_asset_id)])[(account.pk, instrument.settle_asset_id)]
        if cl_ord_id and Order.objects.filter(account=account, cl_ord_id=cl_ord_id).exists():
            # its first try committed while this one waited for the lock: submit_order answers with
            # it, where reserving again could refuse it for want of the margin that try holds
            raise IntegrityError("clOrdID already used")
        position = selectors.position_for_margin(account_id=account.pk, instrument_id=instrument.pk, side=request.side)
        reserved = order_margin(instrument=instrument, side=request.side, qty=request.order_qty,
                                price=margin_price(instrument, request.side, price=request.price,
                                                   stop_px=request.stop_px),
                                leverage=position.leverage, position_qty=position.qty)
        unmargined = reducing_qty(position.qty, request.side, request.order_qty)
        _reserve(balance, reserved)
    order = Order.objects.create(
        account=account, instrument=instrument, cl_ord_id=cl_ord_id, side=request.side,
        ord_type=request.ord_type, time_in_force=request.time_in_force, exec_inst=request.exec_inst,
        price=request.price, stop_px=request.stop_px, protect_price=protect,
        peg_price_type=request.peg_price_type, peg_offset_value=request.peg_offset_value,
        order_qty=request.order_qty, leaves_qty=request.order_qty, margin_reserved=reserved,
        unmargined_qty=unmargined, text=text[:200])
    transaction.on_commit(lambda: streams.send_commands(instrument.symbol, [("order", order.pk)], reply))
    return order


def _reply_timeout(wait: float | None) -> float:
    return settings.ENGINE_REPLY_TIMEOUT if wait is None else wait


def _after_queueing(order: Order, kind: str, pk: int, timeout: float) -> Order:
    if timeout > 0:
        streams.wait_for_engine(kind, pk, timeout)
    order.refresh_from_db()
    return order


def find_order(*, account: Account, order_id=None, cl_ord_id: str | None = None) -> Order:
    orders = Order.objects.select_related("instrument", "instrument__settle_asset").filter(account=account)
    if order_id:
        try:
            order = orders.filter(order_id=uuid.UUID(str(order_id))).first()
        except ValueError:
            raise OrderRejected(f"Invalid orderID: {order_id}") from None
    elif cl_ord_id:
        order = orders.filter(cl_ord_id=cl_ord_id).first()
    else:
        raise OrderRejected("orderID or clOrdID is required")
    if order is None:
        raise OrderRejected("Not Found: no such order")
    return order


def amend_order(*, account: Account, order: Order, order_qty=None, leaves_qty=None, price=None, stop_px=None,
                peg_offset_value=None, text: str = "", wait: float | None = None) -> Order:
    """Queues an amend: a smaller quantity keeps time priority, a new price or larger size does not.
    A trailing order's pegOffsetValue pegs it again, at the engine's price when it applies the amend."""
    instrument = order.instrument
    needs_margin = not (order.has_exec_inst("ReduceOnly") or order.has_exec_inst("Close"))  # fixed at entry
    with transaction.atomic():
        # Locks in the engine's order, which writes positions, then balances, then orders: an amend
        # that held its order while it waited for its balance deadlocked with the engine's write.
        balance = None
        if needs_margin:
            position_for(account, instrument)  # created if missing, before any lock
            key = (account.pk, instrument.settle_asset_id)
            balance = lock_balances([key])[key]
        # the order's row only: locking its instrument too would wait for, and deadlock with, the
        # engine, which writes the instrument's prices while it holds balance rows
        order = Order.objects.select_for_update(no_key=True, of=("self",)).select_related("instrument").get(pk=order.pk)
        if order.ord_status not in OPEN_STATUSES:
            raise OrderRejected(f"Unable to amend order due to existing state: {order.ord_status}")
        if order_qty not in (None, "") and leaves_qty not in (None, ""):
            raise OrderRejected("Give orderQty or leavesQty, not both")
        new_price = _price(price, instrument)
        if new_price is not None and order.ord_type not in LIMIT_TYPES:
            raise OrderRejected(f"Invalid price: a {order.ord_type} order takes no price")
        new_stop = _price(stop_px, instrument, "stopPx")
        if new_stop is not None and order.ord_type not in CONDITIONAL_TYPES:
            raise OrderRejected("Invalid stopPx for ordType")
        if new_stop is not None and order.peg_price_type:
            raise OrderRejected("Invalid stopPx: a trailing order's stopPx follows the price; amend its pegOffsetValue")
        new_offset = None
        if peg_offset_value not in (None, ""):
            if not order.peg_price_type:
                raise OrderRejected("Invalid pegOffsetValue: the order does not trail the price")
            if order.ord_status not in (OrdStatus.PENDING_NEW, OrdStatus.UNTRIGGERED):
                raise OrderRejected("Invalid pegOffsetValue: the order has triggered")
            new_offset = _peg_offset(peg_offset_value, instrument, order.side, order.ord_type)
            new_stop = trailing_stop_px(instrument, new_offset)
        new_leaves = None
        new_order_qty = None
        if order_qty not in (None, ""):
            new_order_qty = _qty(order_qty, instrument)
            new_leaves = new_order_qty - order.cum_qty
        elif leaves_qty not in (None, ""):
            new_leaves = _qty(leaves_qty, instrument, "leavesQty")
            new_order_qty = order.cum_qty + new_leaves
        if new_leaves is not None and new_leaves <= 0:
            raise OrderRejected("orderQty is invalid: it must exceed the filled quantity")
        if new_price is None and new_stop is None and new_leaves is None:
            raise OrderRejected("Nothing to amend: give price, stopPx, pegOffsetValue, orderQty or leavesQty")
        delta, new_margin, new_unmargined = Decimal(0), None, None
        if needs_margin:
            position = selectors.position_for_margin(account_id=account.pk, instrument_id=instrument.pk,
                                                     side=order.side, excluding=order.pk)
            qty = new_leaves if new_leaves is not None else order.leaves_qty
            new_unmargined = reducing_qty(position.qty, order.side, qty)
            new_margin = order_margin(instrument=instrument, side=order.side, qty=qty,
                                      price=margin_price(instrument, order.side, price=new_price or order.price,
                                                         stop_px=new_stop or order.stop_px),
                                      leverage=position.leverage, position_qty=position.qty)
            delta = max(new_margin - order.margin_reserved, Decimal(0))
            _reserve(balance, delta)
        command = OrderCommand.objects.create(order=order, kind=OrderCommand.Kind.AMEND, new_price=new_price,
                                              new_stop_px=new_stop, new_order_qty=new_order_qty,
                                              new_leaves_qty=new_leaves, margin_delta=delta,
                                              new_margin=new_margin, new_unmargined_qty=new_unmargined,
                                              new_peg_offset_value=new_offset, text=text[:200])
        timeout = _reply_timeout(wait)
        transaction.on_commit(lambda: streams.send_commands(instrument.symbol, [("command", command.pk)], timeout > 0))
    return _after_queueing(order, "command", command.pk, timeout)


def cancel_orders(*, orders: list[Order], text: str = "", wait: float | None = None) -> list[Order]:
    """Queues cancels of the open ones among orders; the others come back as they are."""
    open_orders = [o for o in orders if o.ord_status in OPEN_STATUSES]
    commands = persistence.store_commands([(o.pk, OrderCommand.Kind.CANCEL, None, None, None, None, text[:200],
                                            Decimal(0), None) for o in open_orders])
    by_symbol: dict[str, list[tuple[str, int]]] = {}
    for order, command_pk in zip(open_orders, commands):
        by_symbol.setdefault(order.instrument.symbol, []).append(("command", command_pk))
    timeout = _reply_timeout(wait)
    for symbol, entries in by_symbol.items():
        streams.send_commands(symbol, entries, reply=timeout > 0)
    if commands and timeout > 0:
        streams.wait_for_engine("command", commands[-1], timeout)
    fresh = {o.pk: o for o in Order.objects.select_related("instrument").filter(pk__in=[o.pk for o in orders])}
    return [fresh[o.pk] for o in orders]


def cancel_all_orders(*, account: Account, symbol: str | None = None, text: str = "",
                      wait: float | None = None) -> list[Order]:
    orders = Order.objects.select_related("instrument").filter(account=account, ord_status__in=OPEN_STATUSES)
    if symbol:
        if not Instrument.objects.filter(symbol=symbol).exists():
            raise OrderRejected(f"Invalid symbol: {symbol}")
        orders = orders.filter(instrument__symbol=symbol)
    return cancel_orders(orders=list(orders.order_by("pk")), text=text, wait=wait)


@transaction.atomic
def set_leverage(*, account: Account, symbol: str, leverage, cross_margin: bool | None = None) -> Position:
    """Changes a position's leverage (None keeps it) and margin mode; an open position's margin is
    recomputed and must be available."""
    instrument = Instrument.objects.select_related("settle_asset").filter(symbol=symbol).first()
    if instrument is None:
        raise OrderRejected(f"Invalid symbol: {symbol}")
    position_for(account, instrument)
    position = Position.objects.select_for_update(no_key=True).get(account=account, instrument=instrument)
    value = position.leverage if leverage is None else _decimal(leverage, "leverage")
    if value is None or value < 0 or value > instrument.max_leverage:
        raise OrderRejected(f"Invalid leverage: must be between 0.01 and {instrument.max_leverage}")
    if value == 0:  # BitMEX: leverage 0 means cross margin at the instrument's maximum
        cross_margin, value = True, instrument.max_leverage
    if value < Decimal("0.01"):
        raise OrderRejected("Invalid leverage: must be between 0.01 and " f"{instrument.max_leverage}")
    value = value.quantize(Decimal("0.01"))
    key = (account.pk, instrument.settle_asset_id)
    # locked after the position, as the engine does; an order being stored holds it until it commits,
    # so the check below sees every order whose margin was reserved at the leverage of before
    balance = lock_balances([key])[key]
    if value < position.leverage and selectors.has_margined_open_orders(account_id=account.pk,
                                                                        instrument_id=instrument.pk):
        # their margin was reserved at the higher leverage and would not cover their fills
        raise OrderRejected(f"Invalid leverage: cancel your open {symbol} orders before lowering it")
    position.leverage = value
    if cross_margin is not None:
        position.cross_margin = cross_margin
    if position.current_qty:
        terms = instrument.terms
        entry = contracts.avg_entry_price(position.current_qty, position.entry_value, terms)
        new_margin = contracts.initial_margin(position.current_qty, entry, position.leverage, terms)
        extra = new_margin - position.margin
        if extra > 0 and extra > available_balance(balance):
            raise InsufficientBalance(f"{extra} {instrument.settle_asset_id} more margin needed")
        balance.position_margin += extra
        balance.save(update_fields=["position_margin"])
        position.margin = new_margin
    position.save(update_fields=["leverage", "cross_margin", "margin", "updated_at"])
    return position


# ---------- many orders at once (the copy fan-out, bots) ----------

class BulkOrder(NamedTuple):  # tuples: a fan-out builds ten thousand, a frozen dataclass costs 5x more
    account_id: int
    side: str
    order_qty: int
    ord_type: str  # Limit (with price) or Market
    price: Decimal | None
    time_in_force: str
    cl_ord_id: str  # required: it makes a repeated submission a no-op
    exec_inst: str = ""
    text: str = ""
    stop_px: Decimal | None = None  # conditional orders (reduce-only ones: take-profit, stop-loss)


class BulkResult(NamedTuple):
    request: BulkOrder
    order_pk: int | None  # the stored order (new or from an earlier submission); None when refused
    reason: str = ""  # why it was refused


INSUFFICIENT = "Account has insufficient Available Balance"


class LockedAccounts(NamedTuple):
    """What a bulk order check knows of its accounts: their balance rows in the settlement asset,
    locked by this transaction (amount, order margin, position margin), and their positions."""
    balances: dict[int, tuple[Decimal, Decimal, Decimal]]
    positions: selectors.AccountPositions


def lock_accounts(*, instrument: Instrument, account_ids, positions: selectors.AccountPositions | None = None
                  ) -> LockedAccounts:
    """Locks the accounts' balance rows (creating missing ones) in the caller's transaction and reads
    their positions, unless the caller has: a position writer locks positions before balances."""
    accounts = sorted(set(account_ids))
    balances = persistence.lock_balance_rows([(a, instrument.settle_asset_id) for a in accounts])
    if positions is None:
        positions = selectors.account_positions(instrument=instrument, account_ids=accounts)
    return LockedAccounts(balances, positions)


def submit_orders_bulk(*, instrument: Instrument, orders: Sequence[BulkOrder],
                       accounts: LockedAccounts | None = None) -> list[BulkResult]:
    """Stores many orders of one instrument in ONE transaction and queues them in one stream write.

    Margin is checked and reserved per account as in submit_order; an order the account cannot
    afford is refused with BitMEX's message, the others go on. An order whose clOrdID the account
    already used is not stored again: its result points at the existing order. A caller that has
    locked the accounts in its own transaction (lock_accounts) passes them."""
    if not orders:
        return []
    asset = instrument.settle_asset_id
    now = timezone.now()
    # inside a caller's transaction, no savepoint: two round trips a fan-out chunk, and an error
    # here fails the caller's transaction as a whole anyway
    with transaction.atomic(savepoint=False):
        if accounts is None:
            accounts = lock_accounts(instrument=instrument, account_ids=[o.account_id for o in orders])
        elif not accounts.balances.keys() >= {o.account_id for o in orders}:
            raise ValueError("every order's account must be locked")
        balances = accounts.balances  # locked before the clOrdID check
        existing = persistence.existing_cl_ord_ids([(o.account_id, o.cl_ord_id) for o in orders])
        positions, leverages, unrealized = accounts.positions
        # what the accounts' open orders, then the earlier orders of this call, reduce of a position
        # first (as position_for_margin counts them); read after the balance locks
        same_side = selectors.open_leaves_by_side(
            instrument_id=instrument.pk, account_ids=[o.account_id for o in orders if positions.get(o.account_id)])
        default_leverage = min(settings.DEFAULT_LEVERAGE, instrument.max_leverage)
        results, rows, reserved = [], [], {}
        for request in orders:
            if (request.account_id, request.cl_ord_id) in existing:
                results.append(BulkResult(request, existing[(request.account_id, request.cl_ord_id)]))
                continue
            reduce_only = bool({"ReduceOnly", "Close"} & set(request.exec_inst.split(",")))
            try:
                protect = market_protection_price(instrument, request.side) if request.ord_type == OrdType.MARKET else None
            except OrderRejected as error:
                results.append(BulkResult(request, None, str(error)))
                continue
            margin, unmargined = Decimal(0), 0
            key = (request.account_id, request.side)
            if not reduce_only:
                position_qty = selectors.position_left(positions.get(request.account_id, 0), request.side,
                                                       same_side.get(key, 0))
                margin = order_margin(instrument=instrument, side=request.side, qty=request.order_qty,
                                      price=margin_price(instrument, request.side, price=request.price,
                                                         stop_px=request.stop_px),
                                      leverage=leverages.get(request.account_id, default_leverage),
                                      position_qty=position_qty)
                unmargined = reducing_qty(position_qty, request.side, request.order_qty)
                amount, order_m, position_m = balances[request.account_id]
                available = (amount - order_m - position_m - reserved.get(request.account_id, Decimal(0))
                             + min(unrealized.get(request.account_id, Decimal(0)), Decimal(0)))
                if margin > available:
                    results.append(BulkResult(request, None, f"{INSUFFICIENT}: {margin} {asset} required, "
                                                             f"{max(available, Decimal(0))} available"))
                    continue
                reserved[request.account_id] = reserved.get(request.account_id, Decimal(0)) + margin
            same_side[key] = same_side.get(key, 0) + request.order_qty
            rows.append((request, protect, margin, unmargined))
        stamp = now.isoformat()  # text: COPY would format a datetime twice per row
        ids = persistence.store_new_orders([
            (time_ordered_uuid_text(), r.account_id, instrument.pk, r.cl_ord_id, r.side, r.ord_type, r.time_in_force,
             r.exec_inst, r.price, r.stop_px, protect, r.order_qty, r.order_qty, margin, unmargined, r.text[:200],
             stamp, stamp)
            for r, protect, margin, unmargined in rows])
        persistence.add_order_margin(asset, reserved)
        results += [BulkResult(r, pk) for pk, (r, *_) in zip(ids, rows)]
        transaction.on_commit(lambda: streams.send_commands(instrument.symbol, [("order", pk) for pk in ids]))
    by_request = {id(result.request): result for result in results}
    return [by_request[id(request)] for request in orders]
