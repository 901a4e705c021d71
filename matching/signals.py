"""Signals the engine sends: as it starts, and after a batch is committed (websocket tables, the
copy-trading fan-out)."""
from django.dispatch import Signal

# kwargs: batch (matching.engine.Batch, its executions saved with their ids), engine
batch_committed = Signal()

# kwargs: engine; sent once as the engine starts, before its first batch
engine_started = Signal()
