"""Raw SQL on Django's own connection, for the few reads and writes that move thousands of rows."""
import psycopg
from django.db import connection


def raw_cursor() -> psycopg.Cursor:
    """A cursor of the connection Django's transaction runs on, sending parameters in binary:
    arrays of thousands of values cost far less to send that way than as quoted text."""
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def fetch_all(sql: str, params: list) -> list[tuple]:
    """Rows of a query whose parameters are written `%b` (binary), results read in binary too.

    The ORM spends several microseconds on each value of an `__in`/`__any` list and on each
    field of each row; a copy fan-out reads ten thousand accounts at once."""
    with raw_cursor() as cursor:
        cursor.execute(sql, params, binary=True)
        return cursor.fetchall()
