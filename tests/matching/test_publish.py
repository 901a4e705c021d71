"""What the engine publishes on the channel layer after each committed batch."""
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from matching import publish, services, streams
from tests.conftest import settle

pytestmark = pytest.mark.django_db


def receive_all(channel):
    layer = get_channel_layer()
    messages = []
    while True:
        try:
            messages.append(_receive_nowait(layer, channel))
        except LookupError:
            return messages


def _receive_nowait(layer, channel):
    import asyncio

    async def get():
        try:
            return await asyncio.wait_for(layer.receive(channel), timeout=0.5)
        except asyncio.TimeoutError:
            raise LookupError from None

    return async_to_sync(get)()


@pytest.fixture
def listen():
    """listen(group) -> a new channel in that group; it leaves the group after the test, so that later
    batches do not fill it up."""
    layer = get_channel_layer()
    joined = []

    def join(group):
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(group, channel)
        joined.append((group, channel))
        return channel

    yield join
    for group, channel in joined:
        async_to_sync(layer.group_discard)(group, channel)


def test_trades_and_changed_levels_go_to_the_market_group(engine, make_trader, listen):
    channel = listen(publish.market_group("XBTUSDT"))
    seller, buyer = make_trader(), make_trader()
    services.submit_order(account=seller, symbol="XBTUSDT", side="Sell", order_qty=2_000_000, price="50000")
    settle(engine)
    services.submit_order(account=buyer, symbol="XBTUSDT", side="Buy", order_qty=1_000_000, price="50000")
    settle(engine)
    first, second = receive_all(channel)
    assert first["levels"] == [{"side": "Sell", "price": 50000, "size": 2_000_000, "id": first["levels"][0]["id"]}]
    assert [(t["side"], t["size"], t["price"], t["symbol"]) for t in second["trades"]] == [("Buy", 1_000_000, 50000, "XBTUSDT")]
    assert [(lv["side"], lv["size"]) for lv in second["levels"]] == [("Sell", 1_000_000)]


def test_accounts_with_a_live_connection_get_their_changes(engine, make_trader, listen):
    watched, other = make_trader(), make_trader()
    channel = listen(publish.account_group(watched.pk))
    streams.client().sadd(publish.subscribed_accounts_key(), watched.pk)
    order = services.submit_order(account=watched, symbol="XBTUSDT", side="Buy", order_qty=1_000_000, price="40000")
    services.submit_order(account=other, symbol="XBTUSDT", side="Buy", order_qty=1_000_000, price="40000")
    settle(engine)
    (message,) = receive_all(channel)
    assert message["orders"] == [order.pk] and message["executions"] == []


def test_a_stalled_layer_drops_messages_with_one_counted_warning_per_interval(caplog, monkeypatch):
    publisher = publish.Publisher()
    monkeypatch.setattr(publisher, "MAX_QUEUED", 0)  # the layer is behind from the start
    clock = iter([100.0, 101.0, 102.0, 111.0, 112.0])
    # the module's own clock: patching time.monotonic itself would feed any other thread too
    monkeypatch.setattr(publish, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    with caplog.at_level("WARNING", logger="matching.publish"):
        for i in range(5):
            publisher.send_all(None, [(f"market.X{i}", {})])
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["the channel layer is behind: 1 message(s) dropped, the last to market.X0",
                        "the channel layer is behind: 3 message(s) dropped, the last to market.X3"]
    assert publisher.dropped == 1  # the fifth, counted for the next warning
