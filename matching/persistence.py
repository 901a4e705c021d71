"""Writes one engine batch: positions, balances, ledger, orders, executions, commands, prices.

Called inside the batch's transaction. Rows are written in bulk, with one statement per table
where PostgreSQL allows it; balance rows are locked in primary-key order, after positions, as
everywhere else in the project, so concurrent requests cannot deadlock with the engine.
"""
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.models import Balance, LedgerEntry, LedgerTransaction
from matching import contracts
from matching.models import Execution


def update_rows(table: str, columns: list[tuple[str, str]], rows: list[tuple]) -> None:
    """UPDATE table SET columns FROM (VALUES rows) WHERE id matches; the first column is the id."""
    if not rows:
        return
    names = [name for name, _ in columns]
    row_sql = "(" + ", ".join(f"%s::{sqltype}" for _, sqltype in columns) + ")"
    assignments = ", ".join(f"{name} = v.{name}" for name in names[1:])
    sql = (f"UPDATE {table} AS t SET {assignments} FROM (VALUES {', '.join([row_sql] * len(rows))}) "
           f"AS v({', '.join(names)}) WHERE t.{names[0]} = v.{names[0]}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for row in rows for value in row])


def write_batch(engine, batch) -> None:
    now = timezone.now()
    _write_positions(engine, batch, now)
    _write_balances(batch)
    _write_ledger(batch)
    _write_orders(batch, now)
    Execution.objects.bulk_create(batch.executions, batch_size=2000)
    update_rows("matching_ordercommand", [("id", "bigint"), ("status", "text"), ("reason", "text")],
                [(pk, status, reason[:200]) for pk, (status, reason) in batch.commands.items()])
    _write_prices(engine, batch)


def _write_positions(engine, batch, now) -> None:
    """Stores the engine's quantities and entry values; margin follows each position's current leverage."""
    if not batch.positions:
        return
    keys = sorted(batch.positions)
    states = engine.states
    default_leverage = {pk: min(settings.DEFAULT_LEVERAGE, s.instrument.max_leverage) for pk, s in states.items()}
    values = ", ".join(["(%s::bigint, %s::bigint, %s::bigint, %s::numeric, %s::numeric, %s::numeric, "
                        "%s::numeric, %s::timestamptz, %s::timestamptz)"] * len(keys))
    params = []
    for instrument_pk, account_id in keys:
        p = batch.positions[(instrument_pk, account_id)]
        params += [account_id, instrument_pk, p.qty, p.entry_value, p.realized_pnl, p.cum_realized_pnl,
                   default_leverage[instrument_pk], p.opened_at, now]
    sql = f"""
        INSERT INTO matching_position AS p (account_id, instrument_id, current_qty, entry_value, realized_pnl,
                                            cum_realized_pnl, leverage, opened_at, updated_at, cross_margin, margin)
        SELECT v.*, TRUE, 0 FROM (VALUES {values}) AS v
        ON CONFLICT (account_id, instrument_id) DO UPDATE SET
            current_qty = EXCLUDED.current_qty, entry_value = EXCLUDED.entry_value,
            realized_pnl = EXCLUDED.realized_pnl, cum_realized_pnl = EXCLUDED.cum_realized_pnl,
            opened_at = EXCLUDED.opened_at, updated_at = EXCLUDED.updated_at
        RETURNING p.id, p.account_id, p.instrument_id, p.current_qty, p.entry_value, p.leverage, p.margin"""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        returned = cursor.fetchall()
    margins = []
    for pk, account_id, instrument_pk, qty, entry_value, leverage, margin in returned:
        state = states[instrument_pk]
        new_margin = Decimal(0)
        if qty:
            entry = contracts.avg_entry_price(qty, entry_value, state.terms)
            new_margin = contracts.initial_margin(qty, entry, leverage, state.terms)
        if new_margin != margin:
            margins.append((pk, new_margin))
            batch.balance(account_id, state.asset)[2] += new_margin - margin
    update_rows("matching_position", [("id", "bigint"), ("margin", "numeric")], margins)


def _write_balances(batch) -> None:
    changes = {key: d for key, d in batch.balances.items() if any(d)}
    if not changes:
        return
    Balance.objects.bulk_create([Balance(account_id=a, asset_id=s) for a, s in changes], ignore_conflicts=True)
    rows = list(Balance.objects.select_for_update(no_key=True)
                .filter(account_id__in={a for a, _ in changes}, asset_id__in={s for _, s in changes})
                .order_by("pk").values_list("pk", "account_id", "asset_id"))
    update = []
    for pk, account_id, asset_id in rows:
        delta = changes.get((account_id, asset_id))
        if delta:
            update.append((pk, *delta))
    with connection.cursor() as cursor:
        values = ", ".join(["(%s::bigint, %s::numeric, %s::numeric, %s::numeric)"] * len(update))
        cursor.execute(
            f"""UPDATE accounts_balance AS b SET amount = b.amount + v.amount,
                    order_margin = b.order_margin + v.order_margin,
                    position_margin = b.position_margin + v.position_margin
                FROM (VALUES {values}) AS v(id, amount, order_margin, position_margin) WHERE b.id = v.id""",
            [x for row in update for x in row])


def _write_ledger(batch) -> None:
    """One ledger transaction per fee and per realized PnL (their balances are in batch.balances)."""
    if not batch.ledger:
        return
    transactions = LedgerTransaction.objects.bulk_create(
        [LedgerTransaction(kind=kind, reference=reference) for kind, reference, _ in batch.ledger], batch_size=2000)
    LedgerEntry.objects.bulk_create(
        [LedgerEntry(transaction_id=tx.pk, account_id=account_id, asset_id=asset, amount=amount)
         for tx, (_, _, legs) in zip(transactions, batch.ledger) for account_id, asset, amount in legs],
        batch_size=5000)


ORDER_COLUMNS = [
    ("id", "bigint"), ("ord_status", "text"), ("leaves_qty", "bigint"), ("cum_qty", "bigint"),
    ("order_qty", "bigint"), ("cum_notional", "numeric"), ("avg_px", "numeric"), ("price", "numeric"),
    ("stop_px", "numeric"), ("protect_price", "numeric"), ("triggered", "text"), ("working_indicator", "boolean"),
    ("ord_rej_reason", "text"), ("text", "text"), ("margin_reserved", "numeric"), ("priority", "bigint"),
    ("updated_at", "timestamptz"),
]


def _write_orders(batch, now) -> None:
    update_rows("matching_order", ORDER_COLUMNS, [
        (o.pk, o.ord_status, o.leaves_qty, o.cum_qty, o.order_qty, o.cum_notional, o.avg_px, o.price, o.stop_px,
         o.protect_price, o.triggered, o.working, o.ord_rej_reason[:200], o.text[:200], o.margin_reserved,
         o.priority, now)
        for o in batch.orders.values()])


def _write_prices(engine, batch) -> None:
    rows = []
    for instrument_pk in batch.instruments | {pk for pk in engine.states}:
        state = engine.states[instrument_pk]
        bid, ask = state.book.best_bid(), state.book.best_ask()
        tick = state.terms.tick_size
        rows.append((instrument_pk, state.last_price, state.last_price if state.last_price else None,
                     bid * tick if bid else None, ask * tick if ask else None))
    update_rows("matching_instrument", [("id", "bigint"), ("last_price", "numeric"), ("mark_price", "numeric"),
                                        ("bid_price", "numeric"), ("ask_price", "numeric")], rows)
