"""Real artifacts for the data-validation components' executors: the curated schema as
ImportCuratedSchema writes it, and TFDV statistics of taxi rows laid out as StatisticsGen writes them."""
import os

import tensorflow_data_validation as tfdv
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from components.fingerprints import code_sha256, file_sha256
from components.schema_importer import ImportCuratedSchema
from tests.conftest import TAXI_SPEC
from tests.conftest import write_csv


def run_component(component, inputs, outputs=None, **exec_properties):
    """Runs a project component's executor in this process, as TFX's launcher calls it, with the code
    fingerprint create_pipeline passes it."""
    exec_properties.setdefault("code_sha256", code_sha256(component.__module__))
    component.EXECUTOR_SPEC.executor_class().Do(inputs, outputs or {}, exec_properties)


def curated_schema(directory):
    schema = standard_artifacts.Schema()
    schema.uri = str(directory)
    run_component(ImportCuratedSchema, {}, {"schema": [schema]}, schema_file=TAXI_SPEC.schema_path,
                  schema_sha256=file_sha256(TAXI_SPEC.schema_path))
    return schema


def statistics(directory, fieldnames, rows_by_split):
    """An ExampleStatistics artifact: TFDV statistics of each split's rows, read from CSV."""
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(directory)
    artifact.split_names = artifact_utils.encode_split_names(list(rows_by_split))
    for split, rows in rows_by_split.items():
        csv_path = write_csv(os.path.join(str(directory) + "_csv", f"{split}.csv"), fieldnames, rows)
        io_utils.write_bytes_file(
            os.path.join(artifact_utils.get_split_uri([artifact], split),
                         stats_artifact_utils.BINARY_PB_BASENAME),
            tfdv.generate_statistics_from_csv(
                csv_path, output_path=csv_path + ".stats.tfrecord").SerializeToString())
    return artifact
