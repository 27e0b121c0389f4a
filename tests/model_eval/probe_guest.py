"""Test-only guest entry: runs the Python code a test sends in its job ("probe") inside the sandbox.

The worker never runs this file: tests/model_eval/probe.py has the sandbox run it in place of
heldout_guest.main. It confines itself through heldout_guest.main.serve, the same sequence (rlimits,
seccomp filter, output redirection) the real guest runs before it reads an upload; only the work
done once confined differs. `OUT` is the guest's output directory.
"""

from heldout_guest.main import run_and_exit


def _probe(job: dict, torch) -> dict:
    exec(compile(job["probe"], "<probe>", "exec"), {"__name__": "__probe__", "OUT": job["out_dir"]})
    return {}


if __name__ == "__main__":
    run_and_exit(_probe)
