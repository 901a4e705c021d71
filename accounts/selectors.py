"""Reads of accounts, balances and the ledger, and the ledger's consistency checks."""
from decimal import Decimal
from functools import lru_cache

from django.db import connection

from accounts.models import Asset, Balance


@lru_cache(maxsize=1)
def _asset_units() -> tuple[tuple[str, Decimal], ...]:
    return tuple((a.code, a.unit) for a in Asset.objects.all())


def asset_named(name) -> Asset | None:
    """The asset of a code (USDT) or BitMEX currency id (USDt); None for anything else, a value that
    is not a text or holds a NUL character (PostgreSQL refuses to compare those) included."""
    if not isinstance(name, str) or "\x00" in name:
        return None
    return Asset.objects.filter(code=name).first() or Asset.objects.filter(currency=name).first()


def asset_units() -> dict[str, Decimal]:
    units = dict(_asset_units())
    if not units:  # nothing cached while the table is still empty
        _asset_units.cache_clear()
    return units


def unrealized_pnl(account_id: int, asset_code: str) -> Decimal:
    """Unrealized PnL of the account's positions settled in asset, at the mark price."""
    from matching.selectors import account_unrealized_pnl  # positions live in matching

    return account_unrealized_pnl(account_id=account_id, asset_code=asset_code)


def available_balance(balance: Balance) -> Decimal:
    """What can be withdrawn or committed: unrealized losses count, unrealized profits do not."""
    pnl = unrealized_pnl(balance.account_id, balance.asset_id)
    return balance.amount - balance.order_margin - balance.position_margin + min(pnl, Decimal(0))


def _rows(sql: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def ledger_problems() -> list[str]:
    """Every way the ledger and the balances disagree; empty when the books balance."""
    problems = []
    for asset, total in _rows("""
            SELECT asset_id, SUM(amount) FROM accounts_ledgerentry GROUP BY asset_id HAVING SUM(amount) <> 0"""):
        problems.append(f"the {asset} ledger sums to {total}, not 0")
    for tx, asset, total in _rows("""
            SELECT transaction_id, asset_id, SUM(amount) FROM accounts_ledgerentry
            GROUP BY transaction_id, asset_id HAVING SUM(amount) <> 0 ORDER BY transaction_id LIMIT 100"""):
        problems.append(f"ledger transaction {tx} does not balance in {asset}: {total}")
    for account, asset, stored, ledger in _rows("""
            SELECT COALESCE(b.account_id, l.account_id), COALESCE(b.asset_id, l.asset_id),
                   COALESCE(b.amount, 0), COALESCE(l.total, 0)
            FROM accounts_balance b
            FULL OUTER JOIN (SELECT account_id, asset_id, SUM(amount) AS total FROM accounts_ledgerentry
                             GROUP BY account_id, asset_id) l
              ON l.account_id = b.account_id AND l.asset_id = b.asset_id
            WHERE COALESCE(b.amount, 0) <> COALESCE(l.total, 0)
            ORDER BY 1, 2 LIMIT 100"""):
        problems.append(f"account {account} holds {stored} {asset} but its ledger says {ledger}")
    for account, asset, amount in _rows("""
            SELECT b.account_id, b.asset_id, b.amount FROM accounts_balance b
            JOIN accounts_account a ON a.id = b.account_id
            WHERE a.kind <> 'system' AND b.amount < 0 ORDER BY 1, 2 LIMIT 100"""):
        problems.append(f"account {account} is negative: {amount} {asset}")
    problems += dangling_references("accounts_ledgerentry", "ledger entry", [
        ("transaction_id", "accounts_ledgertransaction", "id"), ("account_id", "accounts_account", "id"),
        ("asset_id", "accounts_asset", "code")])
    return problems


def dangling_references(table: str, label: str, references: list[tuple[str, str, str]]) -> list[str]:
    """Rows of `table` whose (column, referenced table, its key) names a row that does not exist:
    the hot tables carry no foreign-key constraints, so the audit checks what they would."""
    joins = "".join(f" LEFT JOIN {target} r{i} ON r{i}.{key} = t.{column}"
                    for i, (column, target, key) in enumerate(references))
    missing = [(f"t.{column} IS NOT NULL AND r{i}.{key} IS NULL", f"'{column.removesuffix('_id')} ' || t.{column}")
               for i, (column, target, key) in enumerate(references)]
    which = " ".join(f"WHEN {condition} THEN {name}" for condition, name in missing)
    where = " OR ".join(f"({condition})" for condition, _ in missing)
    return [f"{label} {pk} names a missing {what}" for pk, what in _rows(
        f"SELECT t.id, CASE {which} END FROM {table} t{joins} WHERE {where} ORDER BY 1 LIMIT 100")]
