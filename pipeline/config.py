"""The pipeline's one typed configuration object."""
import dataclasses
import os
from typing import Optional, Sequence, Tuple

from models.spec import DatasetSpec, SpecError
from models.spec import load as load_spec

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The dataset the project ships as its example: the Chicago taxi sample inside the tfx package.
DEFAULT_SPEC_DIR = os.path.join(PROJECT_ROOT, "schemas", "taxi")
PROJECT_SETUP_FILE = os.path.join(PROJECT_ROOT, "setup.py")  # absent when installed from a wheel
BEAM_WORKER_PLUGIN = "pipeline.beam_worker"
# Beam options that already tell workers where the code comes from.
_BEAM_DEPENDENCY_OPTIONS = ("--setup_file", "--extra_package", "--extra_packages", "--requirements_file",
                            "--sdk_container_image", "--worker_harness_container_image")
# Presets for Beam's local DirectRunner (`--beam-mode`). in_memory runs every bundle in this process:
# measured here ~1.8x faster than multi_processing on the example data. multi_processing runs bundles in
# worker processes, one per core (`--direct_num_workers=0`), for data that outgrows one core.
BEAM_MODES = {
    "in_memory": ("--direct_running_mode=in_memory", "--direct_num_workers=1"),
    "multi_processing": ("--direct_running_mode=multi_processing", "--direct_num_workers=0"),
}
DEFAULT_BEAM_ARGS = BEAM_MODES["in_memory"]


def beam_args_for(mode: Optional[str], extra: Sequence[str] = ()) -> Tuple[str, ...]:
    """The preset's options followed by `extra` (Beam takes the last value of a repeated option).

    Without a mode, `extra` alone if given (e.g. another runner's options), else the default preset.
    """
    if mode is None:
        return tuple(extra) or DEFAULT_BEAM_ARGS
    if mode not in BEAM_MODES:
        raise ValueError(f"Unknown Beam mode {mode!r}; choose one of {', '.join(BEAM_MODES)}.")
    return BEAM_MODES[mode] + tuple(extra)


def with_worker_setup(beam_args: Sequence[str]) -> Tuple[str, ...]:
    """Adds what Beam's workers need from this checkout: the project's package and its worker plugin.

    `--setup_file=<repo>/setup.py`, unless the options already say where workers get code: remote
    workers (Dataflow, Flink, Spark) then install this project, and with it TFX, from its setup.py.
    Without any such option TFX builds and stages a source package of all of TFX itself for every
    Beam component, even on the local DirectRunner, which ignores it: ~4 s each, measured here.
    `--beam_plugins=pipeline.beam_worker` prepares each worker process (see that module).
    For runs started from this checkout (the CLI); a compiled (Kubeflow) pipeline must not carry this
    machine's path.
    """
    args = tuple(beam_args) + (f"--beam_plugins={BEAM_WORKER_PLUGIN}",)
    has_dependency = any(arg.split("=", 1)[0] in _BEAM_DEPENDENCY_OPTIONS for arg in beam_args)
    if has_dependency or not os.path.isfile(PROJECT_SETUP_FILE):
        return args
    return args + (f"--setup_file={PROJECT_SETUP_FILE}",)
# tf.distribute strategies run_fn knows (models/trainer.py); "default" is one device, no strategy.
DISTRIBUTION_STRATEGIES = ("default", "mirrored", "multi_worker_mirrored")


def absolute(path: str) -> str:
    """Local paths made absolute; URIs (gs://, s3://, hdfs://) left as they are."""
    return path if "://" in path else os.path.abspath(path)


def default_data_root(spec_dir: str = DEFAULT_SPEC_DIR) -> str:
    """The data root the dataset spec names (`data_root:`); SpecError if it names none."""
    return _spec_data_root(load_spec(spec_dir))


def _spec_data_root(spec: DatasetSpec) -> str:
    root = spec.resolved_data_root()
    if root is None:
        raise SpecError(f"{spec.spec_path} has no data_root: pass --data-root, or add "
                        "`data_root: <directory of CSV files>` to the spec")
    return root


def setting(default, help: str, **cli):  # pylint: disable=redefined-builtin
    """A PipelineConfig field a user sets: its default, what it does, and how the CLI spells it
    (`flag`, `aliases`, `min`, `min_open`, `choices`, `path`, `show_default`). The CLI's options
    (pipeline/cli.py) and the Airflow variables (pipeline/airflow_config.py) are derived from these."""
    return dataclasses.field(default=default, metadata={"help": help, **cli})


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything `create_pipeline` needs. Local paths are made absolute on construction.

    What the data is (columns, label, task, model settings) is the dataset spec's (`spec_dir`,
    models/spec.py); unset names and the data root default to the spec's.
    """
    spec_dir: str = setting(
        DEFAULT_SPEC_DIR, "Dataset spec directory: dataset.yaml (columns, label, task, model, "
        "training) and schema.pbtxt.", flag="--spec", path=True,
        show_default=os.path.relpath(DEFAULT_SPEC_DIR, PROJECT_ROOT))
    pipeline_name: Optional[str] = setting(
        None, "The pipeline's name in the metadata store (and the Airflow DAG's id). Default: "
        "<spec name>_<label name>.")
    model_name: Optional[str] = setting(
        None, "The served model's name (its directory under the serving dir). Default: the spec's "
        "label name.")
    data_root: Optional[str] = setting(
        None, "Directory of CSV files (header row required), or of span-<N>/ directories. Default: "
        "the spec's data_root.", path=True)
    # Data root holds span-<N>/ directories (pipeline/spans.py): ExampleGen reads the newest span and
    # Transform and Trainer train on the newest `span_window` spans ingested so far. Detected, not set.
    span_versioned: bool = False
    span_window: int = setting(
        1, "With span-<N>/ directories in the data root: train on the newest this many spans (each "
        "run ingests the newest span; older ones come from earlier runs).", min=1)
    output_dir: str = setting("pipeline_output", "Pipeline root (artifacts) and the SQLite metadata "
                              "store.", path=True)
    serving_dir: str = setting("serving_model", "Blessed models are pushed to "
                               "<serving-dir>/<model-name>/<version>/.", path=True)
    train_buckets: int = setting(4, "ExampleGen's hash split: buckets of train (of train + eval).",
                                 min=1)
    eval_buckets: int = setting(1, "ExampleGen's hash split: buckets of eval (of train + eval).", min=1)
    # Training length follows the data (the spec's `training:`, models/trainer.py).
    train_steps: int = setting(0, "At most this many training steps; 0: as many as the epochs take.",
                               min=0)
    eval_steps: int = setting(50, "Batches of the eval split that judge each epoch (early stopping).",
                              min=1)
    max_epochs: Optional[int] = setting(
        None, "At most this many epochs (early stopping may end sooner). Default: the spec's "
        "training.max_epochs.", min=1, aliases=("--epochs",))
    batch_size: Optional[int] = setting(None, "Default: the spec's training.batch_size.", min=1)
    distribution_strategy: str = setting(
        "default", "tf.distribute strategy for training; multi_worker_mirrored reads TF_CONFIG.",
        choices=DISTRIBUTION_STRATEGIES)
    # The Evaluator's gate on the task's metric (models/tasks.py); None: the spec's `gate:`.
    gate_threshold: Optional[float] = setting(
        None, "The Evaluator blesses only models at least this good on the task's metric (binary: "
        "AUC; multiclass: accuracy; regression: at most this RMSE). Default: the spec's "
        "gate.threshold.", aliases=("--auc-floor",))
    gate_max_regression: Optional[float] = setting(
        None, "The largest loss on the task's metric against the model it replaces. Default: the "
        "spec's gate.max_regression.", min=0)
    accept_drift: bool = setting(
        False, "Go on although the data drifted from the previous run's beyond the schema's "
        "thresholds (after reviewing the drift); the drift is still reported. The next run "
        "compares with this run's data.")
    # The Evaluator's sample of a large eval split (components/capped_evaluator.py).
    max_eval_examples: int = setting(
        100_000, "The Evaluator scores at most this many eval examples: above it, the same sample of "
        "rows in every run (those of smallest hash); 0: every eval example.", min=0)
    # Rows per batch of StatisticsGen's, Transform's and the Evaluator's sources
    # (components/batch_size.py).
    beam_batch_size: int = setting(
        4096, "Rows StatisticsGen, Transform and the Evaluator read and process per batch; 0: "
        "tfx_bsl's adaptive batches of 1 to 1,000 rows.", min=0)
    # The serving check before push (components/serving_check.py).
    serving_check_examples: int = setting(
        100, "Eval examples the serving check sends through the serving runtime's REST API.", min=1)
    serving_check_tolerance: float = setting(
        1e-5, "Largest allowed difference between the served and the in-process predictions.",
        min=0)
    serving_check_max_p50_ms: float = setting(
        500.0, "The serving check blocks the push if one-example requests are slower (p50).",
        min=0, min_open=True)
    enable_cache: bool = setting(True, "Reuse a component's outputs when its inputs are unchanged.",
                                 flag="--cache/--no-cache")
    # Built by the CLI from --beam-mode and the Beam arguments.
    beam_args: Tuple[str, ...] = DEFAULT_BEAM_ARGS

    def __post_init__(self):
        object.__setattr__(self, "spec_dir", absolute(self.spec_dir))
        spec = load_spec(self.spec_dir)
        object.__setattr__(self, "_spec", spec)
        if self.data_root is None:
            object.__setattr__(self, "data_root", _spec_data_root(spec))
        object.__setattr__(self, "pipeline_name",
                           self.pipeline_name or f"{spec.name}_{spec.label.name}")
        object.__setattr__(self, "model_name", self.model_name or spec.label.name)
        for name in ("data_root", "output_dir", "serving_dir"):
            object.__setattr__(self, name, absolute(getattr(self, name)))
        if self.train_steps < 0:
            raise ValueError(f"train_steps must be at least 0 (0: no cap), got {self.train_steps}.")
        if self.eval_steps < 1:
            raise ValueError(f"eval_steps must be positive, got {self.eval_steps}.")
        try:
            _ = self.training  # validates the overrides
        except ValueError as e:
            raise ValueError(f"Training setting {e}.") from None
        if self.gate_threshold is not None:
            spec.task.gated_metric.check_threshold(self.gate_threshold)
        if self.gate_max_regression is not None and self.gate_max_regression < 0:
            raise ValueError(f"gate_max_regression must be at least 0, got {self.gate_max_regression}.")
        if self.max_eval_examples < 0:
            raise ValueError(f"max_eval_examples must be at least 0 (0: no cap), got "
                             f"{self.max_eval_examples}.")
        if self.beam_batch_size < 0:
            raise ValueError(f"beam_batch_size must be at least 0 (0: adaptive), got "
                             f"{self.beam_batch_size}.")
        if self.span_window < 1:
            raise ValueError(f"span_window must be at least 1, got {self.span_window}.")
        if self.distribution_strategy not in DISTRIBUTION_STRATEGIES:
            raise ValueError(f"distribution_strategy must be one of {', '.join(DISTRIBUTION_STRATEGIES)}, "
                             f"got {self.distribution_strategy!r}.")
        if (self.serving_check_examples < 1 or self.serving_check_tolerance < 0
                or self.serving_check_max_p50_ms <= 0):
            raise ValueError("serving_check_examples must be positive, serving_check_tolerance at "
                             "least 0 and serving_check_max_p50_ms above 0.")
        object.__setattr__(self, "beam_args", tuple(self.beam_args))

    @property
    def spec(self) -> DatasetSpec:
        """The dataset spec, loaded and validated once, on construction."""
        return self._spec  # pylint: disable=no-member

    @property
    def gate(self):
        """The spec's gate with this configuration's overrides."""
        gate = self.spec.gate
        return dataclasses.replace(
            gate, threshold=gate.threshold if self.gate_threshold is None else self.gate_threshold,
            max_regression=(gate.max_regression if self.gate_max_regression is None
                            else self.gate_max_regression))

    @property
    def training(self):
        """The spec's training settings with this configuration's overrides."""
        overrides = {name: getattr(self, name) for name in ("max_epochs", "batch_size")
                     if getattr(self, name) is not None}
        return dataclasses.replace(self.spec.training, **overrides)

    @property
    def run_spec(self) -> DatasetSpec:
        """The spec as this run trains it: the training overrides applied."""
        return dataclasses.replace(self.spec, training=self.training)

    @property
    def schema_path(self) -> str:
        return self.spec.schema_path

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def push_dir(self) -> str:
        """Where Pusher writes versions: `<serving_dir>/<model_name>/<version>/`, TF Serving's layout."""
        return os.path.join(self.serving_dir, self.model_name)

    def trainer_config(self) -> dict:
        """Settings passed to `models.trainer.run_fn` through the Trainer's custom_config."""
        return {"distribution_strategy": self.distribution_strategy}
