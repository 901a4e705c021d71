"""BitMEX-shaped rows of instruments, orders, executions, trades and positions.

The REST API and the websocket tables publish the same rows. Prices are plain numbers, money is
an integer count of the settlement asset's smallest unit (satoshi, micro-USDT) as BitMEX sends
it, and every time is ISO-8601 with milliseconds and a Z (docs/API.md)."""
from datetime import datetime, timezone
from decimal import Decimal

from django.utils.timezone import now as django_now

from accounts.models import Asset
from matching import contracts
from matching.models import Execution, Instrument, Order, Position, Side

EXCHANGE = "XBME"


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def raw(amount: Decimal | None, asset: Asset) -> int | None:
    """An amount in the asset's smallest unit, as BitMEX sends money."""
    if amount is None:
        return None
    return int(amount.scaleb(asset.scale).to_integral_value())


def number(value: Decimal | None):
    """Prices as JSON numbers: integral ones as ints, like BitMEX."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def l2_id(instrument: Instrument, side: str, price: Decimal) -> int:
    """A stable id per price level (BitMEX's are per symbol and price)."""
    ticks = int(price / instrument.tick_size)
    return instrument.pk * 10**12 + ticks * 2 + (0 if side == Side.SELL else 1)


def notionals(instrument: Instrument, qty: int, price: Decimal | None) -> tuple[float | None, float | None]:
    """(homeNotional, foreignNotional) of a signed quantity: the base amount and minus the quote amount."""
    if price is None or not price:
        return None, None
    if instrument.is_inverse:
        quote = Decimal(qty) * instrument.contract_size
        base = quote / price
    else:
        base = Decimal(qty) * instrument.contract_size
        quote = base * price
    return float(base), float(-quote)


def wallet_asset(asset: Asset) -> dict:
    return {"asset": asset.code, "currency": asset.currency, "majorCurrency": asset.code, "name": asset.name,
            "currencyType": "Crypto", "scale": asset.scale, "enabled": True, "isMarginCurrency": True,
            "minDepositAmount": None, "minWithdrawalAmount": None, "maxWithdrawalAmount": None, "networks": []}


def instrument_row(instrument: Instrument, stats: dict | None = None) -> dict:
    stats = stats or {}
    settle = instrument.settle_asset
    row = {
        "symbol": instrument.symbol, "rootSymbol": instrument.root_symbol, "state": instrument.state,
        "typ": instrument.typ, "listing": iso(instrument.created_at), "front": iso(instrument.created_at),
        "expiry": None, "settle": None, "positionCurrency": instrument.position_currency,
        "underlying": instrument.underlying, "quoteCurrency": instrument.quote_currency,
        "underlyingSymbol": f"{instrument.underlying}=", "reference": EXCHANGE,
        "maxOrderQty": instrument.max_order_qty, "maxPrice": number(instrument.max_price),
        "lotSize": instrument.lot_size, "tickSize": number(instrument.tick_size),
        "multiplier": instrument.multiplier,
        "settlCurrency": settle.currency, "underlyingToPositionMultiplier": instrument.underlying_to_position_multiplier,
        "underlyingToSettleMultiplier": instrument.underlying_to_settle_multiplier,
        "quoteToSettleMultiplier": instrument.quote_to_settle_multiplier,
        "isQuanto": instrument.is_quanto, "isInverse": instrument.is_inverse,
        "initMargin": float(instrument.init_margin), "maintMargin": float(instrument.maint_margin),
        "makerFee": float(instrument.maker_fee), "takerFee": float(instrument.taker_fee),
        "lastPrice": number(instrument.last_price), "bidPrice": number(instrument.bid_price),
        "askPrice": number(instrument.ask_price), "markPrice": number(instrument.mark_price),
        "fairPrice": number(instrument.mark_price), "indicativeSettlePrice": number(instrument.mark_price),
        "midPrice": number((instrument.bid_price + instrument.ask_price) / 2)
        if instrument.bid_price and instrument.ask_price else None,
        "highPrice": number(stats.get("high")), "lowPrice": number(stats.get("low")),
        "prevPrice24h": number(stats.get("open")), "vwap": number(stats.get("vwap")),
        "volume24h": stats.get("volume", 0), "homeNotional24h": float(stats.get("home", 0)),
        "foreignNotional24h": float(stats.get("foreign", 0)), "turnover24h": stats.get("turnover", 0),
        "fundingRate": None, "indicativeFundingRate": None, "fundingTimestamp": None, "fundingInterval": None,
        "timestamp": iso(instrument.updated_at),
    }
    return row


def order_row(order: Order) -> dict:
    instrument = order.instrument
    return {
        "orderID": str(order.order_id), "clOrdID": order.cl_ord_id, "clOrdLinkID": "", "account": order.account_id,
        "symbol": instrument.symbol, "side": order.side, "orderQty": order.order_qty,
        "price": number(order.price), "displayQty": None, "stopPx": number(order.stop_px),
        "pegOffsetValue": number(order.peg_offset_value), "pegPriceType": order.peg_price_type,
        "currency": instrument.quote_currency, "settlCurrency": instrument.settle_asset.currency,
        "ordType": order.ord_type, "timeInForce": order.time_in_force, "execInst": order.exec_inst,
        "contingencyType": "", "exDestination": EXCHANGE, "ordStatus": order.ord_status,
        "triggered": order.triggered, "workingIndicator": order.working_indicator,
        "ordRejReason": order.ord_rej_reason, "leavesQty": order.leaves_qty, "cumQty": order.cum_qty,
        "avgPx": number(order.avg_px), "multiLegReportingType": "SingleSecurity", "text": order.text,
        "transactTime": iso(order.updated_at), "timestamp": iso(order.created_at),
    }


def execution_row(execution: Execution) -> dict:
    order = execution.order
    instrument = execution.instrument
    settle = instrument.settle_asset
    sign = 1 if execution.side == Side.BUY else -1
    value = contracts.contract_value(execution.last_qty, execution.last_px, instrument.terms)
    home, foreign = notionals(instrument, sign * execution.last_qty, execution.last_px)
    row = order_row(order)
    row.update({
        "execID": str(execution.exec_id), "side": execution.side, "lastQty": execution.last_qty,
        "lastPx": number(execution.last_px), "lastMkt": EXCHANGE, "lastLiquidityInd": execution.last_liquidity_ind,
        "execType": execution.exec_type, "ordStatus": execution.ord_status, "leavesQty": execution.leaves_qty,
        "cumQty": execution.cum_qty, "commission": float(execution.commission),
        "tradePublishIndicator": "PublishTrade" if execution.exec_type == "Trade" else "",
        "trdMatchID": str(execution.trd_match_id),
        "execCost": raw(contracts.round_settle(value, instrument.terms), settle) * sign,
        "execComm": raw(execution.exec_comm, settle), "realisedPnl": raw(execution.realized_pnl, settle),
        "homeNotional": home, "foreignNotional": foreign,
        "transactTime": iso(execution.created_at), "timestamp": iso(execution.created_at),
    })
    return row


def trade_row(execution: Execution) -> dict:
    """A public trade: the taker's side of one match."""
    instrument = execution.instrument
    value = contracts.contract_value(execution.last_qty, execution.last_px, instrument.terms)
    home, foreign = notionals(instrument, execution.last_qty, execution.last_px)
    return {
        "timestamp": iso(execution.created_at), "symbol": instrument.symbol, "side": execution.side,
        "size": execution.last_qty, "price": number(execution.last_px), "tickDirection": "",
        "trdMatchID": str(execution.trd_match_id),
        "grossValue": raw(contracts.round_settle(value, instrument.terms), instrument.settle_asset),
        "homeNotional": abs(home) if home is not None else None,
        "foreignNotional": abs(foreign) if foreign is not None else None, "trdType": "Regular",
    }


POSITION_COLUMNS = frozenset({
    "account", "symbol", "currency", "underlying", "quoteCurrency", "commission", "initMarginReq", "maintMarginReq",
    "leverage", "crossMargin", "currentQty", "isOpen", "markPrice", "markValue", "homeNotional", "foreignNotional",
    "currentCost", "posCost", "posInit", "posMargin", "initMargin", "maintMargin", "realisedPnl", "rebalancedPnl",
    "unrealisedPnl", "unrealisedPnlPcnt", "unrealisedRoePcnt", "avgCostPrice", "avgEntryPrice", "breakEvenPrice",
    "liquidationPrice", "bankruptPrice", "openingTimestamp", "timestamp", "lastPrice"
})  # position_row's fields


def position_row(position: Position) -> dict:
    instrument = position.instrument
    settle = instrument.settle_asset
    terms = instrument.terms
    qty = position.current_qty
    mark = instrument.mark_price or instrument.last_price
    entry = contracts.avg_entry_price(qty, position.entry_value, terms)
    unrealized = contracts.unrealized_pnl(qty, position.entry_value, mark, terms)
    home, foreign = notionals(instrument, qty, mark or entry)
    mark_value = contracts.round_settle(contracts.contract_value(qty, mark, terms), terms) if qty and mark else Decimal(0)
    cost = contracts.round_settle(position.entry_value, terms)
    return {
        "account": position.account_id, "symbol": instrument.symbol, "currency": settle.currency,
        "underlying": instrument.underlying, "quoteCurrency": instrument.quote_currency,
        "commission": float(instrument.taker_fee), "initMarginReq": float(1 / position.leverage),
        "maintMarginReq": float(instrument.maint_margin), "leverage": float(position.leverage),
        "crossMargin": position.cross_margin, "currentQty": qty, "isOpen": qty != 0,
        "markPrice": number(mark), "markValue": raw(mark_value, settle) * (1 if qty >= 0 else -1),
        "homeNotional": home, "foreignNotional": foreign,
        "currentCost": raw(cost, settle), "posCost": raw(cost, settle),
        "posInit": raw(position.margin, settle), "posMargin": raw(position.margin, settle),
        "initMargin": 0, "maintMargin": raw(contracts.round_settle(mark_value * instrument.maint_margin, terms), settle),
        "realisedPnl": raw(position.realized_pnl, settle), "rebalancedPnl": raw(position.cum_realized_pnl, settle),
        "unrealisedPnl": raw(unrealized, settle),
        "unrealisedPnlPcnt": float((unrealized / cost).quantize(Decimal("1e-4"))) if cost else 0,
        "unrealisedRoePcnt": float((unrealized / position.margin).quantize(Decimal("1e-4"))) if position.margin else 0,
        "avgCostPrice": number(entry), "avgEntryPrice": number(entry), "breakEvenPrice": number(entry),
        "liquidationPrice": None, "bankruptPrice": None,
        "openingTimestamp": iso(position.opened_at), "timestamp": iso(position.updated_at),
        "lastPrice": number(instrument.last_price),
    }


def margin_row(account_id: int, balance: dict) -> dict:
    """user/margin of one asset, from a row of matching.selectors.balances_for."""
    asset = balance["asset"]
    amount, unrealized = balance["amount"], balance["unrealized"]
    used = balance["order_margin"] + balance["position_margin"]
    margin_balance = amount + unrealized
    return {
        "account": account_id, "currency": asset.currency, "riskLimit": None, "amount": raw(amount, asset),
        "realisedPnl": raw(balance["realized"], asset), "unrealisedPnl": raw(unrealized, asset),
        "walletBalance": raw(amount, asset), "marginBalance": raw(margin_balance, asset),
        "initMargin": raw(balance["order_margin"], asset), "maintMargin": raw(balance["position_margin"], asset),
        "availableMargin": raw(balance["available"], asset), "withdrawableMargin": raw(balance["available"], asset),
        "excessMargin": raw(balance["available"], asset),
        "marginUsedPcnt": float((used / margin_balance).quantize(Decimal("1e-4"))) if margin_balance > 0 else 0,
        "timestamp": iso(django_now()),
    }
