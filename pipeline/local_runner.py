"""Runs `create_pipeline(config)` with TFX's LocalDagRunner, reads back what happened, records it."""
import dataclasses
import json
import logging
import os
import time
from typing import Optional

import ml_metadata as mlmd
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from components.data_gate import DataValidationError
from pipeline import beam_tuning, run_lock
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline
from pipeline.report import page as report_page
from pipeline.run_summary import RUNS_DIR, RunSummary, summarize


@dataclasses.dataclass
class RunOutcome:
    summary: Optional[RunSummary]
    error: Optional[BaseException] = None
    failed_component: Optional[str] = None
    report_path: Optional[str] = None  # the run's HTML report; None if it could not be written
    report_seconds: float = 0.0

    @property
    def bad_data(self) -> bool:
        return isinstance(self.error, DataValidationError)


def run(config: PipelineConfig) -> RunOutcome:
    """Runs the pipeline; never raises for a failed component, returns the error instead.

    Raises run_lock.RunLockedError if another run holds `config.output_dir`. Every run, failed or
    not, leaves a JSON record in `<output_dir>/runs/` and a report in `<output_dir>/reports/`.
    """
    with run_lock.exclusive_run(config.output_dir):
        outcome = _run_unlocked(config)
        record = write_record(config, outcome)
        started = time.time()
        try:
            outcome.report_path = report_page.write(config, outcome.summary, record)
        except Exception:  # pylint: disable=broad-except  (the run's outcome stands without its page)
            logging.exception("Could not write the run report")
        outcome.report_seconds = time.time() - started
        logging.info("Run report written in %.1f s: %s", outcome.report_seconds, outcome.report_path)
    return outcome


def _run_unlocked(config: PipelineConfig) -> RunOutcome:
    beam_tuning.install()
    started_ms = int(time.time() * 1000)
    error = None
    try:
        LocalDagRunner().run(create_pipeline(config))
    except Exception as e:  # pylint: disable=broad-except  (reported with the run summary)
        error = e
    summary = _read_summary(config, error)
    if summary is not None and summary.started_ms < started_ms:
        summary = None  # this invocation failed before recording a run; that one is an older run
    failed = next((c.name for c in summary.components if c.state in ("failed", "running")),
                  None) if summary else None
    return RunOutcome(summary=summary, error=error, failed_component=failed)


def _read_summary(config: PipelineConfig, error: Optional[BaseException]) -> Optional[RunSummary]:
    """The latest run in the store; None if there is none, or if the run failed on a store that
    cannot be read (corrupt, or from another ML Metadata version): its error says why."""
    try:
        return summarize(config.metadata_path, config.pipeline_name)
    except (FileNotFoundError, LookupError):
        return None
    except (RuntimeError, mlmd.errors.StatusError):  # ML Metadata could not open or query the store
        if error is None:
            raise
        return None


def write_record(config: PipelineConfig, outcome: RunOutcome, run_id: Optional[str] = None) -> dict:
    """Writes the run's JSON record to `<output_dir>/runs/`; returns the record. `run_id` names a
    run that recorded nothing (an orchestrator's id); default: `not-started-<time>`."""
    record = outcome.summary.to_record() if outcome.summary else {
        "run_id": run_id or f"not-started-{time.strftime('%Y-%m-%dT%H-%M-%S')}"}
    record.update({
        "config": dataclasses.asdict(config),
        "error": f"{type(outcome.error).__name__}: {outcome.error}" if outcome.error else None,
        "failed_component": outcome.failed_component,
    })
    os.makedirs(os.path.join(config.output_dir, RUNS_DIR), exist_ok=True)
    path = os.path.join(config.output_dir, RUNS_DIR,
                        report_page.file_name(record["run_id"]) + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, default=str)
    return record
