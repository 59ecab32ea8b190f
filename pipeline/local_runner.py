"""Runs `create_pipeline(config)` with TFX's LocalDagRunner and reads back what happened."""
import dataclasses
from typing import Optional

from tfx import v1 as tfx

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
    error = None
    try:
        tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    except Exception as e:  # pylint: disable=broad-except  (reported with the run summary)
        error = e
    try:
        summary = summarize(config.metadata_path, config.pipeline_name)
    except (FileNotFoundError, LookupError):
        summary = None
    failed = next((c.name for c in summary.components if c.state in ("failed", "running")),
                  None) if summary else None
    return RunOutcome(summary=summary, error=error, failed_component=failed)
