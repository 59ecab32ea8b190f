"""Stops the run when the data drifted from the previous run's data beyond the schema's thresholds.

TFX 1.16's ExampleValidator takes no previous statistics, so the drift comparators in the schema
(`drift_comparator`: L-infinity distance for categorical columns, Jensen-Shannon divergence for numeric
ones) would never be checked. This component checks them with TFDV against the statistics of the
previous data the pipeline saw (resolved by components/previous_statistics.py).
"""
import logging
import os

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import ExampleStatistics, Schema
from tfx.utils import io_utils

from components.data_gate import DataValidationError, describe, schema_hint

SPLIT = "train"
DRIFT_TYPES = {anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
               anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH}


@component
def DriftCheck(statistics: InputArtifact[ExampleStatistics], schema: InputArtifact[Schema],
               schema_file: Parameter[str], code_sha256: Parameter[str],
               previous_statistics: InputArtifact[ExampleStatistics] = None,
               accept_drift: Parameter[bool] = False) -> None:
    """Raises DataValidationError naming each drifted column; passes when there is no previous data.

    With `accept_drift` (a drift an operator reviewed), the drift is logged and the run goes on.
    `schema_file` is named in the message: where the drift thresholds are reviewed and edited.
    """
    del code_sha256  # only keys TFX's cache on this code (components/fingerprints.py)
    if previous_statistics is None:
        return
    schema_proto = io_utils.SchemaReader().read(os.path.join(schema.uri, "schema.pbtxt"))
    anomalies = tfdv.validate_statistics(
        stats_artifact_utils.load_statistics(statistics, SPLIT).proto(), schema_proto,
        previous_statistics=stats_artifact_utils.load_statistics(previous_statistics, SPLIT).proto())
    problems = describe(anomalies, SPLIT, only_types=DRIFT_TYPES)
    if problems and accept_drift:
        logging.warning("Drift accepted (--accept-drift):\n  - %s", "\n  - ".join(problems))
    elif problems:
        raise DataValidationError(
            "The data drifted from the previous run's data:\n  - " + "\n  - ".join(problems)
            + "\n" + schema_hint(schema_file, "the drift thresholds in the curated schema"))
