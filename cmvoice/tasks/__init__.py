"""Celery tasks: dispatch, results, campaigns, maintenance (the reconciler)."""
