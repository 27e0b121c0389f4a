"""The submission lifecycle: the one place that moves a submission between states.

Both the API and the worker import this package; it imports neither (no routers, web pages,
CLI or `worker`), which an import contract in CI checks.

    upload ──► queued ──claim──► running ──finish_scored──► scored
                 ▲                  │ └────finish_failed──► failed   (the student can act on it, or it
                 │                  │                               held a grader: COUNTED_FAILURE_CODES)
                 └──release_or_fail─┘  (unexpected error; out of attempts → failed, attempts_exhausted)
    sweeper: queued or running too long ──requeue_or_fail──► queued (or failed, attempts_exhausted)
    rescore: scored/failed ──► queued (grader_api.services.submissions)

Every transition is one conditional UPDATE in one transaction (the claim id fences a finish, so a
superseded run cannot overwrite a newer one), and every message to a worker goes through the
outbox (`outbox.OutboxRelay.enqueue`) in the same transaction as the state it announces.

Modules: `queues` (queue names, the Celery publisher), `outbox` (write, then send after commit),
`transitions` (claim, finish, release, the attempts-exhausted rule), `split_cache` (task specs
and held-out splits loaded once per process).
"""
