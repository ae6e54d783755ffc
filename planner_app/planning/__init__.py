"""Planning jobs (queued, run by Celery workers) and the plans they produce."""
