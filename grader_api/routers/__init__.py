"""JSON API routers, one per resource, all under /api/v1. Routers stay thin: they parse the
request, call `grader_api.services`, and shape the answer."""
