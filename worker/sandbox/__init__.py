"""Run untrusted model files in a separate, confined process tree.

`process.SandboxProcess` starts one sandbox (bubblewrap where the kernel allows, a documented
fallback otherwise), `pool.SandboxPool` keeps a pre-started spare so the Python/torch import
is off the critical path, and `guest/` is the code that runs inside.
"""
