"""REST endpoints of copy trading under /api/v1/copytrade/ (docs/API.md). Thin: parse, call, shape."""
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from config.api import BadRequest, json_object
from copytrade import selectors, services
from copytrade.models import Follow, Leader
from matching.rows import iso, number

SETTING_FIELDS = {  # request field -> follow setting
    "sizing": "sizing", "ratio": "ratio", "fixedNotional": "fixed_notional", "maxOrderNotional": "max_order_notional",
    "maxPositionNotional": "max_position_notional", "leverage": "leverage", "symbols": "symbols",
    "slippage": "slippage", "takeProfit": "take_profit", "stopLoss": "stop_loss", "equityStop": "equity_stop",
}


LEADER_FIELDS = {"description", "tags", "profitShareRate", "public", "followerCap"}  # "name" only when applying


def _settings(body: dict) -> dict:
    return {SETTING_FIELDS[k]: v for k, v in body.items() if k in SETTING_FIELDS}


def _leader_id(value) -> int | None:
    """A leader's id from JSON: a whole number or a text of ASCII digits ("²" is a digit to isdigit())."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _money(value):
    return None if value is None else number(value)


def leader_row(leader: Leader, statistics: dict | None = None) -> dict:
    row = {"leaderID": leader.pk, "name": leader.display_name, "description": leader.description, "tags": leader.tags,
           "profitShareRate": float(leader.profit_share_rate), "public": leader.is_public,
           "followerCap": leader.follower_cap, "since": iso(leader.created_at), "statsCurrency": leader.stats_asset_id}
    if statistics is not None:
        row["stats"] = {
            "pnl": {k: _money(v) for k, v in statistics["pnl"].items()},
            "roi": {k: float(v) for k, v in statistics["roi"].items()},
            "winRate": float(statistics["win_rate"]), "closedTrades": statistics["closed_trades"],
            "maxDrawdown": float(statistics["max_drawdown"]), "sharpeRatio": float(statistics["sharpe_ratio"]),
            "aum": _money(statistics["aum"]), "followers": statistics["followers"],
            "followersPnl": _money(statistics["followers_pnl"]), "daysTrading": statistics["days_trading"],
            "averageHoldingSeconds": statistics["average_holding_seconds"],
            "equityCurve": [{"date": day.isoformat(), "equity": _money(equity)}
                            for day, equity in statistics["equity_curve"]],
        }
    return row


def follow_row(follow: Follow) -> dict:
    return {
        "followID": follow.pk, "leaderID": follow.leader_id, "leader": follow.leader.display_name,
        "status": follow.status, "currency": follow.asset_id, "allocated": _money(follow.allocated),
        "sizing": follow.sizing, "ratio": _money(follow.ratio), "fixedNotional": _money(follow.fixed_notional),
        "maxOrderNotional": _money(follow.max_order_notional),
        "maxPositionNotional": _money(follow.max_position_notional), "leverage": _money(follow.leverage),
        "symbols": follow.symbols, "slippage": float(follow.slippage),
        "takeProfit": _money(follow.take_profit), "stopLoss": _money(follow.stop_loss),
        "equityStop": _money(follow.equity_stop), "profitShareRate": float(follow.profit_share_rate),
        "highWaterMark": _money(follow.high_water_mark), "profitSharePaid": _money(follow.profit_share_paid),
        "stopReason": follow.stop_reason, "since": iso(follow.created_at), "stoppedAt": iso(follow.stopped_at),
    }


def opened_positions_row(opened: list[services.OpenedCopy]) -> dict:
    """What following did with the leader's open positions: each one's order or refusal, and a
    warning that says which were copied at market and which were not, and why."""
    placed = [o.symbol for o in opened if o.order_pk is not None]
    refused = [f"{o.symbol} ({o.reason})" for o in opened if o.order_pk is None]
    if not opened:
        warning = "The leader holds no open positions: nothing was copied."
    elif placed:
        warning = (f"The leader's open positions in {', '.join(placed)} were copied at market, at current prices: "
                   "your entries differ from the leader's, and so will your results.")
    else:
        warning = "None of the leader's open positions was copied."
    if refused:
        warning += f" Not copied: {'; '.join(refused)}."
    return {"openPositions": [{"symbol": o.symbol, "side": o.side, "orderQty": o.qty,
                               "status": "placed" if o.order_pk is not None else "refused", "reason": o.reason}
                              for o in opened],
            "warning": warning}


class LeadersView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(summary="Public leaders with their statistics")
    def get(self, request):
        return Response([leader_row(leader, selectors.leader_statistics(leader)) for leader in selectors.leaders()])

    @extend_schema(summary="Apply to lead: your main account's fills will be copied")
    def post(self, request):
        if not request.user.is_authenticated:
            raise BadRequest("log in to lead")
        body = json_object(request, LEADER_FIELDS | {"name"})
        leader = services.apply_to_lead(user=request.user, display_name=body.get("name", ""),
                                        description=body.get("description", ""), tags=body.get("tags", []),
                                        profit_share_rate=body.get("profitShareRate", "0.10"),
                                        is_public=body.get("public", True), follower_cap=body.get("followerCap", 10_000))
        return Response(leader_row(leader, selectors.leader_statistics(leader)))


class LeaderView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(summary="One leader with its statistics (private leaders: with ?inviteCode=)")
    def get(self, request, leader_id: int):
        leader = get_object_or_404(Leader, pk=leader_id, status=Leader.Status.ACTIVE)
        if not leader.is_public and request.query_params.get("inviteCode") != leader.invite_code \
                and leader.user_id != request.user.pk:
            raise BadRequest("this leader is private: an invite code is needed")
        return Response(leader_row(leader, selectors.leader_statistics(leader)))

    @extend_schema(summary="Update your own leader profile (a raised rate applies to new followers only)")
    def put(self, request, leader_id: int):
        leader = get_object_or_404(Leader, pk=leader_id)
        if leader.user_id != request.user.pk:
            raise BadRequest("you can only change your own profile")
        body = json_object(request, LEADER_FIELDS)
        leader = services.update_leader(leader=leader, profit_share_rate=body.get("profitShareRate"),
                                        description=body.get("description"), tags=body.get("tags"),
                                        is_public=body.get("public"), follower_cap=body.get("followerCap"))
        return Response(leader_row(leader))


class FollowsView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(summary="Your copies")
    def get(self, request):
        return Response([follow_row(f) for f in selectors.follows_of(user=request.user)])

    @extend_schema(summary="Follow a leader: moves `amount` of `currency` into a copy account")
    def post(self, request):
        body = json_object(request, set(SETTING_FIELDS) | {"leaderID", "amount", "currency", "inviteCode",
                                                     "copyOpenPositions"})
        leader_id = _leader_id(body.get("leaderID"))
        leader = Leader.objects.filter(pk=leader_id).first() if leader_id is not None else None
        if leader is None:
            raise BadRequest("leaderID is required and must name a leader")
        if body.get("amount") in (None, ""):
            raise BadRequest("amount is required")
        copy_open = body.get("copyOpenPositions", False)
        if not isinstance(copy_open, bool):
            raise BadRequest("copyOpenPositions must be true or false")
        follow = services.follow(user=request.user, leader=leader, amount=str(body["amount"]),
                                 asset=body.get("currency", "USDT"), invite_code=body.get("inviteCode", ""),
                                 **_settings(body))
        row = follow_row(follow)
        if copy_open:
            row.update(opened_positions_row(services.open_leader_positions(follow=follow)))
        return Response(row)


class FollowView(APIView):
    permission_classes = [IsAuthenticated]

    def follow(self, request, follow_id: int) -> Follow:
        return get_object_or_404(Follow.objects.select_related("leader"), pk=follow_id, follower=request.user)

    @extend_schema(summary="One of your copies")
    def get(self, request, follow_id: int):
        return Response(follow_row(self.follow(request, follow_id)))

    @extend_schema(summary="Change a copy's settings")
    def put(self, request, follow_id: int):
        follow = services.update_follow(follow=self.follow(request, follow_id),
                                        **_settings(json_object(request, set(SETTING_FIELDS))))
        return Response(follow_row(follow))

    @extend_schema(summary="Unfollow: closePositions (default true) closes the copied positions at market")
    def delete(self, request, follow_id: int):
        close = json_object(request, {"closePositions"}).get("closePositions", True)
        if not isinstance(close, bool):
            raise BadRequest("closePositions must be true or false")
        return Response(follow_row(services.unfollow(follow=self.follow(request, follow_id), close_positions=close)))


class FollowStatusView(FollowView):
    status = ""

    @extend_schema(summary="Pause or resume a copy")
    def post(self, request, follow_id: int):
        return Response(follow_row(services.set_status(follow=self.follow(request, follow_id), status=self.status)))


class PauseView(FollowStatusView):
    status = Follow.Status.PAUSED


class ResumeView(FollowStatusView):
    status = Follow.Status.ACTIVE


class CopiedOrdersView(FollowView):
    @extend_schema(summary="What each leader trade became for this copy: the order, or why it was skipped")
    def get(self, request, follow_id: int):
        status = request.query_params.get("status")
        if status not in (None, "placed", "skipped"):
            raise BadRequest("status is placed or skipped")
        rows = []
        for copied in selectors.copied_orders(follow=self.follow(request, follow_id), status=status):
            execution = copied.leader_execution
            order = copied.order
            rows.append({
                "leaderExecID": str(execution.exec_id), "symbol": execution.instrument.symbol,
                "leaderSide": execution.side, "leaderQty": execution.last_qty, "leaderPx": number(execution.last_px),
                "status": copied.status, "reason": selectors.copy_outcome(copied), "side": copied.side, "orderQty": copied.qty,
                "reduceOnly": copied.reduce_only, "orderID": str(order.order_id) if order else None,
                "ordStatus": order.ord_status if order else None, "cumQty": order.cum_qty if order else 0,
                "avgPx": number(order.avg_px) if order else None, "timestamp": iso(copied.created_at)})
        return Response(rows)


class ProfitShareView(FollowView):
    @extend_schema(summary="Profit-share settlements of this copy")
    def get(self, request, follow_id: int):
        return Response([{"amount": number(s.amount), "cumulativePnl": number(s.cumulative_pnl),
                          "highWaterMarkBefore": number(s.high_water_mark_before), "reason": s.reason,
                          "timestamp": iso(s.created_at)}
                         for s in selectors.settlements(follow=self.follow(request, follow_id))])


urlpatterns = [
    path("leaders", LeadersView.as_view()),
    path("leaders/<int:leader_id>", LeaderView.as_view()),
    path("follows", FollowsView.as_view()),
    path("follows/<int:follow_id>", FollowView.as_view()),
    path("follows/<int:follow_id>/pause", PauseView.as_view()),
    path("follows/<int:follow_id>/resume", ResumeView.as_view()),
    path("follows/<int:follow_id>/orders", CopiedOrdersView.as_view()),
    path("follows/<int:follow_id>/profitShare", ProfitShareView.as_view()),
]
