import logging
import signal

from django.core.management.base import BaseCommand, CommandError

from matching.engine import DEFAULT_BATCH_SIZE, Engine, SymbolLocks, SymbolTaken, prepare_statements_on_the_server


class Command(BaseCommand):
    help = "Runs the matching engine for the given symbols (all instruments by default)."

    def add_arguments(self, parser):
        parser.add_argument("--symbols", nargs="*", help="symbols this engine owns; each symbol has one engine")
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)

    def handle(self, *args, symbols=None, batch_size=DEFAULT_BATCH_SIZE, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        logging.basicConfig(level=logging.INFO, format="%(asctime)s engine %(levelname)s %(message)s")
        stopping = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.append(True))
        prepare_statements_on_the_server()
        name = "engine:" + ",".join(sorted(symbols)) if symbols else "engine"
        engine = Engine(symbols=symbols, consumer=name, batch_size=batch_size, pipelined=True)
        try:
            locks = SymbolLocks(engine.instrument_rows)
        except SymbolTaken as error:
            raise CommandError(str(error)) from None
        try:
            engine.run(stop=lambda: bool(stopping) or not locks.held())
        finally:
            locks.close()
        if locks.lost:  # another engine may hold the symbols by now: a supervisor restarts this one
            raise CommandError("stopped: the connection holding the symbol locks was lost")
