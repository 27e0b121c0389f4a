"""Pure scoring layer of heldout: task specs, held-out splits, prediction parsers, metrics.

Imports numpy (and torch only where a caller asks for it). Never FastAPI, SQLAlchemy or
Celery: the service and the offline `grade score` command both call this code.
"""
