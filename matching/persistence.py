"""Writes one engine batch: positions, balances, ledger, orders, executions, commands, prices.

Called inside the batch's transaction. The updates and, for a small batch, the new rows go
together in one statement, each table's rows as one array literal per column (`unnest`), so the
SQL text stays small whatever the batch size; a large batch's new rows go in by COPY. Positions are locked (and missing ones created) in
one pass in (account, instrument) order, then balance rows in primary-key order, as everywhere
else in the project, so concurrent requests cannot deadlock with the engine. Each position is
written once, with the margin its current leverage asks for.
"""
import os
import threading
from collections import deque
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

import psycopg
from django.utils import timezone

from config.rawsql import array_text, numbered, raw_cursor
from matching import contracts
from matching.models import HELD_STATUSES


class ExecutionRow(NamedTuple):
    """One side of a fill, as the engine builds it and COPY writes it. Ids and the time are text
    (COPY's own format), which the engine makes for less than COPY takes to format the objects."""

    exec_id: str  # a UUID
    order_id: int
    account_id: int
    instrument_id: int
    trd_match_id: str  # a UUID
    side: str
    last_qty: int
    last_px: Decimal
    exec_type: str
    last_liquidity_ind: str
    commission: Decimal
    exec_comm: Decimal
    realized_pnl: Decimal
    leaves_qty: int
    cum_qty: int
    ord_status: str
    position_qty: int
    created_at: str  # ISO 8601


EXECUTION_COLUMNS = [("id", "bigint"), *zip(ExecutionRow._fields, (
    "uuid", "bigint", "bigint", "bigint", "uuid", "text", "bigint", "numeric", "text", "text", "numeric", "numeric",
    "numeric", "bigint", "bigint", "text", "bigint", "timestamptz"))]
ORDER_COLUMNS = [
    ("id", "bigint"), ("ord_status", "text"), ("leaves_qty", "bigint"), ("cum_qty", "bigint"),
    ("order_qty", "bigint"), ("cum_notional", "numeric"), ("avg_px", "numeric"), ("price", "numeric"),
    ("stop_px", "numeric"), ("protect_price", "numeric"), ("triggered", "text"), ("working_indicator", "boolean"),
    ("ord_rej_reason", "text"), ("text", "text"), ("margin_reserved", "numeric"), ("priority", "bigint"),
    ("unmargined_qty", "bigint"), ("peg_offset_value", "numeric"),
]  # and updated_at: the batch's time
LEDGER_COLUMNS = [("transaction_id", "bigint"), ("account_id", "bigint"), ("asset_id", "text"),
                  ("amount", "numeric"), ("kind", "text"), ("reference", "text")]


def _unnest(columns) -> str:
    """`unnest(%s::t1[], %s::t2[], ...)`: rows sent as one array literal per column."""
    return "unnest(" + ", ".join(f"%s::{sqltype}[]" for _, sqltype in columns) + ")"


def _arrays(columns, rows) -> tuple[str, list]:
    """_unnest(columns) and the rows' array literals."""
    unnest = _unnest(columns)
    values = zip(*rows) if rows else [() for _ in columns]
    return unnest, [array_text(column, sqltype) for column, (_, sqltype) in zip(values, columns)]


def next_ids(table: str, count: int) -> list[int]:
    """count new primary keys from the table's sequence, so rows can be copied in with their ids.

    The sequences of the tables written in bulk step by 1,000 (migration 0008): one nextval
    reserves that many keys for its caller alone (an ORM insert takes the first and leaves the
    rest), where a nextval per row cost 7 µs, 15 ms per engine batch."""
    return next_ids_of({table: count})[table]


def next_ids_of(counts: dict[str, int]) -> dict[str, list[int]]:
    """next_ids of several tables in one round trip, or none: table -> its keys.

    Keys a block reserved but its caller did not use are kept for this process's next call, so an
    engine batch of a hundred fills takes its keys without asking the database (a block of 1,000
    lasts some ten such batches). Forked children drop what their parent kept: keys are one
    process's alone."""
    global _spare_ids_pid
    with _spare_ids_lock:
        if _spare_ids_pid != os.getpid():
            _spare_ids.clear()
            _spare_ids_pid = os.getpid()
        wanted = {}
        for table, count in counts.items():
            missing = count - len(_spare_ids.get(table, ()))
            if missing > 0:
                wanted[table] = -(-missing // _id_step(table))
        if wanted:
            with raw_cursor() as cursor:
                cursor.execute(" UNION ALL ".join("SELECT %s, nextval(pg_get_serial_sequence(%s, 'id')) "
                                                  "FROM generate_series(1, %s)" for _ in wanted),
                               [value for table, nextvals in wanted.items() for value in (table, table, nextvals)])
                for table, start in sorted(cursor.fetchall()):
                    _spare_ids.setdefault(table, deque()).extend(range(start, start + _id_step(table)))
        return {table: [_spare_ids[table].popleft() for _ in range(count)] if count else []
                for table, count in counts.items()}


_spare_ids: dict[str, deque] = {}  # table -> keys reserved and not yet used, in order
_spare_ids_pid = os.getpid()
_spare_ids_lock = threading.Lock()


@lru_cache(maxsize=None)
def _id_step(table: str) -> int:
    with raw_cursor() as cursor:
        cursor.execute("SELECT increment_by FROM pg_sequences "
                       "WHERE schemaname || '.' || sequencename = pg_get_serial_sequence(%s, 'id')", [table])
        (step,) = cursor.fetchone()
        return step


def set_local_timeouts(milliseconds: int) -> None:
    """Inside a transaction: its statements and lock waits fail after this long."""
    with raw_cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true)",
                       [f"{milliseconds}ms", f"{milliseconds}ms"])


def copy_rows(table: str, columns, rows) -> None:
    """Inserts rows with COPY, the fastest way into PostgreSQL."""
    if not rows:
        return
    with raw_cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(n for n, _ in columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def update_statement(table: str, columns, arrays: list[str], **also) -> tuple[str, list]:
    """UPDATE table SET columns FROM rows given as one array literal per column, matched on the
    first column, and its parameters, for write_together; `also` sets further columns to one value
    for every row."""
    names = [n for n, _ in columns]
    assignments = ", ".join([f"{n} = v.{n}" for n in names[1:]] + [f"{n} = %s" for n in also])
    return (f"UPDATE {table} AS t SET {assignments} FROM {_unnest(columns)} AS v({', '.join(names)}) "
            f"WHERE t.{names[0]} = v.{names[0]}", [*also.values(), *arrays])


def write_together(statements: list[tuple[str, list]], then: tuple[str, list]) -> None:
    """Several writes to different tables as ONE statement, each a data-modifying WITH clause, and
    `then` (a SELECT) as its main query: one round trip to the server where each was one (an engine
    batch waited for sixteen). Each clause runs once and to completion, against the same snapshot;
    no two may change the same row."""
    clauses = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(statements))
    sql, params = then
    with raw_cursor(psycopg.RawCursor) as cursor:  # a long statement of many parameters: see numbered()
        cursor.execute(numbered(f"WITH {clauses} {sql}" if statements else sql),
                       [p for _, statement_params in statements for p in statement_params] + params)


# PostgreSQL notifies this channel as each batch commits, with the batch's time (its orders' updated_at)
COMMIT_CHANNEL = "engine_batch_committed"


class OpenOrderChanges(NamedTuple):
    """What a batch changes in PendingOrder and HeldOrder (matching.models)."""

    applied: list  # order pks that were PendingNew: their PendingOrder rows go
    held: list  # HELD_ORDER_COLUMNS of orders the engine holds from now on
    changed: list  # HELD_ORDER_CHANGES of orders it held before and still holds
    released: list  # order pks the engine held before this batch and holds no more


class BatchWrite(NamedTuple):
    """What one engine batch writes, taken from the engine's memory as plain values, with its keys
    taken and its bulk rows already formatted (prepare_write): writing it needs nothing of the
    engine or its books, and the writer thread has only the positions' margins and small arrays
    left to make."""

    now: datetime  # when the batch was taken: its orders' updated_at and its ledger transaction's time
    orders: list  # one array literal per ORDER_COLUMNS column
    execution_ids: list  # the executions' primary keys, in the engine's order
    executions: str | list  # new_rows of EXECUTION_COLUMNS
    positions: list  # (account, instrument, qty, entry value, realized PnL, cumulative realized PnL, opened at)
    balances: dict  # (account, asset) -> [amount, order margin, position margin] deltas
    ledger_transaction_id: int | None  # None when the batch moved no money
    ledger: str | list  # new_rows of LEDGER_COLUMNS
    commands: list  # (pk, status, reason)
    prices: list  # (instrument, last price, mark price, bid, ask)
    terms: dict  # instrument -> (ContractTerms, settlement asset, default leverage), for position margin
    open_orders: OpenOrderChanges


def copy_lines(rows, width: int) -> str:
    """Rows in COPY's text format, for rows the engine makes itself: numbers, its own words, ids and
    ISO times, never None and never a tab, newline or backslash. One %-format a row takes about half
    the time of psycopg's dumping value by value (20,000 executions: 58 ms, 22-40 ms)."""
    line = "\t".join(["%s"] * width) + "\n"
    return "".join([line % row for row in rows])


# rows up to which a batch's new rows go inside its one update statement rather than by COPY
INLINE_ROWS = 500


def new_rows(columns, rows: list) -> str | list[str]:
    """A batch's new rows as COPY text, or, up to INLINE_ROWS of them, one array literal per column
    for an INSERT inside write_together: a COPY is two round trips of its own, and from arrays
    PostgreSQL inserts as fast up to a few hundred rows (100: 2.05 against 1.94 ms; 1,000: 17.7
    against 12.4 ms). No rows: ""."""
    if not rows:
        return ""
    if len(rows) <= INLINE_ROWS:
        return _arrays(columns, rows)[1]
    return copy_lines(rows, len(columns))


def insert_statement(table: str, columns, arrays: list[str]) -> tuple[str, list]:
    """An INSERT of rows given as one array literal per column, for write_together."""
    return (f"INSERT INTO {table} ({', '.join(n for n, _ in columns)}) SELECT * FROM {_unnest(columns)}", arrays)


def prepare_write(*, orders: list, executions: list, positions: list, balances: dict, ledger: list,
                  system_ledger: dict, commands: list, prices: list, terms: dict,
                  open_orders: OpenOrderChanges = OpenOrderChanges([], [], [], [])) -> BatchWrite:
    """A batch's BatchWrite: keys taken from the sequences (outside any transaction is fine: an
    unused key is only a gap) and the orders, executions and ledger entries formatted.

    orders: ORDER_COLUMNS rows; executions: ExecutionRow; ledger: the traders'
    (account, asset, amount, kind, reference); system_ledger: (account, asset, kind) -> amount, the
    exchange accounts' other side of them, posted under the batch's own reference and added to
    those accounts' balance changes (`balances` holds the traders')."""
    now = timezone.now()
    # in key order: the update's join then walks the index in order
    order_arrays = _arrays(ORDER_COLUMNS, sorted(orders))[1] if orders else []
    ids = next_ids_of({"matching_execution": len(executions), "accounts_ledgertransaction": 1 if ledger else 0})
    execution_ids = ids["matching_execution"]
    execution_rows = new_rows(EXECUTION_COLUMNS, [(pk, *row) for pk, row in zip(execution_ids, executions)])
    if system_ledger:  # the exchange accounts' balances change by the sums of their ledger legs
        balances = {key: list(deltas) for key, deltas in balances.items()}
        for (account_id, asset, _), amount in system_ledger.items():
            balances.setdefault((account_id, asset), [Decimal(0), Decimal(0), Decimal(0)])[0] += amount
    transaction_id, ledger_rows = None, ""
    if ledger:
        (transaction_id,) = ids["accounts_ledgertransaction"]
        reference = f"batch:{transaction_id}"
        ledger_rows = new_rows(LEDGER_COLUMNS, [(transaction_id, *entry) for entry in ledger if entry[2]] +
                               [(transaction_id, account_id, asset, amount, kind, reference)
                                for (account_id, asset, kind), amount in system_ledger.items() if amount])
    return BatchWrite(now, order_arrays, execution_ids, execution_rows, positions, balances, transaction_id,
                      ledger_rows, commands, prices, terms, open_orders)


def copy_text(table: str, columns, text: str) -> None:
    """COPY of rows already in COPY's text format (copy_lines)."""
    if not text:
        return
    with raw_cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(n for n, _ in columns)}) FROM STDIN") as copy:
            copy.write(text)


def write_batch(batch: BatchWrite) -> list[int]:
    """Writes the batch (inside the caller's transaction); returns the executions' primary keys.

    Positions, then balance rows, are locked and read; every update then goes in one statement
    (write_together) with the new rows of a small batch, those of a large one by COPY: five round
    trips with BEGIN and COMMIT (up to nine with the COPYs)."""
    now = batch.now
    balances = {key: list(delta) for key, delta in batch.balances.items()}
    updates = [_position_update(batch, balances, now), _balance_update(balances)]
    if batch.ledger_transaction_id is not None:
        updates.append(("INSERT INTO accounts_ledgertransaction (id, created_at) VALUES (%s, %s)",
                        [batch.ledger_transaction_id, now]))
    if batch.orders:
        updates.append(update_statement("matching_order", ORDER_COLUMNS, batch.orders, updated_at=now))
    for table, columns, rows in (("matching_ordercommand", COMMAND_WRITE, batch.commands),
                                 ("matching_instrument", PRICE_WRITE, batch.prices)):
        if rows:
            updates.append(update_statement(table, columns, _arrays(columns, rows)[1]))
    updates += _open_order_changes(batch.open_orders)
    copies = []
    for table, columns, rows in (("accounts_ledgerentry", LEDGER_COLUMNS, batch.ledger),
                                 ("matching_execution", EXECUTION_COLUMNS, batch.executions)):
        if isinstance(rows, list):
            updates.append(insert_statement(table, columns, rows))
        else:
            copies.append((table, columns, rows))
    # the notification is delivered at commit: a listener learns when these rows became visible
    write_together([u for u in updates if u is not None], ("SELECT pg_notify(%s, %s)", [COMMIT_CHANNEL, now.isoformat()]))
    for table, columns, text in copies:
        copy_text(table, columns, text)
    return batch.execution_ids


def _open_order_changes(changes: OpenOrderChanges) -> list[tuple[str, list]]:
    """The PendingOrder and HeldOrder rows a batch removes, adds and changes, for write_together (an
    order both held and released within the batch is in no list, so no row is touched twice)."""
    statements = []
    if changes.applied:
        statements.append(("DELETE FROM matching_pendingorder WHERE order_id = ANY(%s::bigint[])",
                           [array_text(changes.applied)]))
    if changes.released:
        statements.append(("DELETE FROM matching_heldorder WHERE order_id = ANY(%s::bigint[])",
                           [array_text(changes.released)]))
    if changes.held:
        statements.append(insert_statement("matching_heldorder", HELD_ORDER_COLUMNS,
                                           _arrays(HELD_ORDER_COLUMNS, changes.held)[1]))
    if changes.changed:
        statements.append(update_statement("matching_heldorder", HELD_ORDER_CHANGES,
                                           _arrays(HELD_ORDER_CHANGES, changes.changed)[1]))
    return statements


HELD_ORDER_COLUMNS = [("order_id", "bigint"), ("account_id", "bigint"), ("instrument_id", "bigint"), ("side", "text"),
                      ("price", "numeric"), ("leaves_qty", "bigint"), ("ord_status", "text")]
HELD_ORDER_CHANGES = [("order_id", "bigint"), ("price", "numeric"), ("leaves_qty", "bigint"), ("ord_status", "text")]
COMMAND_WRITE = [("id", "bigint"), ("status", "text"), ("reason", "text")]
PRICE_WRITE = [("id", "bigint"), ("last_price", "numeric"), ("mark_price", "numeric"), ("bid_price", "numeric"),
               ("ask_price", "numeric")]


POSITION_KEY = [("account_id", "bigint"), ("instrument_id", "bigint")]
BALANCE_KEY = [("account_id", "bigint"), ("asset_id", "text")]
POSITION_WRITE = [("id", "bigint"), ("current_qty", "bigint"), ("entry_value", "numeric"), ("realized_pnl", "numeric"),
                  ("cum_realized_pnl", "numeric"), ("opened_at", "timestamptz"), ("margin", "numeric")]


def _upsert_flat_positions(rows: list[tuple[int, int, Decimal]], new_leverage_where: str) -> list[tuple]:
    """(account, instrument, leverage), in key order: creates the missing positions flat at that
    leverage, and gives it to existing ones where `new_leverage_where` holds. Every row is locked,
    updated or not, in the order given. Returns the rows created or changed, as given."""
    unnest, params = _arrays([*POSITION_KEY, ("leverage", "numeric")], rows)
    with raw_cursor() as cursor:
        cursor.execute(f"""
            INSERT INTO matching_position AS p (account_id, instrument_id, leverage, current_qty, entry_value,
                realized_pnl, cum_realized_pnl, cross_margin, margin, updated_at)
            SELECT v.*, 0, 0, 0, 0, TRUE, 0, now() FROM {unnest} AS v
            ON CONFLICT (account_id, instrument_id) DO UPDATE SET leverage = EXCLUDED.leverage
            WHERE {new_leverage_where} RETURNING p.account_id, p.instrument_id, p.leverage""", params)
        return cursor.fetchall()


def _position_update(batch: BatchWrite, balances: dict, now) -> tuple[str, list] | None:
    """One write per position: its row is locked (created flat if new) and read, its margin follows
    from the leverage it has now (the owner may just have changed it); the UPDATE that writes
    quantity, entry value, PnL and margin together is returned for write_together, and the margin
    change is added to `balances`."""
    if not batch.positions:
        return None
    positions = sorted(batch.positions, key=lambda row: (row[0], row[1]))
    current = _lock_positions([row[:2] for row in positions], batch.terms)
    rows = []
    for account_id, instrument_pk, qty, entry_value, realized_pnl, cum_realized_pnl, opened_at in positions:
        pk, leverage, margin = current[(account_id, instrument_pk)]
        terms, asset, _ = batch.terms[instrument_pk]
        new_margin = Decimal(0)
        if qty:
            entry = contracts.avg_entry_price(qty, entry_value, terms)
            new_margin = contracts.initial_margin(qty, entry, leverage, terms)
        if new_margin != margin:
            delta = balances.setdefault((account_id, asset), [Decimal(0), Decimal(0), Decimal(0)])
            delta[2] += new_margin - margin
        rows.append((pk, qty, entry_value, realized_pnl, cum_realized_pnl, opened_at, new_margin))
    return update_statement("matching_position", POSITION_WRITE, _arrays(POSITION_WRITE, rows)[1], updated_at=now)


def _lock_positions(keys: list[tuple[int, int]], terms: dict) -> dict[tuple[int, int], tuple]:
    """Locks and reads the positions of sorted (account, instrument) keys in key order, creating
    missing ones flat at the instrument's default leverage. Rows nearly always exist: then one
    SELECT ... FOR NO KEY UPDATE does it. Otherwise an upsert locks every row in one pass in key
    order, one it does not update as well (`WHERE FALSE`); the copy fan-out sets followers'
    leverage the same way and in the same order, so neither waits for a row the other will only
    take later. -> key: (id, leverage, margin)"""
    key_unnest, key_params = _arrays(POSITION_KEY, keys)
    select = (f"SELECT p.account_id, p.instrument_id, p.id, p.leverage, p.margin FROM matching_position p "
              f"JOIN {key_unnest} AS v(account_id, instrument_id) USING (account_id, instrument_id)")
    with raw_cursor() as cursor:
        cursor.execute(f"{select} ORDER BY p.account_id, p.instrument_id FOR NO KEY UPDATE OF p", key_params)
        rows = cursor.fetchall()
        if len(rows) < len(keys):
            _upsert_flat_positions([(account_id, instrument_pk, terms[instrument_pk][2])
                                    for account_id, instrument_pk in keys], new_leverage_where="FALSE")
            cursor.execute(select, key_params)
            rows = cursor.fetchall()
        return {(account_id, instrument_pk): rest for account_id, instrument_pk, *rest in rows}


def _balance_update(balances: dict) -> tuple[str, list] | None:
    """Locks the changed balance rows; returns the UPDATE that adds the changes, for write_together."""
    changes = sorted((key, d) for key, d in balances.items() if any(d))
    if not changes:
        return None
    locked = _lock_balances([key for key, _ in changes], expected=True)
    rows = [(locked[key][0], *delta) for key, delta in changes]
    unnest, params = _arrays([("id", "bigint"), ("amount", "numeric"), ("order_margin", "numeric"),
                              ("position_margin", "numeric")], rows)
    return (f"UPDATE accounts_balance AS b SET amount = b.amount + v.amount, "
            f"order_margin = b.order_margin + v.order_margin, position_margin = b.position_margin + v.position_margin "
            f"FROM {unnest} AS v(id, amount, order_margin, position_margin) WHERE b.id = v.id", params)


def _lock_balances(keys: list[tuple[int, str]], expected: bool = False) -> dict[tuple[int, str], tuple]:
    """Locks the balance rows of (account, asset) keys in primary-key order, creating the missing
    ones first; key -> (id, amount, order margin, position margin). Rows nearly always exist: a
    plain read finds the missing keys, so the common case pays no insert. Nothing is locked before
    the insert: it may wait for another transaction inserting the same key, which must not be
    waiting for a row this one holds. The engine's rows always exist (an order's submission made
    its account's): it says so (`expected`), and one locking read does; should one be missing after
    all, the rows found stay locked while it is inserted."""
    unnest, params = _arrays(BALANCE_KEY, keys)
    rows = f"FROM accounts_balance b JOIN {unnest} AS v(account_id, asset_id) USING (account_id, asset_id)"
    lock = f"SELECT account_id, asset_id, b.id, b.amount, b.order_margin, b.position_margin {rows} ORDER BY b.id FOR NO KEY UPDATE OF b"
    with raw_cursor() as cursor:
        if expected:
            cursor.execute(lock, params)
            locked = cursor.fetchall()
            if len(locked) == len(keys):
                return {(account_id, asset): tuple(rest) for account_id, asset, *rest in locked}
        cursor.execute(f"SELECT account_id, asset_id {rows}", params)
        missing = set(keys) - set(cursor.fetchall())
        if missing:
            insert, insert_params = _arrays(BALANCE_KEY, sorted(missing))
            cursor.execute(f"INSERT INTO accounts_balance (account_id, asset_id, amount, order_margin, position_margin) "
                           f"SELECT v.*, 0, 0, 0 FROM {insert} AS v ON CONFLICT (account_id, asset_id) DO NOTHING",
                           insert_params)
        cursor.execute(lock, params)
        return {(account_id, asset): tuple(rest) for account_id, asset, *rest in cursor.fetchall()}


NEW_ORDER_COLUMNS = [
    ("id", "bigint"), ("order_id", "uuid"), ("account_id", "bigint"), ("instrument_id", "bigint"),
    ("cl_ord_id", "text"), ("side", "text"), ("ord_type", "text"), ("time_in_force", "text"), ("exec_inst", "text"),
    ("price", "numeric"), ("stop_px", "numeric"), ("protect_price", "numeric"), ("order_qty", "bigint"),
    ("leaves_qty", "bigint"), ("margin_reserved", "numeric"), ("unmargined_qty", "bigint"), ("text", "text"),
    ("created_at", "timestamptz"), ("updated_at", "timestamptz"),
]  # the other columns take their database defaults (see the migration)


def store_new_orders(rows: list[tuple]) -> list[int]:
    """Inserts orders by COPY, rows of NEW_ORDER_COLUMNS but the key, which is taken from the
    sequence here; returns the keys, in the rows' order. A trigger lists the PendingNew ones."""
    ids = next_ids("matching_order", len(rows))
    copy_rows("matching_order", NEW_ORDER_COLUMNS, [(pk, *row) for pk, row in zip(ids, rows)])
    return ids


COMMAND_COLUMNS = [
    ("id", "bigint"), ("order_id", "bigint"), ("kind", "text"), ("new_order_qty", "bigint"),
    ("new_leaves_qty", "bigint"), ("new_price", "numeric"), ("new_stop_px", "numeric"), ("text", "text"),
    ("margin_delta", "numeric"), ("new_margin", "numeric"), ("status", "text"), ("reason", "text"),
    ("created_at", "timestamptz"),
]


def store_commands(rows: list[tuple]) -> list[int]:
    """Inserts pending cancels and amends by COPY, rows of COMMAND_COLUMNS from order_id to
    new_margin; returns their keys, in the rows' order. The ORM's bulk_create spent about 170 µs of
    Python on each (a cancel of all of a bot's orders, the engine benchmark's commands)."""
    if not rows:
        return []
    ids = next_ids("matching_ordercommand", len(rows))
    now = timezone.now()
    copy_rows("matching_ordercommand", COMMAND_COLUMNS, [(pk, *row, "pending", "", now) for pk, row in zip(ids, rows)])
    return ids


def lock_balance_rows(keys: list[tuple[int, str]]) -> dict[int, tuple[Decimal, Decimal, Decimal]]:
    """Creates missing balance rows and locks them in primary-key order; account -> (amount, order margin,
    position margin). All keys share one asset."""
    return {account_id: tuple(row[1:]) for (account_id, _), row in _lock_balances(keys).items()}


def forget_closed_orders(instrument_pks: list[int]) -> None:
    """Drops the PendingOrder and HeldOrder rows of these instruments' orders that are no longer
    pending or held: only the engine moves an order on, in the batch that changes it, but an order
    changed by hand (the admin, a repair) leaves its row behind. The queries that use the rows
    check the order's status anyway."""
    instruments = array_text(instrument_pks)
    with raw_cursor() as cursor:
        cursor.execute("DELETE FROM matching_heldorder h USING matching_order o WHERE o.id = h.order_id "
                       "AND h.instrument_id = ANY(%s::bigint[]) AND o.ord_status <> ALL(%s::text[])",
                       [instruments, array_text(HELD_STATUSES, "text")])
        cursor.execute("DELETE FROM matching_pendingorder p USING matching_order o WHERE o.id = p.order_id "
                       "AND o.instrument_id = ANY(%s::bigint[]) AND o.ord_status <> 'PendingNew'", [instruments])


def pending_orders(pks: list[int], instrument_pks: list[int], fields) -> list[tuple]:
    """The named fields of those orders still PendingNew on these instruments, read in binary
    (the ORM's row handling costs more than the query on a thousand rows). Status and instrument
    are filtered here, not in SQL, where the planner could prefer a partial index to the key."""
    if not pks:
        return []
    columns = ", ".join("id" if name == "pk" else name for name in fields)
    with raw_cursor() as cursor:
        cursor.execute(f"SELECT instrument_id, ord_status, {columns} FROM matching_order WHERE id = ANY(%s::bigint[])",
                       [array_text(pks)], binary=True, prepare=False)
        instruments = set(instrument_pks)
        return [row[2:] for row in cursor.fetchall() if row[1] == "PendingNew" and row[0] in instruments]


def stored_pending_orders(instrument_pks: list[int], older_than: datetime | None, limit: int) -> list[tuple]:
    """(pk, created_at) of the orders still PendingNew on these instruments, stored before
    `older_than` if given, the first stored first (keys come in blocks, one per process: a lower key
    may be a later order): walked from PendingOrder, each order read by its key.
    As a join, the planner scanned the whole order table for them (9.4 ms for 36,000 orders, once a
    second, and growing with the table)."""
    with raw_cursor() as cursor:
        cursor.execute(stored_pending_orders_sql(older_than is not None),
                       [array_text(instrument_pks), *([older_than] if older_than is not None else []), limit])
        return cursor.fetchall()


def stored_pending_orders_sql(older: bool) -> str:
    """stored_pending_orders' query; the LATERAL ... LIMIT 1 keeps each order's read a lookup by key."""
    return ("SELECT o.id, o.created_at FROM matching_pendingorder p CROSS JOIN LATERAL ("
            "SELECT id, created_at FROM matching_order WHERE id = p.order_id AND ord_status = 'PendingNew' "
            f"AND instrument_id = ANY(%s::bigint[]) {'AND created_at < %s' if older else ''} LIMIT 1) AS o "
            "ORDER BY o.created_at, o.id LIMIT %s")


def pending_commands(pks: list[int], instrument_pks: list[int]) -> list[tuple]:
    """(pk, kind, order, instrument, account, order status, new price, new stop price, new order qty,
    margin delta, new margin, new unmargined qty, new peg offset, text) of those commands still pending on these instruments."""
    if not pks:
        return []
    with raw_cursor() as cursor:
        cursor.execute("SELECT c.status, c.id, c.kind, c.order_id, o.instrument_id, o.account_id, o.ord_status, c.new_price, "
                       "c.new_stop_px, c.new_order_qty, c.margin_delta, c.new_margin, c.new_unmargined_qty, c.new_peg_offset_value, "
                       "c.text "
                       "FROM matching_ordercommand c JOIN matching_order o ON o.id = c.order_id "
                       "WHERE c.id = ANY(%s::bigint[])", [array_text(pks)], binary=True, prepare=False)
        instruments = set(instrument_pks)
        return [row[1:] for row in cursor.fetchall() if row[0] == "pending" and row[4] in instruments]


def existing_cl_ord_ids(keys: list[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """The orders already stored under these (account, clOrdID) keys: one probe of the unique
    (account, clOrdID) index per key, whatever the size of the table. As a plain join the planner
    read every order of each account (the index is partial, clOrdID <> '', which a join does not
    imply: 4.3 s for 10,000 keys over 200,000 orders) or, told so, hashed the whole table (0.22 s
    and growing with it); the LIMIT keeps each key's lookup a lookup."""
    unnest, params = _arrays([("account_id", "bigint"), ("cl_ord_id", "text")], keys)
    with raw_cursor() as cursor:
        cursor.execute(f"SELECT v.account_id, v.cl_ord_id, o.id FROM {unnest} AS v(account_id, cl_ord_id) "
                       f"CROSS JOIN LATERAL (SELECT id FROM matching_order WHERE account_id = v.account_id "
                       f"AND cl_ord_id = v.cl_ord_id AND cl_ord_id <> '' LIMIT 1) AS o", params)
        return {(a, c): pk for a, c, pk in cursor.fetchall()}


def add_order_margin(asset: str, amounts: dict[int, Decimal]) -> None:
    """Adds reserved order margin to balance rows the caller has locked."""
    rows = [(account_id, asset, amount) for account_id, amount in sorted(amounts.items()) if amount]
    if not rows:
        return
    unnest, params = _arrays([("account_id", "bigint"), ("asset_id", "text"), ("amount", "numeric")], rows)
    with raw_cursor() as cursor:
        cursor.execute(f"UPDATE accounts_balance AS b SET order_margin = b.order_margin + v.amount "
                       f"FROM {unnest} AS v(account_id, asset_id, amount) "
                       f"WHERE b.account_id = v.account_id AND b.asset_id = v.asset_id", params)


def insert_ignoring_duplicates(table: str, columns, rows) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: a repeated write of the same facts is a no-op."""
    if not rows:
        return
    unnest, params = _arrays(columns, rows)
    with raw_cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({', '.join(n for n, _ in columns)}) SELECT * FROM {unnest} "
                       f"ON CONFLICT DO NOTHING", params)


def set_flat_position_leverage(rows: list[tuple[int, int, Decimal]]) -> list[tuple[int, int, Decimal]]:
    """(account, instrument, leverage): sets the leverage of positions that are flat (creating them);
    returns the rows it set."""
    if not rows:
        return []
    return _upsert_flat_positions(rows, new_leverage_where="p.current_qty = 0 AND p.leverage <> EXCLUDED.leverage")
