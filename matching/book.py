"""The order book: the C extension `matching._book`, imported here and nowhere else.

Semantics, events and errors: docs/ORDER_BOOK.md.
"""
from matching import _book
from matching._book import OrderBook
from matching.book_protocol import *  # noqa: F401,F403  (constants, encode_commands, decode_events)
from matching import book_protocol as _protocol

# the C module and the Python constants must agree; a mismatch is a build error, not a runtime surprise
for _name in dir(_book):
    if _name.isupper() and getattr(_protocol, _name) != getattr(_book, _name):
        raise ImportError(f"matching._book.{_name} differs from matching.book_protocol")

__all__ = ["OrderBook", *[n for n in dir(_protocol) if n.isupper()], "command_flags", "encode_commands", "decode_events"]
