"""BitMEX-compatible REST endpoints of wallets and margin, and the demo faucet (docs/API.md)."""
import uuid

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors as account_selectors
from accounts import services
from accounts.models import Asset
from config.api import BadRequest, json_object
from matching import rows, selectors


class WalletAssetsView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(summary="The assets wallets hold, with their BitMEX currency ids and scales")
    def get(self, request):
        return Response([rows.wallet_asset(a) for a in Asset.objects.order_by("code")])


class UserMarginView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(summary="Margin per currency; money in the currency's smallest unit")
    def get(self, request):
        currency = request.query_params.get("currency", "XBt")
        account = services.main_account(request.user)
        margins = [(b["asset"], rows.margin_row(account.pk, b)) for b in selectors.balances_for(account=account)]
        if currency == "all":
            return Response([row for _, row in margins])
        for asset, row in margins:
            if currency in (asset.currency, asset.code):
                return Response(row)
        raise BadRequest(f"Invalid currency: {currency}")


class FaucetView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(summary="Demo money: credits up to the faucet's limit of an asset")
    def post(self, request):
        data = json_object(request)
        code = data.get("asset") or data.get("currency")
        asset = account_selectors.asset_named(code)
        if asset is None:
            raise BadRequest(f"Invalid asset: {code}" if code else "asset is required")
        request_id = data.get("requestID")
        try:
            request_id = uuid.UUID(str(request_id)) if request_id else None
        except ValueError:
            raise BadRequest("requestID must be a UUID") from None
        movement = services.faucet_deposit(account=services.main_account(request.user), asset=asset,
                                           amount=None if data.get("amount") in (None, "") else str(data["amount"]),
                                           request_id=request_id)
        return Response({"transactID": str(movement.request_id), "currency": asset.currency,
                         "amount": rows.raw(movement.amount, asset), "transactType": "Deposit",
                         "transactStatus": "Completed", "timestamp": rows.iso(movement.created_at)})


urlpatterns = [
    path("wallet/assets", WalletAssetsView.as_view()),
    path("user/margin", UserMarginView.as_view()),
    path("user/faucet", FaucetView.as_view()),
]
