"""Run untrusted model files in a separate, confined process tree.

`process.SandboxProcess` starts one sandbox (bubblewrap, or the root-only fallback when it is
configured explicitly; otherwise model files are refused), `pool.SandboxPool` keeps a
pre-started spare so the Python/torch import is off the critical path, and `guest/` is the code
that runs inside.
"""
