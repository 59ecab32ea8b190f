"""A TFX component that stops the run when ExampleValidator found anomalies, listing them readably.

ExampleValidator records anomalies but never fails; without this gate, Transform and Trainer would go on
and train on data that broke the schema.
"""
import os
from typing import List

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import ExampleAnomalies
from tfx.types import standard_artifact_utils
from tfx.utils import io_utils

# Columns the schema does not know are not read by the model; the input checks warn about them.
TOLERATED = {anomalies_pb2.AnomalyInfo.SCHEMA_NEW_COLUMN}



def schema_hint(schema_file: str, what: str = "the curated schema") -> str:
    return (f"Fix the data, or, if the change is intended, update {what} ({schema_file}; see the "
            "README's 'Your own data').")


class DataValidationError(RuntimeError):
    """The input data does not match the curated schema."""


def describe(anomalies: anomalies_pb2.Anomalies, split: str, only_types=None) -> List[str]:
    """One line per anomaly: split, column, what is wrong. `only_types` keeps just those reasons."""
    lines = []
    for column, info in sorted(anomalies.anomaly_info.items()):
        reasons = [r for r in info.reason if only_types is None or r.type in only_types]
        if not reasons or {r.type for r in reasons} <= TOLERATED:
            continue
        details = "; ".join(r.description for r in reasons) or info.description
        short = "; ".join(dict.fromkeys(r.short_description for r in reasons))
        lines.append(f"[{split}] column '{column}': {short}. {details}")
    if only_types is None and anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        lines.append(f"[{split}] whole dataset: {info.short_description}. {info.description}")
    return lines


def describe_anomalies(anomalies_artifact) -> List[str]:
    """Every anomaly ExampleValidator recorded, over all splits."""
    lines = []
    for split in standard_artifact_utils.decode_split_names(anomalies_artifact.split_names):
        split_uri = standard_artifact_utils.get_split_uri([anomalies_artifact], split)
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(io_utils.read_bytes_file(os.path.join(split_uri, "SchemaDiff.pb")))
        lines += describe(anomalies, split)
    return lines


@component
def DataValidationGate(anomalies: InputArtifact[ExampleAnomalies], schema_file: Parameter[str],
                       code_sha256: Parameter[str]) -> None:
    """Raises DataValidationError listing every anomaly; passes silently on clean data.

    `schema_file` is named in the message: the curated schema a reviewer would edit."""
    del code_sha256  # only keys TFX's cache on this code (components/fingerprints.py)
    problems = describe_anomalies(anomalies)
    if problems:
        raise DataValidationError(
            "The input data does not match the schema:\n  - " + "\n  - ".join(problems)
            + "\n" + schema_hint(schema_file))
