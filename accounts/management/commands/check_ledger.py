from django.core.management.base import BaseCommand, CommandError

from matching.selectors import book_problems


class Command(BaseCommand):
    help = "Verifies that the ledger balances, that balances equal their ledger and that margins add up."

    def handle(self, *args, **options):
        problems = book_problems()
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"{len(problems)} problem(s) in the books")
        self.stdout.write("the books balance")
