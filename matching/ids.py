"""Fast random identifiers."""
import random

_ids = random.Random()  # seeded once from the OS
_VERSION_4 = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))


def fast_uuid4_text() -> str:
    """A random (version 4) UUID as text. uuid.uuid4() reads the OS's random source for every id,
    which costs more than the rest of a fill, and COPY formats a UUID object for as long again;
    execution, match and order ids need to be unique, not secret."""
    h = "%032x" % ((_ids.getrandbits(128) & _CLEAR) | _VERSION_4)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
