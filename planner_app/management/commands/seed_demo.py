"""Create the demo user with demo clusters and print its token (used by scripts/serve.sh)."""

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from planner_app.catalog.models import Cluster
from planner_app.catalog.services import cluster_import
from planner_app.core.services import user_ensure
from planner_app.core.validation import parse_scenario_document

# the spec's two-server example (too small for the model: it shows a readable failure) and the
# paper's simulation cluster (J = 20, RIPE RTTs already drawn), which plans fine; both ship in
# the repository so the embedded default needs nothing outside it
EXAMPLES = [Path(settings.BASE_DIR) / "examples" / name for name in ("two-tier-europe.json", "paper-j20.json")]


def demo_scenarios() -> list[dict]:
    return [json.loads(path.read_text()) for path in EXAMPLES if path.is_file()]


class Command(BaseCommand):
    help = "Create the demo user (password 'demo') and, once, the demo clusters; print the API token."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo")

    def handle(self, *args, username, password, **options):
        user, token = user_ensure(username, password, superuser=True)
        for doc in demo_scenarios():
            if Cluster.objects.filter(owner=user, name=doc.get("name")).exists():
                continue
            try:
                parse_scenario_document(doc)
            except Exception as exc:  # noqa: BLE001 - a bad example must not stop the service
                raise CommandError(f"demo scenario {doc.get('name')!r} is invalid: {exc}") from None
            cluster_import(user, doc)
        self.stdout.write(token)
