"""Query and command logic over a SQLAlchemy Session, returning typed results (the API's
schemas where a route answers with one, dataclasses elsewhere) and refusing with the domain
errors of `errors.py`, which know nothing of HTTP.

The JSON routers, the HTML pages and the admin CLI all call these functions; none of them
holds business rules.
"""
