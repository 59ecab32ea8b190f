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
# measured here ~1.8x faster than multi_processing on the taxi data. multi_processing runs bundles in
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


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything `create_pipeline` needs. Local paths are made absolute on construction.

    What the data is (columns, label, task, model settings) is the dataset spec's (`spec_dir`,
    models/spec.py); unset names and the data root default to the spec's.
    """
    spec_dir: str = DEFAULT_SPEC_DIR
    # Default: <spec name>_<label name> and <label name>.
    pipeline_name: Optional[str] = None
    model_name: Optional[str] = None
    data_root: Optional[str] = None
    # Data root holds span-<N>/ directories (pipeline/spans.py): ExampleGen reads the newest span and
    # Transform and Trainer train on the newest `span_window` spans ingested so far.
    span_versioned: bool = False
    span_window: int = 1
    output_dir: str = "pipeline_output"
    serving_dir: str = "serving_model"
    # ExampleGen's hash split, in buckets: train 4 : eval 1.
    train_buckets: int = 4
    eval_buckets: int = 1
    # Training length follows the data (the spec's `training:`, models/trainer.py); `max_epochs` and
    # `batch_size` override the spec's, `train_steps` caps the steps (0: no cap), and `eval_steps`
    # batches of the eval split judge each epoch for early stopping.
    train_steps: int = 0
    eval_steps: int = 50
    max_epochs: Optional[int] = None
    batch_size: Optional[int] = None
    distribution_strategy: str = "default"
    # The Evaluator's gate on the task's metric (models/tasks.py: binary AUC, multiclass accuracy,
    # regression RMSE): a threshold (a floor, or a ceiling for RMSE) and the largest regression
    # against the baseline model. None: the spec's `gate:`.
    gate_threshold: Optional[float] = None
    gate_max_regression: Optional[float] = None
    # Let a run whose data drifted past the schema's thresholds go on (reported, not stopped); for a
    # drift an operator has reviewed. The next run compares with this run's data.
    accept_drift: bool = False
    # Serving check before push: eval examples sent through the serving runtime's REST API, the
    # largest allowed difference from in-process predictions, and the p50 latency limit.
    serving_check_examples: int = 100
    serving_check_tolerance: float = 1e-5
    serving_check_max_p50_ms: float = 500.0
    enable_cache: bool = True
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
