"""Pure scoring layer of heldout: task specs, held-out splits, prediction parsers, metrics,
and the wording of time left before a deadline (the web pages and the CLI share it).

Imports numpy (and torch only where a caller asks for it). Never FastAPI, SQLAlchemy or
Celery: the service and the offline `grade score` command both call this code.
"""
