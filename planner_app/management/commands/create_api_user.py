"""Create (or update) a user and print its API token."""

from django.core.management.base import BaseCommand, CommandError

from planner_app.core import services


class Command(BaseCommand):
    help = "Create a user (or set its password) and print its API token for Authorization: Token <token>."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--password", help="set this password (default: none, token access only)")
        parser.add_argument("--superuser", action="store_true", help="also give access to /admin/")

    def handle(self, *args, username, password=None, superuser=False, **options):
        if not username.strip() or len(username) > 150:
            raise CommandError("username must be 1 to 150 characters")
        _, token = services.user_ensure(username, password, superuser=superuser)
        self.stdout.write(token)
