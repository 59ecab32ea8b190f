"""Renders a run's report (pipeline/report/templates/report.html.j2) and writes it beside the run
records."""
import json
import os
from typing import Optional

import jinja2

from pipeline.report import contents
from pipeline.run_summary import RUNS_DIR, RunSummary, open_store

REPORTS_DIR = "reports"

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("pipeline.report", "templates"),
    autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def file_name(run_id: str) -> str:
    """A run id as a file name (run ids hold ':', which some file systems refuse)."""
    return run_id.replace(":", "-")


def report_path(output_dir: str, run_id: str) -> str:
    return os.path.join(output_dir, REPORTS_DIR, file_name(run_id) + ".html")


def read_record(output_dir: str, run_id: str) -> dict:
    """The run's JSON record (pipeline/local_runner.py writes it); {} if there is none."""
    path = os.path.join(output_dir, RUNS_DIR, file_name(run_id) + ".json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def render(page: dict) -> str:
    defaults = {"data": None, "training": None, "evaluation": None, "lineage": None,
                "missing": [], "unreadable": {}}
    return _TEMPLATES.get_template("report.html.j2").render(**{**defaults, **page})


def write(config, summary: Optional[RunSummary], record: dict) -> str:
    """Writes `<output_dir>/reports/<run id>.html` for the run `record` describes; returns its path.

    `summary` is None for a run that never started (only its record exists).
    """
    store = open_store(config.metadata_path) if summary is not None else None
    page = contents.gather(store, summary, record, config.spec, config.gate,
                           os.path.join(config.output_dir, RUNS_DIR))
    path = report_path(config.output_dir, record["run_id"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(page))
    return path
