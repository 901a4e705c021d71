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


def test_bulk_orders_count_the_accounts_open_orders_and_each_other_on_the_position(engine, make_trader):
    """A position is reduced once: by the account's open orders first, then by the bulk's earlier
    orders; what goes beyond it opens a position and holds margin."""
    maker, trader = make_trader(), make_trader()
    services.submit_order(account=maker, symbol="XBTUSDT", side="Sell", order_qty=2_000_000, price="50000")
    settle(engine)
    services.submit_order(account=trader, symbol="XBTUSDT", side="Buy", order_qty=2_000_000, price="50000")
    settle(engine)  # the trader is long 2 XBT
    resting = services.submit_order(account=trader, symbol="XBTUSDT", side="Sell", order_qty=1_000_000,
                                    price="55000")
    assert resting.unmargined_qty == 1_000_000
    settle(engine)
    instrument = Instrument.objects.select_related("settle_asset").get(symbol="XBTUSDT")
    requests = [BulkOrder(account_id=trader.pk, side="Sell", order_qty=1_000_000, ord_type="Limit", price=D(60000),
                          time_in_force="GoodTillCancel", cl_ord_id=f"bulk-{n}") for n in range(2)]
    first, second = services.submit_orders_bulk(instrument=instrument, orders=requests)
    fee = D(60000) * D("0.00075")
    first, second = Order.objects.get(pk=first.order_pk), Order.objects.get(pk=second.order_pk)
    assert (first.unmargined_qty, first.margin_reserved) == (1_000_000, fee)  # closes the second XBT
    assert (second.unmargined_qty, second.margin_reserved) == (0, D(6000) + fee)  # opens a short
    settle(engine)


def test_locked_accounts_read_positions_once_as_the_separate_reads_did(engine, make_trader):
    """One read gives an account's quantity and leverage on the instrument and its unrealized PnL
    over every instrument of the asset; the balance rows are locked; an order of an account the
    caller did not lock is refused as a programming error."""
    from django.db import transaction

    from matching import selectors

    maker, taker, idle = make_trader(), make_trader(), make_trader()
    services.submit_order(account=maker, symbol="XBTUSDT", side="Sell", order_qty=2_000_000, price="50000")
    services.submit_order(account=taker, symbol="XBTUSDT", side="Buy", order_qty=2_000_000, price="50000")
    settle(engine)
    services.submit_order(account=maker, symbol="XBTUSDT", side="Sell", order_qty=1_000_000, price="50500")
    services.submit_order(account=taker, symbol="XBTUSDT", side="Buy", order_qty=1_000_000, price="50500")
    settle(engine)  # the last price moved: both carry unrealized PnL
    instrument = Instrument.objects.select_related("settle_asset").get(symbol="XBTUSDT")
    ids = [maker.pk, taker.pk, idle.pk]
    with transaction.atomic():
        accounts = services.lock_accounts(instrument=instrument, account_ids=ids)
        assert set(accounts.balances) == set(ids)
        wallet = Balance.objects.get(account=taker, asset_id="USDT")
        assert accounts.balances[taker.pk] == (wallet.amount, wallet.order_margin, wallet.position_margin)
        positions = accounts.positions
        assert positions.quantities == {maker.pk: -3_000_000, taker.pk: 3_000_000}
        assert positions.unrealized == selectors.unrealized_pnl_by_account(account_ids=ids, asset_code="USDT")
        assert positions.unrealized[taker.pk] > 0 > positions.unrealized[maker.pk]
        assert set(positions.leverages) == {maker.pk, taker.pk}
        stranger = make_trader()
        with pytest.raises(ValueError, match="locked"):
            services.submit_orders_bulk(instrument=instrument, accounts=accounts, orders=[BulkOrder(
                account_id=stranger.pk, side="Buy", order_qty=1_000_000, ord_type="Limit", price=D(40000),
                time_in_force="GoodTillCancel", cl_ord_id="not-locked")])
    assert not Order.objects.filter(cl_ord_id="not-locked").exists()


def test_keys_a_block_reserved_serve_later_calls_of_the_same_process_only(monkeypatch):
    """A small call takes the keys its block left over for the next one, without asking the
    database; a forked child (another pid) never reuses what its parent kept."""
    from matching import persistence

    first = persistence.next_ids("matching_execution", 10)
    second = persistence.next_ids("matching_execution", 10)
    assert second == list(range(first[-1] + 1, first[-1] + 11))  # the rest of the same block
    kept = list(persistence._spare_ids["matching_execution"])
    monkeypatch.setattr(persistence, "_spare_ids_pid", -1)  # as a forked child sees it
    in_child = persistence.next_ids("matching_execution", 10)
    assert not set(in_child) & set(kept + first + second)


def test_keys_taken_in_blocks_never_meet_an_insert_of_the_orm(make_trader):
    """Orders and executions are written with keys taken beforehand, a block of 1,000 per nextval;
    an ORM insert in between takes a key of its own block."""
    from matching import persistence

    first = persistence.next_ids("matching_order", 1500)
    order = services.submit_order(account=make_trader(), symbol="XBTUSDT", side="Buy", order_qty=1_000_000,
                                  price="40000", wait=0)
    second = persistence.next_ids("matching_order", 3)
    keys = [*first, order.pk, *second]
    assert len(first) == 1500 and len(second) == 3 and len(set(keys)) == len(keys)
    assert first == sorted(first) and second == sorted(second)
    one, two = persistence.next_ids("matching_position", 2)  # a sequence stepping by 1 works as before
    assert two == one + 1
    both = persistence.next_ids_of({"matching_execution": 2500, "matching_position": 1, "matching_order": 0})
    assert len(both["matching_execution"]) == 2500 == len(set(both["matching_execution"]))
    assert both["matching_position"][0] > two and both["matching_order"] == []


def test_commands_stored_by_copy_and_by_the_orm_never_share_a_key(make_trader):
    """Commands' keys come in blocks of 1,000 too: cancels stored by COPY (a cancel-all) take theirs
    from their process's block, an amend stored by the ORM takes a block of its own."""
    from matching import persistence
    from matching.models import OrderCommand

    assert persistence._id_step("matching_ordercommand") == 1000
    persistence._spare_ids.pop("matching_ordercommand", None)  # a block of its own, whatever ran before
    order = services.submit_order(account=make_trader(), symbol="XBTUSDT", side="Buy", order_qty=1_000_000,
                                  price="40000", wait=0)
    cancel = (order.pk, OrderCommand.Kind.CANCEL, None, None, None, None, "", D(0), None)
    (first,) = persistence.store_commands([cancel])
    amend = OrderCommand.objects.create(order=order, kind=OrderCommand.Kind.AMEND, new_price=D(39000))
    (second,) = persistence.store_commands([cancel])
    assert second == first + 1  # the same block: no round trip for the second
    assert amend.pk not in set(persistence._spare_ids["matching_ordercommand"]) | {first, second}
    assert OrderCommand.objects.filter(pk__in=[first, amend.pk, second]).count() == 3


def test_an_engine_batch_takes_its_ledger_transaction_key_from_a_block(make_trader):
    """The engine takes one ledger transaction key a batch: from a block of 1,000, so that most batches
    take theirs without asking the database; the ORM's transactions (a deposit) take keys of their own."""
    from accounts.models import LedgerTransaction
    from accounts.services import deposit
    from matching import persistence

    assert persistence._id_step("accounts_ledgertransaction") == 1000
    persistence._spare_ids.pop("accounts_ledgertransaction", None)  # a block of its own, whatever ran before
    batches = [persistence.next_ids_of({"matching_execution": 0, "accounts_ledgertransaction": 1})
               ["accounts_ledgertransaction"][0] for _ in range(3)]
    assert batches == list(range(batches[0], batches[0] + 3))  # the same block
    reserved = set(persistence._spare_ids["accounts_ledgertransaction"])
    assert len(reserved) == 997
    orm = deposit(account=make_trader(), asset="USDT", amount=D(5)).transaction_id
    assert orm not in reserved | set(batches)  # the ORM's insert took a block of its own
    assert LedgerTransaction.objects.filter(pk__in=batches).count() == 0


def test_ids_are_version_7_uuids_in_the_order_they_were_made():
    import time
    import uuid

    from matching.ids import time_ordered_uuid, time_ordered_uuid_text

    ids = [time_ordered_uuid_text() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert abs((parsed.int >> 80) - time.time() * 1000) < 60_000  # Unix milliseconds up front
    before = time_ordered_uuid()
    time.sleep(0.002)
    after = time_ordered_uuid()
    assert before.version == 7 and after > before  # a later millisecond sorts later


def test_a_batch_makes_valid_ids_in_order_and_never_the_same_twice():
    import uuid

    from matching.ids import time_ordered_uuid_texts

    first, second = time_ordered_uuid_texts(), time_ordered_uuid_texts()
    ids = [first() for _ in range(5000)]
    others = [second() for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids + others)) == 10_000
    for text in ids[:10] + others[-10:]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_copy_lines_write_what_the_engine_makes_exactly():
    from config.rawsql import raw_cursor
    from matching.persistence import copy_lines, copy_text

    rows = [(1, D("-0E-8"), D("1E+2"), D("0.00000001"), "execution:0192f0c1-aaaa-7bbb-8ccc-1234567890ab",
             "2026-12-02T10:00:00.123456+00:00"),
            (2, D("-123456789.123456789012345678"), D(0), D("5E-18"), "Filled", "2026-12-02T10:00:00+00:00")]
    columns = [("id", ""), ("a", ""), ("b", ""), ("c", ""), ("t", ""), ("at", "")]
    with raw_cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE copied (id bigint, a numeric, b numeric, c numeric, t text, at timestamptz)")
        copy_text("copied", columns, copy_lines(rows, len(columns)))
        cursor.execute("SELECT id, a, b, c, t, at::text FROM copied ORDER BY id")
        back = cursor.fetchall()
    assert [row[:5] for row in back] == [row[:5] for row in rows]
    assert back[0][5] == "2026-12-02 10:00:00.123456+00"


def test_writes_together_are_one_statement_that_does_each_of_them():
    from config.rawsql import raw_cursor
    from matching.persistence import update_statement, write_together

    with raw_cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE one (id bigint PRIMARY KEY, v text)")
        cursor.execute("CREATE TEMPORARY TABLE two (id bigint PRIMARY KEY, n numeric)")
        cursor.execute("INSERT INTO one VALUES (1, 'a'), (2, 'b'); INSERT INTO two VALUES (1, 0)")
        write_together([update_statement("one", [("id", "bigint"), ("v", "text")], ["{1,2}", "{x,y}"]),
                        ("INSERT INTO two (id, n) VALUES (%s, %s)", [2, D("1.5")]),
                        update_statement("two", [("id", "bigint")], ["{1}"], n=D(7))],
                       ("SELECT pg_notify(%s, %s)", ["test_channel", "done"]))
        cursor.execute("SELECT id, v FROM one ORDER BY id")
        assert cursor.fetchall() == [(1, "x"), (2, "y")]
        cursor.execute("SELECT id, n FROM two ORDER BY id")
        assert cursor.fetchall() == [(1, D(7)), (2, D("1.5"))]
        write_together([], ("SELECT pg_notify(%s, %s)", ["test_channel", "nothing else"]))  # the query alone


def test_a_long_statement_is_sent_with_numbered_placeholders_parsed_once():
    """The batch's one write statement is too long for psycopg's own cache of parsed queries: its %s
    become $1, $2, ... once per text, and a text with any other % is refused, never half-converted."""
    from config.rawsql import numbered

    assert numbered("SELECT %s::int + %s, %s") == "SELECT $1::int + $2, $3"
    assert numbered("SELECT 1") == "SELECT 1"
    assert numbered("SELECT %s") is numbered("SELECT %s")  # parsed once
    for bad in ("SELECT %s, '100%%'", "SELECT %(name)s"):
        with pytest.raises(ValueError, match="placeholders"):
            numbered(bad)


def test_the_engines_balance_lock_creates_a_row_it_expected_but_is_missing(make_trader):
    """The engine locks its balance rows with one read, expecting them all; a missing one is still
    created, and locked with the others in key order."""
    from matching.persistence import _lock_balances

    account = make_trader(usdt="100", xbt="0")
    usdt = Balance.objects.get(account=account, asset_id="USDT")
    locked = _lock_balances([(account.pk, "ETH"), (account.pk, "USDT")], expected=True)
    eth = Balance.objects.get(account=account, asset_id="ETH")
    assert locked == {(account.pk, "USDT"): (usdt.pk, D(100), D(0), D(0)), (account.pk, "ETH"): (eth.pk, 0, 0, 0)}


def test_new_rows_go_in_the_same_inline_or_by_copy(monkeypatch):
    """A batch's new rows ride inside its update statement when few, by COPY when many: the same
    values come back either way."""
    from config.rawsql import raw_cursor
    from matching import persistence

    columns = [("id", "bigint"), ("a", "numeric"), ("u", "uuid"), ("t", "text"), ("at", "timestamptz")]
    rows = [(1, D("-0E-8"), "0192f0c1-aaaa-7bbb-8ccc-1234567890ab", "Filled", "2026-12-02T10:00:00.123456+00:00"),
            (2, D("1E+2"), "0192f0c1-aaaa-7bbb-8ccc-1234567890ac", "order:12", "2026-12-02T10:00:00+00:00"),
            (3, D("5E-18"), "0192f0c1-aaaa-7bbb-8ccc-1234567890ad", "", "2026-12-02T10:00:00+00:00")]
    back = {}
    with raw_cursor() as cursor:
        for name, inline_rows in (("inline", 500), ("copied", 0)):
            monkeypatch.setattr(persistence, "INLINE_ROWS", inline_rows)
            cursor.execute(f"CREATE TEMPORARY TABLE {name} (id bigint, a numeric, u uuid, t text, at timestamptz)")
            made = persistence.new_rows(columns, rows)
            assert isinstance(made, list) == (name == "inline")
            if name == "inline":
                persistence.write_together([persistence.insert_statement(name, columns, made)], ("SELECT 1", []))
            else:
                persistence.copy_text(name, columns, made)
            cursor.execute(f"SELECT id, a, u::text, t, at FROM {name} ORDER BY id")
            back[name] = cursor.fetchall()
    assert back["inline"] == back["copied"]
    assert [row[:4] for row in back["inline"]] == [row[:4] for row in rows]
    assert persistence.new_rows(columns, []) == ""


def test_open_orders_are_listed_apart_pending_then_held_until_they_end(engine, make_trader):
    """PendingOrder lists stored orders the engine has not applied (filled by a trigger, whichever way
    the order was inserted), HeldOrder those it holds; the engine moves them in the batch that
    changes the order, and check_ledger reports an open order missing from them."""
    from matching import selectors as services_selectors
    from matching.models import HeldOrder, PendingOrder
    from matching.selectors import open_order_problems

    def listed(*orders):
        return [("pending" if PendingOrder.objects.filter(order=o).exists() else "")
                + ("held" if HeldOrder.objects.filter(order=o).exists() else "") for o in orders]

    maker, taker, stopper = make_trader(), make_trader(), make_trader()
    ask = services.submit_order(account=maker, symbol="XBTUSDT", side="Sell", order_qty=3_000_000, price="50000")
    assert listed(ask) == ["pending"]
    settle(engine)
    assert listed(ask) == ["held"]
    assert HeldOrder.objects.get(order=ask).instrument_id == ask.instrument_id
    instrument = Instrument.objects.select_related("settle_asset").get(symbol="XBTUSDT")
    (bid,) = services.submit_orders_bulk(instrument=instrument, orders=[BulkOrder(  # by COPY
        account_id=taker.pk, side="Buy", order_qty=1_000_000, ord_type="Limit", price=D(50000),
        time_in_force="ImmediateOrCancel", cl_ord_id="listed-1")])
    stop = services.submit_order(account=stopper, symbol="XBTUSDT", side="Buy", order_qty=1_000_000,
                                 ord_type="Stop", stop_px="60000")
    assert listed(bid.order_pk, stop) == ["pending", "pending"]
    settle(engine)
    ask.refresh_from_db()
    assert ask.ord_status == OrdStatus.PARTIALLY_FILLED
    assert listed(ask, bid.order_pk, stop) == ["held", "", "held"]  # the IOC order filled at once
    row = HeldOrder.objects.get(order=ask)  # what the public order book reads
    assert (row.side, row.price, row.leaves_qty, row.ord_status) == ("Sell", D(50000), 2_000_000, "PartiallyFilled")
    assert services_selectors.order_book_l2(instrument=instrument) == [("Sell", D(50000), 2_000_000)]
    services.amend_order(account=maker, order=ask, price="50500", wait=0)
    settle(engine)
    assert HeldOrder.objects.get(order=ask).price == D(50500)
    assert services_selectors.order_book_l2(instrument=instrument) == [("Sell", D(50500), 2_000_000)]
    services.submit_order(account=taker, symbol="XBTUSDT", side="Buy", order_qty=2_000_000, price="50500")
    settle(engine)
    assert listed(ask) == [""]
    assert services_selectors.order_book_l2(instrument=instrument) == []
    assert open_order_problems() == []
    HeldOrder.objects.filter(order=stop).update(leaves_qty=5)
    assert open_order_problems() == [f"order {stop.pk} is Untriggered but its held row says otherwise"]
    HeldOrder.objects.filter(order=stop).delete()
    assert open_order_problems() == [f"order {stop.pk} is Untriggered but not listed as held"]
    HeldOrder.objects.create(order=stop, account_id=stopper.pk, instrument_id=stop.instrument_id, side="Buy",
                             leaves_qty=1_000_000, ord_status="Untriggered")
    assert open_order_problems() == []
    HeldOrder.objects.filter(order=stop).update(account_id=maker.pk)  # the account finds its open orders by it
    assert open_order_problems() == [f"order {stop.pk} is Untriggered but its held row says otherwise"]
    HeldOrder.objects.filter(order=stop).update(account_id=stopper.pk)
    assert open_order_problems() == []


def test_an_order_ended_by_hand_leaves_the_lists_when_the_engine_restarts(engine, make_trader):
    from matching.models import HeldOrder

    maker = make_trader()
    ask = services.submit_order(account=maker, symbol="XBTUSDT", side="Sell", order_qty=1_000_000, price="70000")
    settle(engine)
    assert HeldOrder.objects.filter(order=ask).exists()
    from django.db.models import F

    ask.refresh_from_db()
    # canceled by hand, its margin given back as the engine would: its row stays behind
    Balance.objects.filter(account=maker, asset_id="USDT").update(order_margin=F("order_margin") - ask.margin_reserved)
    Order.objects.filter(pk=ask.pk).update(ord_status=OrdStatus.CANCELED, leaves_qty=0, margin_reserved=0)
    assert HeldOrder.objects.filter(order=ask).exists()
    engine.rebuild()
    assert not HeldOrder.objects.filter(order=ask).exists()
    assert ask.pk not in engine.states[ask.instrument_id].orders


def test_no_index_names_a_column_the_engine_updates_so_its_order_writes_stay_hot():
    """An order's every change is a new row version; with no index on a changed column (partial
    indexes' conditions included) and room on the page, PostgreSQL writes it without index entries."""
    import re

    from django.db import connection

    from matching.persistence import ORDER_COLUMNS

    written = {name for name, _ in ORDER_COLUMNS if name != "id"} | {"updated_at"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'matching_order'")
        definitions = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'matching_order'")
        (options,) = cursor.fetchone()
    assert len(definitions) >= 3
    for definition in definitions:
        columns = re.sub(r"::\w+", "", definition.split(" USING ", 1)[1])  # without type casts such as ::text
        named = {column for column in written if re.search(rf"\b{column}\b", columns)}
        assert not named, f"{definition} names {named}"
    assert "fillfactor=50" in options


def test_the_sweep_finds_stored_orders_through_pending_order_without_reading_every_order(make_trader):
    """The sweep looks for pending orders once a second: it walks PendingOrder and reads each order
    by its key, however many orders have ended, whatever the statistics say (as a join, the
    planner chose to scan every order in the engine benchmark: 9.4 ms for 36,000)."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from matching import persistence
    from matching.ids import time_ordered_uuid_text
    from matching.models import PendingOrder

    instrument = Instrument.objects.get(symbol="XBTUSDT")
    account = make_trader()
    stamp = (timezone.now() - timedelta(minutes=1)).isoformat()
    ids = persistence.store_new_orders([
        (time_ordered_uuid_text(), account.pk, instrument.pk, "", "Buy", "Limit", "GoodTillCancel", "",
         D(40000), None, None, 1000, 1000, D(0), 0, "", stamp, stamp) for _ in range(20_000)])
    with connection.cursor() as cursor:  # statistics taken during a burst, as autovacuum may leave them
        cursor.execute("ANALYZE matching_order")
        cursor.execute("ANALYZE matching_pendingorder")
    pending = ids[5_000:5_003]
    Order.objects.filter(pk__in=ids).exclude(pk__in=pending).update(ord_status=OrdStatus.FILLED, leaves_qty=0)
    PendingOrder.objects.exclude(order_id__in=pending).delete()
    found = persistence.stored_pending_orders([instrument.pk], timezone.now(), 100)
    assert [pk for pk, _ in found] == pending
    assert persistence.stored_pending_orders([instrument.pk], timezone.now() - timedelta(hours=1), 100) == []
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + persistence.stored_pending_orders_sql(True),
                       ["{%d}" % instrument.pk, timezone.now(), 100])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan on matching_order" not in plan, plan
    # nor compiled: PostgreSQL's JIT took 73-109 ms over such an estimate, for a read of 1-6 ms
    assert "JIT" not in plan, plan
    # the first stored comes first, whatever its key: keys come in blocks, one per process
    Order.objects.filter(pk=pending[2]).update(created_at=timezone.now() - timedelta(hours=1))
    assert persistence.stored_pending_orders([instrument.pk], None, 1) == [
        (pending[2], Order.objects.get(pk=pending[2]).created_at)]
