"""Constants and record packing shared by the C book and the reference book (docs/ORDER_BOOK.md)."""
from array import array

BUY, SELL = 0, 1
GTC, IOC, FOK = 0, 1, 2
STP_NONE, STP_CANCEL_RESTING, STP_CANCEL_INCOMING, STP_CANCEL_BOTH = 0, 1, 2, 3
OP_LIMIT, OP_MARKET, OP_CANCEL, OP_AMEND = 1, 2, 3, 4
EV_FILL, EV_REST, EV_CANCEL, EV_REJECT, EV_AMEND = 1, 2, 3, 4, 5
CR_USER, CR_UNFILLED, CR_FOK, CR_POST_ONLY, CR_STP = 1, 2, 3, 4, 5
(ERR_BAD_ID, ERR_BAD_OWNER, ERR_BAD_SIDE, ERR_BAD_PRICE, ERR_BAD_QTY, ERR_BAD_FLAGS,
 ERR_DUPLICATE_ID, ERR_UNKNOWN_ID, ERR_OVERFLOW, ERR_BAD_OP) = range(1, 11)

FLAG_POST_ONLY = 4
STP_SHIFT = 3
COMMAND_FIELDS = 7  # op, order_id, owner, side, price, qty, flags
EVENT_FIELDS = 6  # type, order_id, other, price, qty, info
SNAPSHOT_FIELDS = 6  # order_id, owner, side, price, qty, flags

INT64_MAX = 2**63 - 1


def command_flags(tif: int = GTC, post_only: bool = False, stp: int = STP_NONE) -> int:
    return tif | (FLAG_POST_ONLY if post_only else 0) | (stp << STP_SHIFT)


def encode_commands(rows) -> array:
    """Packs 7-tuples (op, order_id, owner, side, price, qty, flags) for `apply`."""
    packed = array("q")
    for row in rows:
        if len(row) != COMMAND_FIELDS:
            raise ValueError(f"a command has {COMMAND_FIELDS} fields, got {len(row)}")
        packed.extend(row)
    return packed


def decode_events(data) -> list[tuple[int, ...]]:
    """Turns the bytes returned by `apply` into a list of 6-tuples."""
    values = memoryview(data).cast("B").cast("q").tolist()
    return [tuple(values[i:i + EVENT_FIELDS]) for i in range(0, len(values), EVENT_FIELDS)]
