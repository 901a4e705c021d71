from decimal import Decimal as D

import pytest

from accounts.models import Balance
from matching import services
from matching.models import Instrument, Order, OrdStatus
from matching.services import BulkOrder
from tests.conftest import settle

pytestmark = pytest.mark.django_db


def test_bulk_orders_reserve_margin_refuse_the_unaffordable_and_never_repeat(engine, make_trader):
    maker = make_trader()
    services.submit_order(account=maker, symbol="XBTUSDT", side="Sell", order_qty=5_000_000, price="50000")
    settle(engine)
    rich, poor = make_trader(), make_trader(usdt="10", xbt="0")
    instrument = Instrument.objects.select_related("settle_asset").get(symbol="XBTUSDT")
    requests = [BulkOrder(account_id=a.pk, side="Buy", order_qty=1_000_000, ord_type="Limit", price=D(50000),
                          time_in_force="ImmediateOrCancel", cl_ord_id=f"copy-1-{a.pk}") for a in (rich, poor)]
    first = services.submit_orders_bulk(instrument=instrument, orders=requests)
    assert first[0].order_pk and not first[0].reason
    assert first[1].order_pk is None and "insufficient Available Balance" in first[1].reason
    assert Balance.objects.get(account=rich, asset_id="USDT").order_margin == D(5000) + D("37.5")
    again = services.submit_orders_bulk(instrument=instrument, orders=requests)
    assert again[0].order_pk == first[0].order_pk
    assert Order.objects.filter(account=rich).count() == 1
    settle(engine)
    order = Order.objects.get(pk=first[0].order_pk)
    assert order.ord_status == OrdStatus.FILLED and order.margin_reserved == 0
