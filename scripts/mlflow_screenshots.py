#!/usr/bin/env python3
"""Screenshots of MLflow's web UI for the README: the runs list, a run's overview and its model-metric charts.

Starts `mlflow ui` on a SQLite store, finds the experiment and its newest finished run through the REST API,
opens the UI's pages in a headless Chromium (playwright) and writes PNGs; the server is stopped at the end,
also on error. Standard library plus playwright only (it does not import the project's package), so it runs
from any Python that has playwright, e.g. a separate venv using the system's Chromium:

    /work/shot-venv/bin/python scripts/mlflow_screenshots.py --store outputs/mlflow.db --out docs/images \
        --mlflow .venv/bin/mlflow

Writes runs-list.png, run-overview.png, run-metrics.png and, when the experiment has a sweep parent run,
runs-list-sweep.png (the parent expanded). What a first visit would show differently is set up in the
browser's localStorage, as a user's clicks would leave it (MLflow 3.17's UI): the "Model training" view
rather than the GenAI one (the UI ignores the experiment's mlflow.experimentKind tag), the MLflow Assistant
panel closed, and the runs table's chosen metric columns (none are shown by default).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, sync_playwright

PARENT_TAG = "mlflow.parentRunId"
ML_VIEW = "workflowType=machine_learning"  # the UI's "Model training" toggle, as a URL parameter
DEFAULT_COLUMNS = "test/execution_accuracy,test/valid_sql_rate,val/loss,train/loss"
# Sections of the Model metrics tab that hold one value per run (drawn as a lone dot); collapsed for the shot.
DEFAULT_COLLAPSE = "category,count,infer,test,time"
# The runs table's default columns (ag-grid ids; "0" holds the checkboxes) and widths in px, narrowed from the
# defaults so that the metric columns fit beside them. The UI applies saved widths only with a saved order.
COLUMN_WIDTHS = {"0": None, "attributes.`Run Name`": 260, "runDateAndNestInfo": 130, "attributes.`Dataset`": 220,
                 "duration": 80, "attributes.`Source`": 90, "attributes.`Models`": 130}
METRIC_WIDTH = 170


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api(base: str, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call MLflow's REST API (GET without a body, POST with one) and return the decoded JSON."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{endpoint}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


@contextlib.contextmanager
def mlflow_server(mlflow: str, store: Path, port: int, timeout: float, log: Path) -> Iterator[str]:
    """Run `mlflow ui` on the store until the block ends; yields its base URL once it answers."""
    cmd = [mlflow, "ui", "--backend-store-uri", f"sqlite:///{store}", "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    base = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:  # own process group, so its workers stop with it
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow ui exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(urllib.error.URLError, OSError), \
                    urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow ui did not answer on {base} within {timeout:.0f}s (log: {log})")
            time.sleep(1)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def find_runs(base: str, experiment: str, run_id: str = "") -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """Experiment id, the run to show (run_id, or the newest finished one that is not a sweep parent) and the
    newest sweep parent (None without one)."""
    query = urllib.parse.urlencode({"experiment_name": experiment})
    try:
        exp_id = api(base, f"experiments/get-by-name?{query}")["experiment"]["experiment_id"]
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"no experiment {experiment!r} in the store (HTTP {err.code})") from err
    body = {"experiment_ids": [exp_id], "max_results": 1000, "order_by": ["attributes.start_time DESC"]}
    runs = api(base, "runs/search", body).get("runs", [])
    parents = {t["value"] for r in runs for t in r["data"].get("tags", []) if t["key"] == PARENT_TAG}
    finished = [r for r in runs if r["info"]["status"] == "FINISHED" and r["info"]["run_id"] not in parents]
    if run_id:
        finished = [r for r in runs if r["info"]["run_id"] == run_id]
        if not finished:
            raise RuntimeError(f"experiment {experiment!r} has no run {run_id}")
    if not finished:
        raise RuntimeError(f"experiment {experiment!r} has no finished run (other than sweep parents)")
    parent = next((r for r in runs if r["info"]["run_id"] in parents), None)
    return exp_id, finished[0], parent


def ui_state(exp_id: str, metrics: list[str], expanded: str | None) -> str:
    """JavaScript that presets the UI's localStorage before each page load (the keys are MLflow 3.17's)."""
    table = {"selectedColumns": ["attributes.`Source`", "attributes.`Models`", "attributes.`Dataset`",
                                 *(f"metrics.`{m}`" for m in metrics)],
             "columnOrder": [*COLUMN_WIDTHS, *(f"metrics.`{m}`" for m in metrics)],
             "columnWidths": {**{k: w for k, w in COLUMN_WIDTHS.items() if w},
                              **{f"metrics.`{m}`": METRIC_WIDTH for m in metrics}},
             "runsExpanded": {expanded: True} if expanded else {}}
    items = {"mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true", "mlflow.assistant.panelOpen_v1": "false",
             f'MLflowLocalStorage-1.1-ExperimentPage-["{exp_id}"]-ReactComponentState': json.dumps(table)}
    return "".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});\n" for k, v in items.items())


def open_page(page: Page, url: str, selector: str, timeout_ms: int, pause_s: float) -> None:
    """Open a UI route and wait for a selector, a quiet network (the UI polls, so not for long) and a pause."""
    page.goto(url)
    page.wait_for_selector(selector, state="visible", timeout=timeout_ms)
    with contextlib.suppress(Exception):
        page.wait_for_load_state("networkidle", timeout=5000)
    time.sleep(pause_s)


def save(page: Page, path: Path) -> None:
    """Save a viewport screenshot and say so."""
    page.screenshot(path=str(path))
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def shoot_runs_list(browser: Browser, base: str, exp_id: str, args: argparse.Namespace, parent: str | None) -> None:
    """The runs table (runs-list.png), and with the sweep parent expanded (runs-list-sweep.png) if there is one."""
    metrics = [m for m in args.columns.split(",") if m]
    cases = [("runs-list.png", None)] + ([("runs-list-sweep.png", parent)] if parent else [])
    for name, expanded in cases:
        context = browser.new_context(viewport={"width": args.list_width, "height": args.height})
        try:
            context.add_init_script(ui_state(exp_id, metrics, expanded))
            page = context.new_page()
            rows = 3 if expanded else 2  # header row and runs: with the parent expanded, a child too
            open_page(page, f"{base}/#/experiments/{exp_id}/runs?{ML_VIEW}", f'[role="row"] >> nth={rows - 1}',
                      args.timeout_ms, args.pause)
            save(page, args.out / name)
        finally:
            context.close()


def shoot_run(browser: Browser, base: str, exp_id: str, run_id: str, args: argparse.Namespace) -> None:
    """The run's Overview tab (run-overview.png) and its Model metrics tab (run-metrics.png)."""
    context = browser.new_context(viewport={"width": args.width, "height": args.height})
    try:
        context.add_init_script(ui_state(exp_id, [], None))
        page = context.new_page()
        run_url = f"{base}/#/experiments/{exp_id}/runs/{run_id}"
        open_page(page, f"{run_url}?{ML_VIEW}", "text=About this run", args.timeout_ms, args.pause)
        save(page, args.out / "run-overview.png")
        open_page(page, f"{run_url}/model-metrics?{ML_VIEW}", "svg.main-svg", args.timeout_ms, args.pause)
        for section in (s for s in args.collapse.split(",") if s):
            title = page.locator('[data-testid="experiment-view-compare-runs-section-header"]',
                                 has=page.get_by_text(section, exact=True))
            header = page.locator('[role="button"][aria-expanded="true"]', has=title)
            if header.count():
                header.first.click(position={"x": 12, "y": 12})  # the arrow, clear of the header's buttons
                time.sleep(0.5)
        if args.chart_search:
            page.get_by_placeholder("Search metric charts").fill(args.chart_search)
        page.mouse.move(args.width // 2, 20)  # no hover highlight in the shot
        time.sleep(args.pause)
        save(page, args.out / "run-metrics.png")
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    """Parse options, start the server, take the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--store", type=Path, default=Path("outputs/mlflow.db"), help="SQLite MLflow store")
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="directory for the PNGs")
    parser.add_argument("--experiment", default="text2sql-lora")
    parser.add_argument("--run", default="", help="run id for the run pages (default: the newest finished run)")
    parser.add_argument("--mlflow", default=shutil.which("mlflow") or "mlflow", help="mlflow executable")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable for playwright")
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    parser.add_argument("--width", type=int, default=1600, help="viewport width of the run pages")
    parser.add_argument("--list-width", type=int, default=1920, help="viewport width of the runs list")
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--columns", default=DEFAULT_COLUMNS, help="metric columns of the runs list, comma-separated")
    parser.add_argument("--collapse", default=DEFAULT_COLLAPSE,
                        help="metric chart sections to collapse in run-metrics.png, comma-separated")
    parser.add_argument("--chart-search", default="", help="text for run-metrics.png's chart search box (e.g. loss)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server / a page")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds to wait after a page has rendered")
    args = parser.parse_args(argv)

    store = args.store.expanduser().resolve()
    if not store.is_file():
        parser.error(f"no such store: {store}")
    args.out.mkdir(parents=True, exist_ok=True)
    args.timeout_ms = int(args.timeout * 1000)
    log = Path(tempfile.gettempdir()) / f"mlflow-ui-{os.getpid()}.log"

    with mlflow_server(args.mlflow, store, args.port or free_port(), args.timeout, log) as base:
        exp_id, run, parent = find_runs(base, args.experiment, args.run)
        run_id = run["info"]["run_id"]
        print(f"experiment {exp_id}, run {run_id} ({run['info'].get('run_name')})")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            try:
                shoot_runs_list(browser, base, exp_id, args, parent["info"]["run_id"] if parent else None)
                shoot_run(browser, base, exp_id, run_id, args)
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
