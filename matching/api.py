"""BitMEX-compatible REST endpoints of the trading core (docs/API.md). Thin: parse, call, shape."""
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.services import main_account
from config.api import BadRequest, json_object, list_query, loads
from matching import rows, selectors, services
from matching.models import OPEN_STATUSES, Instrument

ORDER_FIELDS = {  # BitMEX body field -> submit_order argument
    "symbol": "symbol", "side": "side", "orderQty": "order_qty", "price": "price", "stopPx": "stop_px",
    "ordType": "ord_type", "timeInForce": "time_in_force", "execInst": "exec_inst", "clOrdID": "cl_ord_id",
    "pegPriceType": "peg_price_type", "pegOffsetValue": "peg_offset_value", "text": "text",
}
AMEND_FIELDS = {"orderQty": "order_qty", "leavesQty": "leaves_qty", "price": "price", "stopPx": "stop_px",
                "pegOffsetValue": "peg_offset_value", "text": "text"}
AMEND_KEYS = {"orderID", "origClOrdID", "clOrdID"}  # which order; ccxt repeats its clOrdID as clOrdID


MAX_TEXT = 200  # the order's and command's text columns


def _check_strings(body: dict, names) -> None:
    for name in names:
        if body.get(name) is not None and not isinstance(body[name], str):
            raise BadRequest(f"{name} must be a string")
    if len(body.get("text") or "") > MAX_TEXT:
        raise BadRequest(f"text is at most {MAX_TEXT} characters")


def _as_list(value) -> list:
    if value in (None, ""):
        return []
    return value if isinstance(value, list) else [value]


class PrivateView(APIView):
    permission_classes = [IsAuthenticated]

    def account(self, request):
        return main_account(request.user)


class OrderView(PrivateView):
    @extend_schema(summary="Your orders, oldest first (reverse=true: newest first); filter by JSON `filter`")
    def get(self, request):
        query = list_query(request.query_params, max_count=500)
        return Response([rows.order_row(o) for o in selectors.orders_for(account=self.account(request), query=query)])

    @extend_schema(summary="Place an order")
    def post(self, request):
        body = json_object(request, set(ORDER_FIELDS) | {"displayQty"})
        if body.get("displayQty") not in (None, ""):
            raise BadRequest("displayQty (hidden orders) is not supported")
        if not body.get("symbol"):
            raise BadRequest("symbol is required")
        _check_strings(body, ("symbol", "side", "ordType", "timeInForce", "execInst", "clOrdID", "pegPriceType",
                              "text"))
        kwargs = {ORDER_FIELDS[k]: v for k, v in body.items() if k in ORDER_FIELDS and v is not None}
        order = services.submit_order(account=self.account(request), **kwargs)
        return Response(rows.order_row(order))

    @extend_schema(summary="Amend an order by orderID or origClOrdID")
    def put(self, request):
        body = json_object(request, set(AMEND_FIELDS) | AMEND_KEYS)
        _check_strings(body, ("orderID", "origClOrdID", "clOrdID", "text"))
        order = services.find_order(account=self.account(request), order_id=body.get("orderID"),
                                    cl_ord_id=body.get("origClOrdID"))
        if body.get("clOrdID") not in (None, "", order.cl_ord_id):
            raise BadRequest("clOrdID cannot be changed: give the order's own clOrdID or none")
        kwargs = {AMEND_FIELDS[k]: v for k, v in body.items() if k in AMEND_FIELDS and v is not None}
        order = services.amend_order(account=self.account(request), order=order, **kwargs)
        return Response(rows.order_row(order))

    @extend_schema(summary="Cancel orders by orderID and/or clOrdID (lists allowed); returns a list")
    def delete(self, request):
        body = json_object(request)
        _check_strings(body, ("text",))
        account = self.account(request)
        orders = [services.find_order(account=account, order_id=i) for i in _as_list(body.get("orderID"))]
        orders += [services.find_order(account=account, cl_ord_id=i) for i in _as_list(body.get("clOrdID"))]
        if not orders:
            raise BadRequest("orderID or clOrdID is required")
        canceled = services.cancel_orders(orders=orders, text=str(body.get("text") or ""))
        return Response([_cancel_row(order, before) for order, before in zip(canceled, orders)])


def _cancel_row(order, before) -> dict:
    row = rows.order_row(order)
    if before.ord_status not in OPEN_STATUSES:
        row["error"] = f"Unable to cancel order due to existing state: {before.ord_status}"
    return row


class OrderAllView(PrivateView):
    @extend_schema(summary="Cancel all your open orders, optionally of one symbol")
    def delete(self, request):
        body = json_object(request)
        _check_strings(body, ("symbol", "text"))
        symbol = body.get("symbol") or request.query_params.get("symbol")
        canceled = services.cancel_all_orders(account=self.account(request), symbol=symbol,
                                              text=str(body.get("text") or ""))
        return Response([rows.order_row(o) for o in canceled])


class PositionView(PrivateView):
    @extend_schema(summary="Your positions; `filter` (JSON: symbol, currency, isOpen), `columns` (a JSON list), `count`")
    def get(self, request):
        query = list_query(request.query_params, max_count=500)
        columns = _columns(request.query_params.get("columns"))
        positions = [rows.position_row(p) for p in selectors.positions_for(account=self.account(request), query=query)]
        if columns:
            if unknown := columns - rows.POSITION_COLUMNS:
                raise BadRequest(f"Unknown column(s): {', '.join(sorted(unknown))}")
            # BitMEX keeps a row's keys whatever columns asks for
            positions = [{k: v for k, v in row.items() if k in columns | POSITION_KEYS} for row in positions]
        return Response(positions)


POSITION_KEYS = {"account", "symbol", "currency"}


def _columns(raw) -> set[str]:
    if raw in (None, ""):
        return set()
    try:
        names = loads(raw)
    except ValueError:
        raise BadRequest("columns must be a JSON list of field names") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadRequest("columns must be a JSON list of field names")
    return set(names)


class LeverageView(PrivateView):
    @extend_schema(summary="Set a position's leverage (0: cross margin at the maximum)")
    def post(self, request):
        body = json_object(request)
        if "symbol" not in body or "leverage" not in body:
            raise BadRequest("symbol and leverage are required")
        cross = body.get("crossMargin")
        position = services.set_leverage(account=self.account(request), symbol=body["symbol"],
                                         leverage=body["leverage"], cross_margin=cross if isinstance(cross, bool) else None)
        return Response(rows.position_row(position))


class IsolateView(PrivateView):
    @extend_schema(summary="Switch a position between isolated (enabled=true) and cross margin")
    def post(self, request):
        body = json_object(request)
        enabled = body.get("enabled")
        if not body.get("symbol") or not isinstance(enabled, bool):
            raise BadRequest("symbol and enabled (true or false) are required")
        position = services.set_leverage(account=self.account(request), symbol=body["symbol"], leverage=None,
                                         cross_margin=not enabled)
        return Response(rows.position_row(position))


class ExecutionView(PrivateView):
    @extend_schema(summary="Your executions")
    def get(self, request):
        query = list_query(request.query_params, max_count=500)
        return Response([rows.execution_row(e) for e in selectors.executions_for(account=self.account(request),
                                                                                  query=query)])


class InstrumentView(APIView):
    permission_classes = [AllowAny]
    active_only = False

    @extend_schema(summary="Instruments with their ticker")
    def get(self, request):
        found = selectors.instruments(symbol=request.query_params.get("symbol"), active_only=self.active_only)
        stats = selectors.instrument_stats([i.pk for i in found])
        return Response([rows.instrument_row(i, stats.get(i.pk)) for i in found])


class ActiveInstrumentView(InstrumentView):
    active_only = True


class OrderBookL2View(APIView):
    permission_classes = [AllowAny]

    @extend_schema(summary="Level 2 book: asks then bids, `depth` levels per side (0: all)")
    def get(self, request):
        symbol = request.query_params.get("symbol")
        instrument = Instrument.objects.filter(symbol=symbol).first() if symbol else None
        if instrument is None:
            raise BadRequest("Invalid symbol" if symbol else "symbol is required")
        try:
            depth = int(request.query_params.get("depth", 25))
        except ValueError:
            raise BadRequest("depth must be an integer") from None
        if depth < 0:
            raise BadRequest("depth must be >= 0")
        return Response([{"symbol": instrument.symbol, "id": rows.l2_id(instrument, side, price), "side": side,
                          "size": size, "price": rows.number(price)}
                         for side, price, size in selectors.order_book_l2(instrument=instrument, depth=depth)])


class TradeView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(summary="Public trades")
    def get(self, request):
        query = list_query(request.query_params, max_count=1000)
        return Response([rows.trade_row(e) for e in selectors.public_trades(query=query)])


urlpatterns = [
    path("order", OrderView.as_view()),
    path("order/all", OrderAllView.as_view()),
    path("position", PositionView.as_view()),
    path("position/leverage", LeverageView.as_view()),
    path("position/isolate", IsolateView.as_view()),
    path("execution", ExecutionView.as_view()),
    path("execution/tradeHistory", ExecutionView.as_view()),
    path("instrument", InstrumentView.as_view()),
    path("instrument/active", ActiveInstrumentView.as_view()),
    path("instrument/activeAndIndices", ActiveInstrumentView.as_view()),
    path("orderBook/L2", OrderBookL2View.as_view()),
    path("trade", TradeView.as_view()),
]
