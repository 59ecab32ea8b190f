"""`create_pipeline(config)`: the TFX DAG, one component after another in the order data flows.

Imports name TFX's modules directly rather than `tfx.v1`, whose `extensions` import pulls in the Google
Cloud AI Platform client: ~4 s of every run's start-up, a quarter of an unchanged (cached) re-run.
"""
import os

from tfx import components as tfx_components
from tfx.dsl.components.common import resolver
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import example_gen_pb2, pusher_pb2, trainer_pb2
from tfx.types import Channel, standard_artifacts

import models
from components.baseline_resolver import LatestBlessedBaselineStrategy
from components import fingerprints
from components.data_gate import DataValidationGate
from components.drift_check import DriftCheck
from components.previous_statistics import PreviousDataStatisticsStrategy
from components.schema_importer import ImportCuratedSchema
from pipeline.config import PipelineConfig
from pipeline.evaluation import eval_config

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"
MODELS_PACKAGE_DIR = os.path.dirname(models.__file__)


def create_pipeline(config: PipelineConfig) -> tfx_pipeline.Pipeline:
    """A pure function of the config (and the content of the schema and model code it names)."""
    # Edits to these must invalidate the cache; see components/fingerprints.py.
    code_version = {"models_sha256": fingerprints.package_sha256(MODELS_PACKAGE_DIR)}

    example_gen = tfx_components.CsvExampleGen(
        input_base=config.data_root,
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=config.train_buckets),
            example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=config.eval_buckets),
        ])))

    statistics_gen = tfx_components.StatisticsGen(examples=example_gen.outputs["examples"])

    schema_gen = ImportCuratedSchema(
        schema_file=config.schema_path,
        schema_sha256=fingerprints.file_sha256(config.schema_path))

    example_validator = tfx_components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])

    data_gate = DataValidationGate(anomalies=example_validator.outputs["anomalies"])

    previous_statistics = resolver.Resolver(
        strategy_class=PreviousDataStatisticsStrategy,
        examples=example_gen.outputs["examples"],
        statistics=Channel(type=standard_artifacts.ExampleStatistics),
    ).with_id("previous_data_statistics_resolver")

    drift_check = DriftCheck(statistics=statistics_gen.outputs["statistics"],
                             schema=schema_gen.outputs["schema"],
                             previous_statistics=previous_statistics.outputs["statistics"])

    transform = tfx_components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config=code_version,
        # StatisticsGen already profiles the raw data; pre/post-transform statistics would double
        # Transform's time on the taxi data.
        disable_statistics=True,
        force_tf_compat_v1=True)
    # No training on data that broke the schema or drifted too far.
    transform.add_upstream_node(data_gate)
    transform.add_upstream_node(drift_check)

    trainer = tfx_components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=trainer_pb2.TrainArgs(num_steps=config.train_steps),
        eval_args=trainer_pb2.EvalArgs(num_steps=config.eval_steps),
        custom_config={**config.trainer_config(), **code_version})

    model_resolver = resolver.Resolver(
        strategy_class=LatestBlessedBaselineStrategy,
        candidate=trainer.outputs["model"],
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")

    evaluator = tfx_components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(config))

    pusher = tfx_components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=config.push_dir)))

    return tfx_pipeline.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, data_gate,
                    previous_statistics, drift_check, transform, trainer, model_resolver, evaluator,
                    pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            config.metadata_path),
        beam_pipeline_args=list(config.beam_args))
