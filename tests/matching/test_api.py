"""The first slice of the BitMEX-compatible REST API, with the shapes BitMEX clients (ccxt) read."""
import json
import re

import pytest
from rest_framework.test import APIClient

from tests.conftest import settle

pytestmark = pytest.mark.django_db
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def api(make_trader):
    def login(**funds):
        account = make_trader(**funds)
        client = APIClient()
        client.force_login(account.user)
        client.account = account
        return client

    return login


def post(client, path, body):
    return client.post(f"/api/v1/{path}", json.dumps(body), content_type="application/json")


def delete(client, path, body=None):
    return client.delete(f"/api/v1/{path}", json.dumps(body) if body is not None else None,
                         content_type="application/json")


def test_place_amend_and_cancel_an_order_with_bitmex_fields(engine, api):
    client = api()
    response = post(client, "order", {"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000000, "ordType": "Limit",
                                      "price": 49000, "text": "CCXT", "clOrdID": "mine-1"})
    assert response.status_code == 200, response.content
    order = response.json()
    assert response.content.startswith(b"{")
    assert order["ordStatus"] == "PendingNew" and order["clOrdID"] == "mine-1" and order["settlCurrency"] == "USDt"
    assert ISO.match(order["timestamp"])
    settle(engine)
    listed = client.get("/api/v1/order", {"symbol": "XBTUSDT", "filter": json.dumps({"orderID": order["orderID"]})})
    assert [o["ordStatus"] for o in listed.json()] == ["New"]
    amended = client.put("/api/v1/order", json.dumps({"orderID": order["orderID"], "orderQty": 2000000,
                                                      "price": 49500, "text": "CCXT"}), content_type="application/json")
    assert amended.status_code == 200 and amended.json()["symbol"] == "XBTUSDT"
    settle(engine)
    listed = client.get("/api/v1/order", {"filter": json.dumps({"open": True})}).json()
    assert [(o["orderQty"], o["price"]) for o in listed] == [(2000000, 49500)]
    canceled = delete(client, "order", {"orderID": order["orderID"]})
    assert canceled.status_code == 200 and isinstance(canceled.json(), list)
    settle(engine)
    again = delete(client, "order", {"orderID": order["orderID"]}).json()
    assert again[0]["error"] == "Unable to cancel order due to existing state: Canceled"
    assert client.get("/api/v1/order", {"filter": json.dumps({"open": True})}).json() == []


def test_positions_are_filtered_counted_and_cut_to_the_columns_asked(engine, api):
    from matching import rows

    seller, buyer = api(), api()
    post(seller, "order", {"symbol": "XBTUSD", "side": "Sell", "orderQty": 1000, "price": 50000})
    settle(engine)
    post(buyer, "order", {"symbol": "XBTUSD", "side": "Buy", "orderQty": 1000, "ordType": "Market"})
    post(buyer, "position/leverage", {"symbol": "XBTUSDT", "leverage": 20})  # a position row without a position
    settle(engine)
    every = buyer.get("/api/v1/position").json()
    assert {p["symbol"] for p in every} == {"XBTUSD", "XBTUSDT"} and set(every[0]) == rows.POSITION_COLUMNS
    (open_one,) = buyer.get("/api/v1/position", {"filter": '{"isOpen": true}'}).json()
    assert open_one["symbol"] == "XBTUSD"
    assert [p["symbol"] for p in buyer.get("/api/v1/position", {"filter": '{"currency": "USDt"}'}).json()] == ["XBTUSDT"]
    assert len(buyer.get("/api/v1/position", {"count": 1}).json()) == 1
    (cut,) = buyer.get("/api/v1/position", {"filter": '{"symbol": "XBTUSD"}', "columns": '["currentQty"]'}).json()
    assert cut == {"account": open_one["account"], "symbol": "XBTUSD", "currency": "XBt", "currentQty": 1000}
    for params, message in (({"columns": '["nope"]'}, "Unknown column(s): nope"),
                            ({"columns": "currentQty"}, "columns must be a JSON list"),
                            ({"filter": '{"isOpen": 1}'}, "filter isOpen must be true or false"),
                            ({"filter": '{"side": "Buy"}'}, "Unsupported filter field: side")):
        response = buyer.get("/api/v1/position", params)
        assert response.status_code == 400 and message in response.json()["error"]["message"], params


def test_cancel_all_returns_a_list_even_when_empty(engine, api):
    client = api()
    assert delete(client, "order/all").json() == []
    post(client, "order", {"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000000, "price": 40000})
    settle(engine)
    canceled = delete(client, "order/all", {"symbol": "XBTUSDT"}).json()
    assert len(canceled) == 1
    settle(engine)


def test_positions_executions_and_margin_after_a_trade(engine, api):
    seller, buyer = api(), api()
    post(seller, "order", {"symbol": "XBTUSD", "side": "Sell", "orderQty": 1000, "price": 50000})
    settle(engine)
    post(buyer, "order", {"symbol": "XBTUSD", "side": "Buy", "orderQty": 1000, "ordType": "Market"})
    settle(engine)
    (position,) = [p for p in buyer.get("/api/v1/position").json() if p["symbol"] == "XBTUSD"]
    assert position["currentQty"] == 1000 and position["avgEntryPrice"] == 50000
    assert position["homeNotional"] > 0 and position["currency"] == "XBt"
    assert position["posMargin"] == 200000  # 1000 USD at 50,000 = 0.02 XBT at 10x = 0.002 XBT in satoshi
    (trade,) = buyer.get("/api/v1/execution/tradeHistory", {"symbol": "XBTUSD"}).json()
    assert trade["execType"] == "Trade" and trade["lastQty"] == 1000 and trade["avgPx"] == 50000
    assert trade["execComm"] == 1500 and trade["commission"] == 0.00075  # satoshi, as BitMEX sends them
    margins = buyer.get("/api/v1/user/margin", {"currency": "all"}).json()
    xbt = next(m for m in margins if m["currency"] == "XBt")
    assert xbt["walletBalance"] == 100_000_000 - 1500
    assert xbt["availableMargin"] == xbt["walletBalance"] - 200000
    single = buyer.get("/api/v1/user/margin", {"currency": "XBt"}).json()
    assert single["currency"] == "XBt"


def test_public_market_data(engine, api):
    seller, buyer = api(), api()
    post(seller, "order", {"symbol": "XBTUSDT", "side": "Sell", "orderQty": 2000000, "price": 50000})
    post(seller, "order", {"symbol": "XBTUSDT", "side": "Sell", "orderQty": 1000000, "price": 50001})
    settle(engine)
    post(buyer, "order", {"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000000, "price": 50000})
    post(buyer, "order", {"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000000, "price": 49000})
    settle(engine)
    anonymous = APIClient()
    assets = anonymous.get("/api/v1/wallet/assets").json()
    assert {"asset": "XBT", "currency": "XBt", "scale": 8}.items() <= next(a for a in assets if a["asset"] == "XBT").items()
    active = {i["symbol"]: i for i in anonymous.get("/api/v1/instrument/active").json()}
    xbtusd = active["XBTUSD"]
    assert (xbtusd["typ"], xbtusd["isInverse"], xbtusd["multiplier"], xbtusd["settlCurrency"]) == ("FFWCSX", True, -100000000, "XBt")
    assert active["XBTUSDT"]["underlyingToPositionMultiplier"] == 1000000 and active["XBTUSDT"]["initMargin"] == 0.01
    (ticker,) = anonymous.get("/api/v1/instrument", {"symbol": "XBTUSDT"}).json()
    assert ticker["lastPrice"] == 50000 and ticker["bidPrice"] == 49000 and ticker["askPrice"] == 50000
    assert ticker["volume24h"] == 1000000
    book = anonymous.get("/api/v1/orderBook/L2", {"symbol": "XBTUSDT", "depth": 25}).json()
    assert [(r["side"], r["price"], r["size"]) for r in book] == [
        ("Sell", 50001, 1000000), ("Sell", 50000, 1000000), ("Buy", 49000, 1000000)]
    assert len({r["id"] for r in book}) == 3
    (trade,) = anonymous.get("/api/v1/trade", {"symbol": "XBTUSDT", "reverse": "true", "count": 10}).json()
    assert (trade["side"], trade["size"], trade["price"]) == ("Buy", 1000000, 50000) and ISO.match(trade["timestamp"])


@pytest.mark.parametrize("body, message", [
    ({"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1500, "price": 50000}, "orderQty is invalid"),
    ({"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000000, "price": 50000.3}, "Invalid price"),
    ({"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000000, "ordType": "Stop"}, "Invalid stopPx for ordType"),
    ({"symbol": "NOPE", "side": "Buy", "orderQty": 1000000, "price": 1}, "Invalid symbol"),
    ({"symbol": "XBTUSDT", "side": "Buy", "orderQty": 10**12, "price": 50000}, "orderQty is invalid"),
    ({"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000000, "price": 50000, "bogus": 1}, "Unknown field"),
    ({"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000000, "price": 50000, "execInst": 5}, "must be a string"),
])
def test_bad_requests_get_a_400_with_bitmex_error_body(engine, api, body, message):
    client = api()
    response = post(client, "order", body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_insufficient_balance_is_the_message_clients_map_to_insufficient_funds(engine, api):
    client = api(usdt="10", xbt="0")
    response = post(client, "order", {"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000000, "price": 50000})
    assert response.status_code == 400
    assert "Account has insufficient Available Balance" in response.json()["error"]["message"]


def test_bad_query_parameters_are_400_not_500(engine, api):
    client = api()
    for params in ({"filter": "{not json"}, {"count": "x"}, {"count": 0}, {"reverse": "maybe"},
                   {"startTime": "yesterday"}, {"filter": json.dumps({"orderID": "not-a-uuid"})},
                   {"filter": json.dumps({"color": "red"})}):
        response = client.get("/api/v1/order", params)
        assert response.status_code == 400, params
        assert "message" in response.json()["error"]
    assert delete(client, "order", {"orderID": "not-a-uuid"}).status_code == 400
    assert client.put("/api/v1/order", "[1]", content_type="application/json").status_code == 400


def test_private_endpoints_need_a_login():
    anonymous = APIClient()
    for path in ("order", "position", "user/margin", "execution"):
        response = anonymous.get(f"/api/v1/{path}")
        assert response.status_code in (401, 403) and "error" in response.json()


def test_the_faucet_credits_demo_money(engine, api):
    client = api(usdt="0", xbt="0")
    response = post(client, "user/faucet", {"asset": "USDT", "amount": "2500"})
    assert response.status_code == 200 and response.json()["amount"] == 2_500_000_000
    assert post(client, "user/faucet", {"asset": "USDT", "amount": "1e9"}).status_code == 400
    assert post(client, "user/faucet", {"asset": "USDT", "amount": "lots"}).status_code == 400


def test_leverage_and_margin_mode_of_a_position(engine, api):
    client = api()
    response = post(client, "position/leverage", {"symbol": "XBTUSDT", "leverage": 25})
    assert response.status_code == 200 and response.json()["leverage"] == 25
    assert response.json()["crossMargin"] is True
    isolated = post(client, "position/isolate", {"symbol": "XBTUSDT", "enabled": True}).json()
    assert isolated["crossMargin"] is False and isolated["leverage"] == 25
    assert post(client, "position/leverage", {"symbol": "XBTUSDT", "leverage": 101}).status_code == 400
    assert post(client, "position/leverage", {"symbol": "XBTUSDT"}).status_code == 400
    assert post(client, "position/isolate", {"symbol": "XBTUSDT", "enabled": "yes"}).status_code == 400


def test_raising_leverage_on_an_open_position_frees_margin_and_lowering_it_needs_more(engine, api):
    from accounts.models import Balance

    seller, buyer = api(), api(usdt="6000", xbt="0")
    post(seller, "order", {"symbol": "XBTUSDT", "side": "Sell", "orderQty": 1000000, "price": 50000})
    settle(engine)
    post(buyer, "order", {"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000000, "price": 50000})
    settle(engine)
    margin = lambda: Balance.objects.get(account=buyer.account, asset_id="USDT").position_margin  # noqa: E731
    assert margin() == 5000  # 1 XBT at 50,000 and 10x
    assert post(buyer, "position/leverage", {"symbol": "XBTUSDT", "leverage": 20}).status_code == 200
    assert margin() == 2500
    refused = post(buyer, "position/leverage", {"symbol": "XBTUSDT", "leverage": 1})
    assert refused.status_code == 400 and "insufficient Available Balance" in refused.json()["error"]["message"]
    assert margin() == 2500


def test_an_amend_that_needs_more_margin_than_available_is_refused(engine, api):
    client = api(usdt="6000", xbt="0")
    order = post(client, "order", {"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000000, "price": 40000}).json()
    settle(engine)
    response = client.put("/api/v1/order", json.dumps({"orderID": order["orderID"], "orderQty": 2000000}),
                          content_type="application/json")
    assert response.status_code == 400 and "insufficient Available Balance" in response.json()["error"]["message"]
    settle(engine)
    (unchanged,) = client.get("/api/v1/order", {"filter": json.dumps({"open": True})}).json()
    assert unchanged["orderQty"] == 1000000


BUY = {"symbol": "XBTUSDT", "side": "Buy", "orderQty": 1000000, "ordType": "Limit", "price": 49000}


def send(client, method, path, body):
    return getattr(client, method)(f"/api/v1/{path}", body if isinstance(body, str) else json.dumps(body),
                                   content_type="application/json")


@pytest.mark.parametrize("method, path, body", [
    ("post", "order", {**BUY, "symbol": "XBT\x00USDT"}),
    ("post", "order", {**BUY, "clOrdID": "a\x00b"}),
    ("post", "order", {**BUY, "text": "a\x00b"}),
    ("post", "order", {**BUY, "text": "x" * 201}),
    ("delete", "order/all", {"text": "x" * 201}),
    ("post", "order", {**BUY, "ordType": "Stop", "price": None, "pegPriceType": "TrailingStopPeg",
                       "pegOffsetValue": "1e30"}),
    ("post", "order", {**BUY, "pegOffsetValue": 5}),
    ("post", "order", "[" * 100000 + "]" * 100000),
    ("put", "order", {"origClOrdID": "a\x00", "price": 49500}),
    ("delete", "order", {"clOrdID": "a\x00"}),
    ("delete", "order", {"clOrdID": "a", "text": ["x"]}),
    ("delete", "order/all", {"symbol": "X\x00"}),
    ("delete", "order/all", {"symbol": "NOPE"}),
    ("delete", "order/all", {"symbol": ["XBTUSDT"]}),
    ("delete", "order/all", ["XBTUSDT"]),
    ("post", "position/leverage", {"symbol": "X\x00", "leverage": 5}),
])
def test_hostile_bodies_are_a_400_that_stores_nothing(engine, api, method, path, body):
    client = api()
    response = send(client, method, path, body)
    assert response.status_code == 400 and response.json()["error"]["message"], response.content
    settle(engine)
    assert client.get("/api/v1/order").json() == []


@pytest.mark.parametrize("path, params", [
    ("order", {"symbol": "X\x00"}),
    ("order", {"filter": json.dumps({"side": "B\x00"})}),
    ("order", {"filter": '{"side":' + "[" * 100000 + "]" * 100000 + "}"}),
    ("order", {"filter": json.dumps({"open": "maybe"})}),
    ("order", {"start": str(2**63)}),
    ("execution", {"start": str(2**63)}),
    ("trade", {"start": str(2**63)}),
])
def test_hostile_query_parameters_are_a_400(engine, api, path, params):
    response = api().get(f"/api/v1/{path}", params)
    assert response.status_code == 400 and response.json()["error"]["message"]


def test_cancel_all_refuses_a_body_that_is_not_an_object_and_cancels_nothing(engine, api):
    client = api()
    post(client, "order", BUY)
    post(client, "order", {"symbol": "XBTUSD", "side": "Buy", "orderQty": 100, "price": 40000})
    settle(engine)
    assert send(client, "delete", "order/all", '"XBTUSDT"').status_code == 400
    settle(engine)
    assert len(client.get("/api/v1/order", {"filter": json.dumps({"open": "true"})}).json()) == 2
    assert len(delete(client, "order/all", {"symbol": "XBTUSD"}).json()) == 1
    settle(engine)


def test_a_retry_returns_the_first_order_but_a_clordid_reused_for_another_order_is_a_duplicate(engine, api):
    client = api()
    first = post(client, "order", {**BUY, "clOrdID": "mine"}).json()
    assert post(client, "order", {**BUY, "clOrdID": "mine"}).json()["orderID"] == first["orderID"]
    for other in ({"side": "Sell", "price": 60000}, {"symbol": "XBTUSD", "orderQty": 100},
                  {"ordType": "Stop", "price": None, "stopPx": 48000}):
        response = post(client, "order", {**BUY, "clOrdID": "mine", **other})
        assert response.status_code == 400 and response.json()["error"]["message"] == "Duplicate clOrdID"
    settle(engine)
    assert len(client.get("/api/v1/order").json()) == 1


def test_without_a_side_orderqty_signs_the_order_as_bitmex_does(engine, api):
    client = api()
    buy = post(client, "order", {"symbol": "XBTUSDT", "orderQty": 1000000, "price": 49000}).json()
    sell = post(client, "order", {"symbol": "XBTUSDT", "orderQty": -1000000, "price": 51000}).json()
    assert (buy["side"], buy["orderQty"]) == ("Buy", 1000000) and (sell["side"], sell["orderQty"]) == ("Sell", 1000000)
    assert post(client, "order", {**BUY, "orderQty": -1000000}).json()["error"]["message"] == "orderQty is invalid"
    refused = post(client, "order", {"symbol": "XBTUSDT", "side": None, "execInst": "Close", "price": 49000})
    assert refused.json()["error"]["message"] == ("Invalid side: there is no XBTUSDT position to close; "
                                                  "give side and orderQty")
    settle(engine)


def test_json_numbers_are_read_exactly_not_through_a_float(engine, api):
    client = api()
    raw = '{"symbol":"XBTUSDT","side":"Buy","orderQty":1000000.0000000000001,"price":49000}'
    assert send(client, "post", "order", raw).json()["error"]["message"] == "orderQty is invalid"
    raw = '{"symbol":"XBTUSDT","side":"Buy","orderQty":1000000,"price":49000.50000000000000001}'
    assert send(client, "post", "order", raw).json()["error"]["message"].startswith("Invalid price tickSize")
    assert post(client, "order", {**BUY, "price": 49000.3}).json()["error"]["message"] == (
        "Invalid price tickSize: must be a multiple of 0.5")
    assert post(client, "order", {**BUY, "price": 49000.5}).status_code == 200
    settle(engine)


def test_an_amend_takes_only_its_own_fields_and_keeps_the_clordid(engine, api):
    client = api()
    order = post(client, "order", {**BUY, "clOrdID": "keep"}).json()
    settle(engine)
    for body, message in (({"orderID": order["orderID"], "price": 49500, "side": "Sell"}, "Unknown field(s): side"),
                          ({"orderID": order["orderID"], "price": 49500, "text": 5}, "text must be a string"),
                          ({"origClOrdID": "keep", "clOrdID": "other", "price": 49500}, "clOrdID cannot be changed"),
                          ({"orderID": order["orderID"], "pegOffsetValue": -100},
                           "Invalid pegOffsetValue: the order does not trail the price")):
        response = client.put("/api/v1/order", json.dumps(body), content_type="application/json")
        assert response.status_code == 400 and message in response.json()["error"]["message"]
    # ccxt's edit_order with a clientOrderId sends it as origClOrdID and clOrdID both
    same = client.put("/api/v1/order", json.dumps({"origClOrdID": "keep", "clOrdID": "keep", "price": 49500}),
                      content_type="application/json")
    assert same.status_code == 200
    settle(engine)


def test_executions_filter_by_the_orders_clordid_and_type(engine, api):
    maker, taker = api(), api()
    post(maker, "order", {**BUY, "side": "Sell", "price": 50000, "clOrdID": "ask"})
    post(taker, "order", {**BUY, "price": 50000, "timeInForce": "ImmediateOrCancel"})
    settle(engine)
    mine = maker.get("/api/v1/execution", {"filter": json.dumps({"clOrdID": "ask"})}).json()
    assert [(e["clOrdID"], e["ordType"]) for e in mine] == [("ask", "Limit")]
    assert maker.get("/api/v1/execution", {"filter": json.dumps({"clOrdID": "bid"})}).json() == []
    assert taker.get("/api/v1/execution", {"filter": json.dumps({"ordType": "Market"})}).json() == []
    taken = taker.get("/api/v1/execution", {"filter": json.dumps({"ordType": ["Limit", "Stop"]})}).json()
    assert [e["ordType"] for e in taken] == ["Limit"]
