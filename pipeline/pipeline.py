"""`create_pipeline(config)`: the TFX DAG, one component after another in the order data flows."""
from tfx import v1 as tfx

from components.baseline_resolver import LatestBlessedBaselineStrategy
from components.data_gate import DataValidationGate
from pipeline.config import PipelineConfig
from pipeline.evaluation import eval_config

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"


def create_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
    """A pure function of the config: builds the pipeline, runs nothing."""
    example_gen = tfx.components.CsvExampleGen(
        input_base=config.data_root,
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name="train", hash_buckets=config.train_buckets),
            tfx.proto.SplitConfig.Split(name="eval", hash_buckets=config.eval_buckets),
        ])))

    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])

    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_path)

    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])

    data_gate = DataValidationGate(anomalies=example_validator.outputs["anomalies"])

    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        # StatisticsGen already profiles the raw data; pre/post-transform statistics would double
        # Transform's time on the taxi data.
        disable_statistics=True,
        force_tf_compat_v1=True)
    transform.add_upstream_node(data_gate)  # no training on data that broke the schema

    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
        custom_config=config.trainer_config())

    model_resolver = tfx.dsl.Resolver(
        strategy_class=LatestBlessedBaselineStrategy,
        candidate=trainer.outputs["model"],
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")

    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(config))

    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.push_dir)))

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, data_gate,
                    transform, trainer, model_resolver, evaluator, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path),
        beam_pipeline_args=list(config.beam_args))
