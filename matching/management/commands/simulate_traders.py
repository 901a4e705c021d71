from django.core.management.base import BaseCommand

from matching import simulation


class Command(BaseCommand):
    help = "Runs simulated traders for the demo: a market maker per symbol and takers that hit it."

    def add_arguments(self, parser):
        parser.add_argument("--takers", type=int, default=5)
        parser.add_argument("--leaders", type=int, default=3, help="simulated whales that others copy")
        parser.add_argument("--followers", type=int, default=12, help="simulated followers of the whales")
        parser.add_argument("--interval", type=float, default=0.5, help="seconds between rounds")
        parser.add_argument("--steps", type=int, default=None, help="stop after this many rounds")
        parser.add_argument("--seed", type=int, default=None)

    def handle(self, *args, takers, leaders, followers, interval, steps, seed, **options):
        simulation.run(takers=takers, leaders=leaders, followers=followers, interval=interval, steps=steps, seed=seed)
