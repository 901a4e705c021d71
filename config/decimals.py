"""Decimals as people write them."""
from decimal import Decimal


def plain(number: Decimal) -> str:
    """Without trailing zeros or exponent: 100000.0000000000 -> 100000, 0.5000 -> 0.5, 1E+5 -> 100000."""
    return format(number.normalize(), "f")
