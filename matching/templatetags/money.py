"""Template filters for prices and amounts."""
from decimal import Decimal

from django import template

from config.decimals import plain as plain_decimal

register = template.Library()


@register.filter
def plain(value):
    """A Decimal without trailing zeros or exponent: 100000.0000000000 -> 100000, 0.5000 -> 0.5."""
    if value is None or value == "":
        return ""
    if not isinstance(value, Decimal):
        return value
    return plain_decimal(value)
