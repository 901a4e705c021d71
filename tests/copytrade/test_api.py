"""Copy trading through /api/v1/copytrade/."""
import json
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts.models import Account
from copytrade.models import Follow, Leader
from matching import services as trading
from matching.models import Order
from tests.conftest import settle

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def eager_tasks():
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def client_for(account):
    client = APIClient()
    client.force_login(account.user)
    return client


def call(client, method, path, body=None):
    return getattr(client, method)(f"/api/v1/copytrade/{path}", json.dumps(body) if body is not None else None,
                                   content_type="application/json")


def refusal(response) -> str:
    assert response.status_code == 400, response.content
    return response.json()["error"]["message"]


@pytest.fixture
def leader_id(engine, make_trader):
    return call(client_for(make_trader()), "post", "leaders", {"name": "Steady Whale"}).json()["leaderID"]


def test_lead_follow_pause_resume_read_copies_and_unfollow(engine, make_trader):
    maker = make_trader(usdt="10000000", xbt="0")
    trading.submit_order(account=maker, symbol="XBTUSDT", side="Sell", order_qty=50_000_000, price="50000")
    settle(engine)
    whale, fan = make_trader(usdt="1000000", xbt="0"), make_trader(usdt="100000", xbt="0")
    leader = call(client_for(whale), "post", "leaders", {"name": "Big Whale", "profitShareRate": 0.2,
                                                         "tags": ["btc", "swing"]})
    assert leader.status_code == 200, leader.content
    leader_id = leader.json()["leaderID"]
    fan_client = client_for(fan)
    followed = call(fan_client, "post", "follows", {"leaderID": leader_id, "amount": "50000", "slippage": "0.01",
                                                    "symbols": ["XBTUSDT"]})
    assert followed.status_code == 200, followed.content
    follow_id = followed.json()["followID"]
    assert followed.json()["profitShareRate"] == 0.2
    assert call(fan_client, "post", f"follows/{follow_id}/pause").json()["status"] == "paused"
    trading.submit_order(account=whale, symbol="XBTUSDT", side="Buy", order_qty=1_000_000, ord_type="Market")
    settle(engine)
    assert call(fan_client, "post", f"follows/{follow_id}/resume").json()["status"] == "active"
    trading.submit_order(account=whale, symbol="XBTUSDT", side="Buy", order_qty=10_000_000, ord_type="Market")
    settle(engine)
    copies = call(fan_client, "get", f"follows/{follow_id}/orders").json()
    assert [(c["status"], c["reason"]) for c in copies][-1] == ("skipped", "paused")
    placed = [c for c in copies if c["status"] == "placed"]
    assert placed and placed[0]["ordStatus"] == "Filled" and placed[0]["cumQty"] > 0
    leaders = APIClient().get("/api/v1/copytrade/leaders").json()
    (row,) = [r for r in leaders if r["leaderID"] == leader_id]
    assert row["stats"]["followers"] == 1 and row["stats"]["aum"] > 0 and row["tags"] == ["btc", "swing"]
    unfollowed = call(fan_client, "delete", f"follows/{follow_id}", {"closePositions": True})
    assert unfollowed.json()["status"] == "stopped"
    settle(engine)
    assert call(fan_client, "get", f"follows/{follow_id}/profitShare").status_code == 200


@pytest.mark.parametrize("body, message", [
    ({"amount": "100"}, "leaderID is required"),
    ({"leaderID": 999999, "amount": "100"}, "leaderID is required"),
    ({"leaderID": "²", "amount": "100"}, "leaderID is required"),
    ({"leaderID": True, "amount": "100"}, "leaderID is required"),
    ({"leaderID": ["LEADER"], "amount": "100"}, "leaderID is required"),
    ({"leaderID": "LEADER", "amount": "abc"}, "amount must be a number"),
    ({"leaderID": "LEADER", "amount": "100", "sizing": "martingale"}, "sizing is one of"),
    ({"leaderID": "LEADER", "amount": "100", "slippage": "0.5"}, "slippage is at most"),
    ({"leaderID": "LEADER", "amount": "100", "symbols": ["DOGEUSD"]}, "unknown symbol"),
    ({"leaderID": "LEADER", "amount": "100", "color": "red"}, "Unknown field"),
    ({"leaderID": "LEADER", "amount": "100000000"}, "insufficient Available Balance"),
])
def test_bad_follow_requests_are_400_with_a_message(engine, make_trader, body, message):
    whale = make_trader()
    leader_id = call(client_for(whale), "post", "leaders", {"name": "Careful Whale"}).json()["leaderID"]
    body = {k: (leader_id if v == "LEADER" else v) for k, v in body.items()}
    response = call(client_for(make_trader()), "post", "follows", body)
    assert response.status_code == 400, response.content
    assert message in response.json()["error"]["message"]


def test_someone_elses_copy_is_not_found(engine, make_trader):
    whale = make_trader()
    leader_id = call(client_for(whale), "post", "leaders", {"name": "Lonely Whale"}).json()["leaderID"]
    fan = make_trader()
    follow_id = call(client_for(fan), "post", "follows", {"leaderID": leader_id, "amount": "10"}).json()["followID"]
    response = call(client_for(make_trader()), "get", f"follows/{follow_id}/orders")
    assert response.status_code == 404 and "error" in response.json()


@pytest.mark.parametrize("body, message", [
    ({"name": "Tagged Whale", "tags": "btc"}, "tags are a list"),
    ({"name": "Open Whale", "public": "false"}, "public must be true or false"),
    ({"name": "Capped Whale", "followerCap": "many"}, "follower cap"),
    ({"name": "Capped Whale", "followerCap": "²"}, "follower cap"),
    ({"name": "Capped Whale", "followerCap": 20000}, "follower cap"),
    ({"name": "Greedy Whale", "profitShareRate": 0.5}, "between 0 and 0.30"),
    ({"name": "Exact Whale", "profitShareRate": "0.12345"}, "profit share rate has at most 4 decimal places"),
    ({"name": "Exact Whale", "profitShareRate": "0.0000001"}, "profit share rate has at most 4 decimal places"),
    ({"name": "x"}, "3 to 60 characters"),
    ({"name": ["Listy"]}, "name must be a string"),
    ({"name": None}, "name must be a string"),
    ({"name": 12345}, "name must be a string"),
    ({"name": "Quiet Whale", "description": None}, "description must be a string"),
    ({"name": "Quiet Whale", "description": ["x"]}, "description must be a string"),
    ({"name": "Chatty Whale", "motto": "hodl"}, "Unknown field(s): motto"),
])
def test_bad_leader_applications_are_400_and_create_nothing(engine, make_trader, body, message):
    response = call(client_for(make_trader()), "post", "leaders", body)
    assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert not Leader.objects.exists()


@pytest.mark.parametrize("body, expected", [
    ({"description": ["x"]}, "description must be a string"),
    ({"profitShareRate": "0.12345"}, "profit share rate has at most 4 decimal places"),
    ({"followerCap": "²"}, "follower cap"),
    ({"name": "Renamed Whale"}, "Unknown field(s): name"),
    ("[1]", "the body must be a JSON object"),
])
def test_bad_leader_changes_are_400_and_change_nothing(engine, make_trader, body, expected):
    client = client_for(make_trader())
    leader_id = call(client, "post", "leaders", {"name": "Steady Whale", "description": "calm"}).json()["leaderID"]
    response = client.put(f"/api/v1/copytrade/leaders/{leader_id}", body if isinstance(body, str) else json.dumps(body),
                          content_type="application/json")
    assert expected in refusal(response)
    leader = Leader.objects.get()
    assert (leader.display_name, leader.description, leader.profit_share_rate, leader.follower_cap) == \
        ("Steady Whale", "calm", Decimal("0.10"), 10_000)


@pytest.mark.parametrize("amount", ["1e22", "1e30", 10**40])
def test_a_follow_amount_too_large_to_hold_is_refused(leader_id, make_trader, amount):
    fan = make_trader()
    response = call(client_for(fan), "post", "follows", {"leaderID": leader_id, "amount": amount})
    assert refusal(response) == "amount is too large"
    assert not Follow.objects.exists() and not Account.objects.filter(user=fan.user, kind="copy").exists()


@pytest.mark.parametrize("symbols", [5, True, {"XBTUSDT": 1}, [1], [None], [["XBTUSDT"]], [{"a": 1}]])
def test_symbols_must_be_a_list_of_symbols(leader_id, make_trader, symbols):
    client = client_for(make_trader())
    created = call(client, "post", "follows", {"leaderID": leader_id, "amount": "10", "symbols": symbols})
    assert refusal(created) == "symbols is a list of symbols"
    follow_id = call(client, "post", "follows", {"leaderID": leader_id, "amount": "10"}).json()["followID"]
    changed = call(client, "put", f"follows/{follow_id}", {"symbols": symbols})
    assert refusal(changed) == "symbols is a list of symbols"
    assert Follow.objects.get().symbols == []


@pytest.mark.parametrize("field, value, expected", [
    ("ratio", "0.0000001", "ratio has at most 6 decimal places"),
    ("leverage", "0.001", "leverage has at most 2 decimal places"),
    ("fixedNotional", "1e-13", "fixed_notional has at most 10 decimal places"),
    ("takeProfit", "0.00001", "take_profit has at most 4 decimal places"),
    ("stopLoss", "1e-9", "stop_loss has at most 4 decimal places"),
    ("slippage", "0.000001", "slippage has at most 4 decimal places"),
    ("ratio", "1e6", "ratio is too large"),
    ("maxOrderNotional", "1e28", "max_order_notional is too large"),
])
def test_a_setting_finer_or_larger_than_its_column_is_refused_not_rounded(leader_id, make_trader, field, value,
                                                                          expected):
    client = client_for(make_trader())
    assert refusal(call(client, "post", "follows", {"leaderID": leader_id, "amount": "10", field: value})) == expected
    follow_id = call(client, "post", "follows", {"leaderID": leader_id, "amount": "10"}).json()["followID"]
    before = call(client, "get", f"follows/{follow_id}").json()
    assert refusal(call(client, "put", f"follows/{follow_id}", {field: value})) == expected
    assert call(client, "get", f"follows/{follow_id}").json() == before


@pytest.mark.parametrize("body", ["[false]", "null", '"keep"', '{"closePosition": false}'])
def test_an_unfollow_whose_body_is_not_an_object_of_known_fields_is_refused(leader_id, make_trader, body):
    client = client_for(make_trader())
    follow_id = call(client, "post", "follows", {"leaderID": leader_id, "amount": "10"}).json()["followID"]
    response = client.delete(f"/api/v1/copytrade/follows/{follow_id}", body, content_type="application/json")
    assert response.status_code == 400
    assert Follow.objects.get(pk=follow_id).status == "active"


def test_copying_open_positions_says_what_was_copied_and_what_was_refused(engine, make_trader):
    maker = make_trader(usdt="10000000", xbt="0")
    trading.submit_order(account=maker, symbol="XBTUSDT", side="Sell", order_qty=50_000_000, price="50000")
    settle(engine)
    whale = make_trader(usdt="1000000", xbt="0")
    trading.submit_order(account=whale, symbol="XBTUSDT", side="Buy", order_qty=10_000_000, ord_type="Market")
    settle(engine)
    leader_id = call(client_for(whale), "post", "leaders", {"name": "Open Whale"}).json()["leaderID"]

    def follow_open_positions(**settings):
        body = {"leaderID": leader_id, "amount": "1000", "copyOpenPositions": True, **settings}
        response = call(client_for(make_trader()), "post", "follows", body)
        assert response.status_code == 200, response.content
        return response.json()

    copied = follow_open_positions(amount="100000")
    ((opened,),) = [copied["openPositions"]]
    assert (opened["symbol"], opened["side"], opened["status"], opened["reason"]) == ("XBTUSDT", "Buy", "placed", "")
    assert opened["orderQty"] > 0
    assert "in XBTUSDT were copied at market" in copied["warning"] and "Not copied" not in copied["warning"]

    too_big = follow_open_positions(sizing="fixed_ratio", ratio="999999")
    ((opened,),) = [too_big["openPositions"]]
    assert (opened["status"], opened["orderQty"]) == ("refused", 0)
    assert "insufficient Available Balance" in opened["reason"]
    assert too_big["warning"].startswith("None of the leader's open positions was copied. Not copied: XBTUSDT (")
    assert "copied at market" not in too_big["warning"]

    elsewhere = follow_open_positions(symbols=["ETHUSDT"])
    assert [(o["status"], o["reason"]) for o in elsewhere["openPositions"]] == [("refused", "not among the copy's symbols")]
    settle(engine)
    placed = Order.objects.filter(account__follow__isnull=False).values_list("account__follow", flat=True)
    assert list(placed) == [copied["followID"]]
