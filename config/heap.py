"""Garbage-collector settings for the processes that handle thousands of rows at a time.

The engine's batches and the copy fan-out each make tens of thousands of short-lived containers.
With the default thresholds the collector runs many times per batch, and its older generations
walk every object the process keeps (the books, Django's modules and models). Long-lived objects
are frozen out of its sight and it runs less often."""
import gc


def freeze_long_lived() -> None:
    """Collects once, then hides every object alive now from future collections."""
    gc.set_threshold(50_000, 50, 100)
    gc.collect()
    gc.freeze()
