"""Query and command logic over a SQLAlchemy Session, returning plain data.

The JSON routers and the HTML pages both call these functions; neither holds business rules.
"""
