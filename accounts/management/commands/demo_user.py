from django.core.management.base import BaseCommand

from matching.simulation import demo_account


class Command(BaseCommand):
    help = "Creates (once) the demo user you log in as, with demo money."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo-password")

    def handle(self, *args, username, password, **options):
        demo_account(username, password)
        self.stdout.write(f"log in at http://127.0.0.1:8000/account/login/ as {username} / {password}")
