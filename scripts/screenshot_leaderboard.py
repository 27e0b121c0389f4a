"""Screenshot of the leaderboard page for the README: `docs/img/leaderboard.png`.

Starts `grade serve --demo` on 127.0.0.1 (a free port, a temporary var dir), logs in as the
demo student `alice` with the token the demo prints, opens the CIFAR-10 leaderboard as she sees
it before the deadline (the public board: rank, name, score, entries; per-class columns are on the
private board only), and saves a screenshot. Needs the system Chromium (`apt-get install chromium`).

    python scripts/screenshot_leaderboard.py [--out docs/img/leaderboard.png] [--task cifar10]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_demo(var_dir: Path) -> tuple[subprocess.Popen, str, dict[str, str], Path]:
    import httpx

    port = _free_port()
    log = var_dir.parent / "server.log"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HELDOUT_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(HELDOUT_VAR_DIR=str(var_dir), HELDOUT_DATASETS_DIR=str(REPO / "datasets"), HELDOUT_LOG_LEVEL="WARNING")
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "grader_api.cli.main", "serve", "--demo", "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"grade serve --demo exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    tokens = dict(re.findall(r"^\s+(\w+)\s+\((?:instructor|student)\): (\S+)$", log.read_text(), flags=re.M))
    return proc, url, tokens, log


def _wait_graded(url: str, token: str, task: str, timeout: float = 60) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rows = httpx.get(f"{url}/api/v1/me/submissions", params={"task": task},
                         headers={"Authorization": f"Bearer {token}"}).json()["submissions"]
        if rows and all(r["status"] in ("scored", "failed") for r in rows):
            return
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "leaderboard.png")
    ap.add_argument("--task", default="cifar10")
    ap.add_argument("--width", type=int, default=1300)
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} not found: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        proc, url, tokens, _log = _start_demo(Path(tmp) / "var")
        try:
            _wait_graded(url, tokens["alice"], args.task)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": args.width, "height": 700}, device_scale_factor=1)
                page.goto(f"{url}/login")
                page.fill("#token", tokens["alice"])
                page.click("button[type=submit]")
                page.goto(f"{url}/tasks/{args.task}")
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
