"""The demo faucet through /api/v1/user/faucet."""
import json
import uuid

import pytest
from rest_framework.test import APIClient

from accounts.models import Balance, CashMovement

pytestmark = pytest.mark.django_db


def client_for(account):
    client = APIClient()
    client.force_login(account.user)
    return client


def faucet(client, body):
    return client.post("/api/v1/user/faucet", body if isinstance(body, str) else json.dumps(body),
                       content_type="application/json")


@pytest.mark.parametrize("body", ["[]", "null", '"USDT"', "5"])
def test_a_faucet_body_that_is_not_an_object_is_refused(make_trader, body):
    response = faucet(client_for(make_trader(usdt="0", xbt="0")), body)
    assert response.status_code == 400 and response.json()["error"]["message"] == "the body must be a JSON object"


@pytest.mark.parametrize("asset", [None, ["USDT"], {"code": "USDT"}, "US\u0000DT", "DOGE"])
def test_a_faucet_asset_that_names_no_asset_is_refused(make_trader, asset):
    response = faucet(client_for(make_trader(usdt="0", xbt="0")), {"asset": asset})
    assert response.status_code == 400 and "asset" in response.json()["error"]["message"]


@pytest.mark.parametrize("amount", ["NaN", "sNaN", "Infinity", "1e22", ["1"], True])
def test_a_faucet_amount_that_is_not_a_usable_number_is_refused(make_trader, amount):
    account = make_trader(usdt="0", xbt="0")
    response = faucet(client_for(account), {"asset": "USDT", "amount": amount})
    assert response.status_code == 400 and "amount" in response.json()["error"]["message"]
    assert not CashMovement.objects.filter(account=account).exists()


def test_a_faucet_request_id_is_a_retry_of_the_same_request_only(make_trader):
    account, stranger = make_trader(usdt="0", xbt="0"), make_trader(usdt="0", xbt="0")
    request_id = str(uuid.uuid4())
    first = faucet(client_for(account), {"asset": "XBT", "amount": "1", "requestID": request_id})
    again = faucet(client_for(account), {"asset": "XBT", "amount": "1", "requestID": request_id})
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    for client, body in ((client_for(stranger), {"asset": "USDT", "amount": "500"}),
                         (client_for(stranger), {"asset": "XBT", "amount": "1"}),
                         (client_for(account), {"asset": "XBT", "amount": "0.5"})):
        refused = faucet(client, {**body, "requestID": request_id})
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == "requestID was already used for a different request"
    assert not Balance.objects.filter(account=stranger).exclude(amount=0).exists()
    assert Balance.objects.get(account=account, asset_id="XBT").amount == 1
