"""`create_pipeline(config)`: the TFX DAG, one component after another in the order data flows.

Runners only choose where it runs: LocalDagRunner (pipeline/local_runner.py), Airflow
(pipeline/airflow_dag.py) and Kubeflow Pipelines v2 / Vertex (pipeline/kubeflow.py). Kubeflow needs a
few things said differently (`kubeflow=True`); the components and their wiring are the same.

Imports name TFX's modules directly rather than `tfx.v1`, whose `extensions` import pulls in the Google
Cloud AI Platform client: ~4 s of every run's start-up, a quarter of an unchanged (cached) re-run.
"""
import os

from tfx import components as tfx_components
from tfx.dsl.components.common import resolver
from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy)
from tfx.orchestration import data_types, metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import example_gen_pb2, pusher_pb2, trainer_pb2
from tfx.types import Channel, standard_artifacts

from components.analyzer_cache import CACHE_KEY, LatestOtherWindowCacheStrategy
from components.arrow_example_gen import ArrowCsvExampleGen
from components.atomic_pusher import AtomicPusher
from components.baseline_resolver import LatestBlessedBaselineStrategy
from components.batch_size import BATCH_SIZE_KEY, StatisticsGen, Transform
from components.capped_evaluator import CappedEvaluator
from components import fingerprints
from components.data_gate import DataValidationGate
from components.drift_check import DriftCheck
from components.edge_export import EdgeExport
from components.edge_formats import tools_sha256
from components.previous_statistics import PreviousDataStatisticsStrategy
from components.schema_importer import ImportCuratedSchema
from components.serving_check import ServingCheck
from components.span_window import INGESTED_KEY, SpanWindowStrategy
from components.trainer import Trainer
from pipeline import spans
from pipeline.config import PROJECT_ROOT, PipelineConfig
from pipeline.evaluation import eval_config
from models.kinds import Text
from models.spec import SPEC_KEY, TRANSFORM_KEYS

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"


def create_pipeline(config: PipelineConfig, kubeflow: bool = False) -> tfx_pipeline.Pipeline:
    """A pure function of the config (and the content of the schema and model code it names).

    kubeflow=True is the same DAG for Kubeflow Pipelines v2 / Vertex, which runs each component in
    the project's container image and owns the metadata store: the data root and the train steps
    become typed pipeline parameters (settable per run), the schema is named by its path inside the
    project (the image carries the project), and the two resolvers use the strategies the Kubeflow V2
    compiler can express as metadata queries.

    Those Kubeflow resolvers lose the exclusion of this run's own artifacts that the local strategies
    add for caching (components/previous_statistics.py, components/baseline_resolver.py). On Kubeflow
    the query tasks have no upstream tasks and run at the start of a run, before this run's
    StatisticsGen and Trainer produce anything new, so they still see the previous data's statistics
    and the last blessed model.
    """
    # Every component that runs the project's code gets `code_sha256`, a fingerprint of the project
    # files that code imports, so an edit re-runs the components that run the edited file, and only
    # those (components/fingerprints.py). The other TFX components run TFX's code alone (pinned by
    # requirements-3.X.lock; the Evaluator's config is a parameter already); resolvers are never cached.
    code = fingerprints.code_sha256
    # The dataset spec travels as data: what preprocessing_fn and run_fn build from, and their cache
    # key; Transform gets only the part it reads, so a gate or training edit does not re-run it.
    run_spec = config.run_spec
    transform_spec = {SPEC_KEY: run_spec.to_json(TRANSFORM_KEYS)}
    trainer_spec = {SPEC_KEY: run_spec.to_json()}
    # The spec names a text feature's TF Hub module by path; its content is part of the model.
    modules = {f.name: fingerprints.tree_sha256(f.module) if os.path.isdir(f.module) else f.module
               for f in run_spec.features_of_kind(Text)}
    if modules:
        trainer_spec["text_modules_sha256"] = modules
    data_root, train_steps, schema_file = config.data_root, config.train_steps, config.schema_path
    if kubeflow:
        data_root = data_types.RuntimeParameter(name="data_root", ptype=str, default=data_root)
        train_steps = data_types.RuntimeParameter(name="train_steps", ptype=int,
                                                  default=train_steps)
        schema_file = _path_in_project(schema_file)

    # CsvExampleGen's artifacts and split assignment, made a block of rows at a time
    # (components/arrow_example_gen.py); it keeps CsvExampleGen's node id, which run records name.
    example_gen = ArrowCsvExampleGen(
        input_base=data_root,
        # span-<N>/ directories: the newest span (pipeline/spans.py).
        input_config=spans.newest_span_input() if config.span_versioned else None,
        range_config=spans.newest_span_range() if config.span_versioned else None,
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=config.train_buckets),
            example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=config.eval_buckets),
        ])),
        code_sha256=code("components.arrow_example_gen")).with_id("CsvExampleGen")

    # TFX's StatisticsGen and Transform at `beam_batch_size` rows per batch (components/batch_size.py).
    statistics_gen = StatisticsGen(
        examples=example_gen.outputs["examples"], batch_size=config.beam_batch_size,
        code_sha256=code("components.batch_size")).with_id("StatisticsGen")

    schema_gen = ImportCuratedSchema(
        schema_file=schema_file,
        schema_sha256=fingerprints.file_sha256(config.schema_path),
        code_sha256=code("components.schema_importer"))

    example_validator = tfx_components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])

    data_gate = DataValidationGate(anomalies=example_validator.outputs["anomalies"],
                                   schema_file=schema_file,
                                   code_sha256=code("components.data_gate"))

    if kubeflow:
        previous_statistics = resolver.Resolver(
            strategy_class=LatestArtifactStrategy,
            statistics=Channel(type=standard_artifacts.ExampleStatistics))
    else:
        previous_statistics = resolver.Resolver(
            strategy_class=PreviousDataStatisticsStrategy,
            examples=example_gen.outputs["examples"],
            statistics=Channel(type=standard_artifacts.ExampleStatistics))
    previous_statistics = previous_statistics.with_id("previous_data_statistics_resolver")

    drift_check = DriftCheck(statistics=statistics_gen.outputs["statistics"],
                             schema=schema_gen.outputs["schema"],
                             previous_statistics=previous_statistics.outputs["statistics"],
                             accept_drift=config.accept_drift, schema_file=schema_file,
                             code_sha256=code("components.drift_check"))

    # Training data: this run's examples, or the last `span_window` spans ingested.
    training_examples, span_window = example_gen.outputs["examples"], None
    if config.span_window > 1 and kubeflow:
        raise ValueError("A span window of more than one span needs the local span-window resolver "
                         "(components/span_window.py), which Kubeflow's compiler cannot express. "
                         "Use span_window=1 (--span-window 1) on Kubeflow.")
    if config.span_window > 1:
        span_window = resolver.Resolver(
            strategy_class=SpanWindowStrategy, config={"num_spans": config.span_window},
            examples=example_gen.outputs["examples"],
            # Every Examples artifact (a producer filter would clash with `examples`' input key);
            # the strategy keeps ExampleGen's.
            ingested=Channel(type=standard_artifacts.Examples),
        ).with_id("span_window_resolver")
        training_examples = span_window.outputs[INGESTED_KEY]

    # Spans repeat from one window to the next: Transform reuses its analyzers' results on them
    # (components/analyzer_cache.py). --no-cache recomputes those too.
    analyzer_cache = None
    if config.span_window > 1 and config.enable_cache:
        analyzer_cache = resolver.Resolver(
            strategy_class=LatestOtherWindowCacheStrategy,
            examples=training_examples,
            analyzer_cache=Channel(type=standard_artifacts.TransformCache),
        ).with_id("analyzer_cache_resolver")

    transform = Transform(
        examples=training_examples, schema=schema_gen.outputs["schema"],
        analyzer_cache=analyzer_cache.outputs[CACHE_KEY] if analyzer_cache else None,
        preprocessing_fn=PREPROCESSING_FN,
        # Of ours, its executor (components/batch_size.py) and the preprocessing_fn's module run.
        custom_config={**transform_spec, BATCH_SIZE_KEY: config.beam_batch_size,
                       "code_sha256": code("components.batch_size", _module_of(PREPROCESSING_FN))},
        # StatisticsGen already profiles the raw data; pre/post-transform statistics would double
        # Transform's time on the example data (schemas/taxi).
        disable_statistics=True,
        # A one-span window never reads a cache (the next run's span is a new one), so it writes
        # none: writing it took ~2.8 s of a 15k-row Transform's ~16 s (bench/rerun_executor.py
        # --drop-output updated_analyzer_cache). Switching to a wider window starts without one.
        disable_analyzer_cache=config.span_window == 1,
        force_tf_compat_v1=True).with_id("Transform")
    # No training on data that broke the schema or drifted too far.
    transform.add_upstream_node(data_gate)
    transform.add_upstream_node(drift_check)

    trainer = Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=trainer_pb2.TrainArgs(num_steps=config.train_steps),
        eval_args=trainer_pb2.EvalArgs(num_steps=config.eval_steps),
        custom_config={**config.trainer_config(), **trainer_spec,
                       "code_sha256": code("components.trainer", _module_of(RUN_FN))},
        train_steps=train_steps)

    if kubeflow:
        model_resolver = resolver.Resolver(
            strategy_class=LatestBlessedModelStrategy,
            model=Channel(type=standard_artifacts.Model),
            model_blessing=Channel(type=standard_artifacts.ModelBlessing))
    else:
        model_resolver = resolver.Resolver(
            strategy_class=LatestBlessedBaselineStrategy,
            candidate=trainer.outputs["model"],
            model=Channel(type=standard_artifacts.Model),
            model_blessing=Channel(type=standard_artifacts.ModelBlessing))
    model_resolver = model_resolver.with_id("latest_blessed_model_resolver")

    # TFX's Evaluator, on a fixed sample of the eval split when it holds more than
    # `max_eval_examples` rows, decoding only the features it reads (components/capped_evaluator.py).
    evaluator = CappedEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(config),
        max_examples=config.max_eval_examples, batch_size=config.beam_batch_size,
        curated_schema=schema_gen.outputs["schema"],
        code_sha256=code("components.capped_evaluator")).with_id("Evaluator")

    # The candidate, served by the serving runtime, must answer as the model does in-process, and fast.
    serving_check = ServingCheck(
        model=trainer.outputs["model"],
        examples=example_gen.outputs["examples"],
        model_blessing=evaluator.outputs["blessing"],
        model_name=config.model_name,
        num_examples=config.serving_check_examples,
        tolerance=config.serving_check_tolerance,
        max_p50_latency_ms=config.serving_check_max_p50_ms,
        # It serves the candidate with `python -m pipeline serve`, i.e. pipeline/serving/server.py.
        code_sha256=code("components.serving_check", "pipeline.serving.server"))

    # The same model as TFLite and TF.js, which must answer as the SavedModel does; the exports
    # travel beside it in the push (components/edge_export.py).
    edge_export = EdgeExport(
        model=trainer.outputs["model"],
        examples=example_gen.outputs["examples"],
        infra_blessing=serving_check.outputs["blessing"],
        # A TF Hub text module's string ops may have no TFLite / TF.js kernel: such a model is still
        # pushed (TF Serving runs it), without the format that did not convert, and the record says why.
        unconvertible=(f"the model embeds text with a TF Hub module (features: {', '.join(modules)})"
                       if run_spec.features_of_kind(Text) else ""),
        # The converter script, the Node runner and their pinned packages are its code too.
        code_sha256=code("components.edge_export") + tools_sha256())

    # TFX's Pusher, but each version appears in one rename (components/atomic_pusher.py).
    pusher = AtomicPusher(
        model=edge_export.outputs["exported_model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=edge_export.outputs["parity_blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=config.push_dir)),
        # TFX's filesystem push reads no custom_config; here it only keys the cache.
        custom_config={"code_sha256": code("components.atomic_pusher")},
    ).with_id("Pusher")

    return tfx_pipeline.Pipeline(
        pipeline_name=config.pipeline_name,
        # Kubeflow keeps the metadata itself: the whole output directory is the pipeline root.
        pipeline_root=config.output_dir if kubeflow else config.pipeline_root,
        components=[c for c in (
            example_gen, statistics_gen, schema_gen, example_validator, data_gate,
            previous_statistics, drift_check, span_window, analyzer_cache, transform, trainer,
            model_resolver, evaluator, serving_check, edge_export, pusher) if c is not None],
        enable_cache=config.enable_cache,
        # On Kubeflow / Vertex the platform provides ML Metadata.
        metadata_connection_config=None if kubeflow else metadata.sqlite_metadata_connection_config(
            config.metadata_path),
        beam_pipeline_args=list(config.beam_args))


def _module_of(function_path: str) -> str:
    """`models.trainer` of `models.trainer.run_fn`."""
    return function_path.rpartition(".")[0]


def _path_in_project(path: str) -> str:
    """`path` relative to the project root, where the container image has the project too."""
    relative = os.path.relpath(path, PROJECT_ROOT)
    if relative.startswith(os.pardir):
        raise ValueError(f"The schema {path} is outside the project ({PROJECT_ROOT}); on Kubeflow "
                         "the components read it from the container image, which carries the "
                         "project only. Keep the dataset spec under schemas/<dataset>/.")
    return relative
