"""Runs `create_pipeline(config)` with TFX's LocalDagRunner and reads back what happened."""
import dataclasses
import time
from typing import Optional

from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from components.data_gate import DataValidationError
from pipeline import beam_tuning
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline
from pipeline.run_summary import RunSummary, summarize


@dataclasses.dataclass
class RunOutcome:
    summary: Optional[RunSummary]
    error: Optional[BaseException] = None
    failed_component: Optional[str] = None

    @property
    def bad_data(self) -> bool:
        return isinstance(self.error, DataValidationError)


def run(config: PipelineConfig) -> RunOutcome:
    """Runs the pipeline; never raises for a failed component, returns the error instead."""
    beam_tuning.install()
    started_ms = int(time.time() * 1000)
    error = None
    try:
        LocalDagRunner().run(create_pipeline(config))
    except Exception as e:  # pylint: disable=broad-except  (reported with the run summary)
        error = e
    try:
        summary = summarize(config.metadata_path, config.pipeline_name)
    except (FileNotFoundError, LookupError):
        summary = None
    if summary is not None and summary.started_ms < started_ms:
        summary = None  # this invocation failed before recording a run; that one is an older run
    failed = next((c.name for c in summary.components if c.state in ("failed", "running")),
                  None) if summary else None
    return RunOutcome(summary=summary, error=error, failed_component=failed)
