"""Fast random identifiers."""
import random
import uuid

_ids = random.Random()  # seeded once from the OS


def fast_uuid4() -> uuid.UUID:
    """A random (version 4) UUID. uuid.uuid4() reads the OS's random source for every id, which
    costs more than the rest of a fill; execution, match and copied-order ids need to be unique,
    not secret."""
    return uuid.UUID(int=_ids.getrandbits(128), version=4)
