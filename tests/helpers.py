"""Shortcuts the tests of several stages share (tests/ is on sys.path through conftest)."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.plan.gate import plan_run
from harness.plan.plan import Plan
from harness.plan.request import RunRequest
from harness.plugin.registry import Registry
from harness.results.schema import Manifest
from harness.drive.resume import plan_manifest, run_settings


def make_plan(registry: Registry, models: Sequence[str], samplers: Sequence[str],
              seeds: Sequence[int], task: str, recipe: Mapping[str, Any] | None = None, *,
              grid: Mapping[str, Sequence[Any]] | None = None,
              corpus: Path | None = None, output_dir: Path | None = None,
              device: str = "auto") -> Plan:
    """A plan through the gate, as ``harness run`` makes one."""
    request = RunRequest(models=tuple(models), samplers=tuple(samplers), seeds=tuple(seeds),
                         task=task, recipe=dict(recipe or {}), grid=dict(grid or {}),
                         corpus=corpus, quiet=True, device=device,
                         **({"output_dir": output_dir} if output_dir else {}))
    return plan_run(request, registry)


def manifest_for(plan: Plan, *, save_checkpoints: bool = False, **changes: Any) -> Manifest:
    """The manifest a run of ``plan`` starts with."""
    manifest = Manifest(run_id="", status="running", settings=run_settings(plan),
                        plan=plan_manifest(plan, save_checkpoints))
    return manifest.with_changes(**changes)


def blank_manifest(**changes: Any) -> Manifest:
    """A manifest with nothing but a status: for stores a test fills by hand."""
    from harness.results.schema import RunSettings

    manifest = Manifest(run_id="", status="complete", settings=RunSettings.from_json({}))
    return manifest.with_changes(**changes)


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """A loopback HTTP server over ``folder`` while the block runs, as its base URL (pooch
    reads http, not file:// URLs)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
