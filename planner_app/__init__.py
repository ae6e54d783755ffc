"""chainplan planning service: Django project and app in one package.

Importing the Celery app here makes ``shared_task`` bind to it whenever Django
starts (web, worker, beat, management commands).
"""

from .celery import app as celery_app

__all__ = ["celery_app"]
