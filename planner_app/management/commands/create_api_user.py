"""Create (or update) a user and print its API token."""

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

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
        # A fresh clone has no tables yet: set the database up as scripts/serve.sh does on start,
        # rather than failing with "no such table: auth_user".
        try:
            executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
            if executor.migration_plan(executor.loader.graph.leaf_nodes()):
                self.stderr.write("setting up the database (migrate) first")
                call_command("migrate", interactive=False, verbosity=0)
        except DatabaseError as exc:
            raise CommandError(f"cannot reach the database: {exc}") from None
        _, token = services.user_ensure(username, password, superuser=superuser)
        self.stdout.write(token)
