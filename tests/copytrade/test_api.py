"""Copy trading through /api/v1/copytrade/."""
import json

import pytest
from rest_framework.test import APIClient

from matching import services as trading
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
    ({"name": "Capped Whale", "followerCap": 20000}, "follower cap"),
    ({"name": "Greedy Whale", "profitShareRate": 0.5}, "between 0 and 0.30"),
    ({"name": "x"}, "3 to 60 characters"),
])
def test_bad_leader_applications_are_400_and_create_nothing(engine, make_trader, body, message):
    from copytrade.models import Leader

    response = call(client_for(make_trader()), "post", "leaders", body)
    assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert not Leader.objects.exists()
