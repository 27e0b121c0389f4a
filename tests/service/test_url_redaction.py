"""What the access log may show of a URL: no credential in a query string, no sign-in code."""

from __future__ import annotations

import pytest

from grader_api.url_credentials import redact_url


@pytest.mark.parametrize("line,shown", [
    ('127.0.0.1:5 - "GET /join/Zk3-abc_DEF HTTP/1.1" 200', '127.0.0.1:5 - "GET /join/[redacted] HTTP/1.1" 200'),
    ('"POST /join/Zk3-abc_DEF?next=/ HTTP/1.1" 303', '"POST /join/[redacted]?next=/ HTTP/1.1" 303'),
    ('"GET /api/v1/me?token=abc HTTP/1.1" 401', '"GET /api/v1/me?[redacted] HTTP/1.1" 401'),
    ('"GET /tasks/pets?course=ml2 HTTP/1.1" 200', '"GET /tasks/pets?course=ml2 HTTP/1.1" 200'),
    ('"GET /joined/abc HTTP/1.1" 404', '"GET /joined/abc HTTP/1.1" 404'),
])
def test_access_log_lines_lose_their_credentials(line, shown):
    assert redact_url(line) == shown
