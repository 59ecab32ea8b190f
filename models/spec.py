"""The dataset spec: everything the pipeline knows about one table, loaded once into a frozen object.

A spec is a directory (`schemas/<dataset>/`) holding `dataset.yaml` (this module's format, reviewed by a
person) and `schema.pbtxt` (the curated TFDV schema). Code asks the spec (`spec.features`,
`spec.task.head(...)`, `spec.serving_columns`); nothing else names a column.

```yaml
name: taxi
data_root: package:tfx/examples/chicago_taxi_pipeline/data/simple   # or a path / URI
label:
  name: big_tipper                 # with `expression:`; or `column: <name>` for a label column
  task: binary                     # binary (see models/tasks.py)
  expression: tips > 0.2 * fare    # parsed to TF ops (models/expression.py), never eval'ed
  # positive: "yes"                # binary label column: the positive class
features:                          # name -> kind and its options (models/kinds.py)
  fare: {kind: numeric, scale: log}
  pickup: {kind: coordinates, latitude: pickup_latitude, longitude: pickup_longitude, share: place}
ignored:                           # columns in the data the model does not read, with the reason
  trip_start_timestamp: ...
slices: [payment_type]             # evaluation slices (TFMA), raw column names
model: {hidden_units: [64, 32], cross_layers: 2, shared_embedding_dim: 8}
training: {batch_size: 128, max_epochs: 20, patience: 3}   # epochs until the eval loss stops improving
```
Loading validates everything; a SpecError names the file, the key, the value and the fix.
"""
import dataclasses
import importlib.util
import json
import os
from typing import Any, Dict, Mapping, Optional, Tuple

import yaml

from models import expression as expression_lib
from models import kinds as kinds_lib
from models import tasks as tasks_lib
from models.names import safe_name

SPEC_FILE = "dataset.yaml"
SPEC_KEY = "dataset_spec"  # the Transform and Trainer custom_config key holding `to_json()`
SCHEMA_FILE = "schema.pbtxt"
PACKAGE_PREFIX = "package:"
_TOP_LEVEL_KEYS = ("name", "data_root", "label", "features", "ignored", "slices", "gate", "model",
                   "training")
# What preprocessing_fn reads: Transform's cache key, so editing the gate or the model settings does
# not re-run Transform.
TRANSFORM_KEYS = ("name", "label", "features")
_LABEL_KEYS = ("name", "column", "task", "expression", "positive", "negative", "classes")
_GATE_KEYS = ("threshold", "max_regression")


class SpecError(ValueError):
    """The dataset spec is invalid; the message names the file, the key, the value and the fix."""


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Architecture and optimizer settings of the Functional model (models/model.py)."""
    hidden_units: Tuple[int, ...] = (64, 32)
    cross_layers: int = 2
    shared_embedding_dim: int = 8
    learning_rate: float = 0.003

    def __post_init__(self):
        units = tuple(self.hidden_units)
        if not units or any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in units):
            raise ValueError(f"hidden_units: {list(units)!r} must be a list of positive integers")
        object.__setattr__(self, "hidden_units", units)
        for key in ("cross_layers", "shared_embedding_dim"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "cross_layers" else 1):
                raise ValueError(f"{key}: {value!r} must be an integer >= {0 if key == 'cross_layers' else 1}")
        if not isinstance(self.learning_rate, (int, float)) or not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate: {self.learning_rate!r} must be a number in (0, 1)")

    def to_mapping(self) -> Dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _check_positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key}: {value!r} must be a positive integer")


# Where the Trainer records how training went (models/trainer.py), in its model_run directory; the run
# summary reads it back (pipeline/run_summary.py) without importing the Trainer's code.
HISTORY_FILE = "training_history.json"


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """How long the Trainer trains (models/trainer.py): epochs over the training split until the loss on
    the eval split has not improved for `patience` epochs (the best epoch's weights are kept), at most
    `max_epochs`. Sized by the data, so a 200-row and a million-row table both train sensibly."""
    batch_size: int = 128
    max_epochs: int = 20
    patience: int = 3

    def __post_init__(self):
        for field in dataclasses.fields(self):
            _check_positive_int(field.name, getattr(self, field.name))


@dataclasses.dataclass(frozen=True)
class Gate:
    """The Evaluator's blessing gate on the task's gated metric (models/tasks.py), overall slice:
    at least `threshold` (at most, for a lower-is-better metric such as RMSE), and no worse than the
    baseline model by more than `max_regression`. No threshold: only the baseline comparison."""
    threshold: Optional[float] = None
    max_regression: float = 0.0

    def __post_init__(self):
        for key in _GATE_KEYS:
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{key}: {value!r} must be a number")
        if self.max_regression < 0:
            raise ValueError(f"max_regression: {self.max_regression!r} must be >= 0")


@dataclasses.dataclass(frozen=True)
class Label:
    """The label: a column of the data, or a named expression over columns."""
    name: str
    column: Optional[str] = None
    expression: Optional[expression_lib.Expression] = None

    @property
    def source_columns(self) -> Tuple[str, ...]:
        return (self.column,) if self.column else tuple(sorted(self.expression.columns))


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    directory: str
    label: Label
    task: tasks_lib.Task
    features: Tuple[kinds_lib.Kind, ...]
    data_root: Optional[str] = None
    ignored: Mapping[str, str] = dataclasses.field(default_factory=dict)
    slices: Tuple[str, ...] = ()
    gate: Gate = Gate()
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()

    @property
    def spec_path(self) -> str:
        return os.path.join(self.directory, SPEC_FILE)

    @property
    def schema_path(self) -> str:
        return os.path.join(self.directory, SCHEMA_FILE)

    @property
    def transformed_label(self) -> str:
        return kinds_lib.transformed_name(self.label.name)

    @property
    def serving_columns(self) -> Tuple[str, ...]:
        """Raw columns the served model reads, in declaration order."""
        return tuple(dict.fromkeys(c for f in self.features for c in f.columns))

    @property
    def label_source_columns(self) -> Tuple[str, ...]:
        """Columns read only to make the label (absent at serving time)."""
        return tuple(c for c in self.label.source_columns if c not in self.serving_columns)

    @property
    def required_columns(self) -> Tuple[str, ...]:
        """Columns a training CSV must have."""
        return self.serving_columns + self.label_source_columns

    @property
    def known_columns(self) -> Tuple[str, ...]:
        return self.required_columns + tuple(c for c in self.ignored if c not in self.required_columns)

    @property
    def numeric_columns(self) -> Tuple[str, ...]:
        """Columns whose cells must parse as numbers."""
        numeric = [c for f in self.features for c in f.numeric_columns]
        if self.label.expression is not None or isinstance(self.task, tasks_lib.Regression):
            numeric += list(self.label_source_columns)
        return tuple(dict.fromkeys(numeric))

    @property
    def model_inputs(self) -> Tuple[kinds_lib.ModelInput, ...]:
        return tuple(i for f in self.features for i in f.model_inputs())

    def features_of_kind(self, kind: type) -> Tuple[kinds_lib.Kind, ...]:
        return tuple(f for f in self.features if isinstance(f, kind))

    def resolved_data_root(self) -> Optional[str]:
        """`data_root` with `package:<pkg>/<path>` resolved inside the installed package, and a
        relative path resolved against the spec's directory."""
        if self.data_root is None:
            return None
        if self.data_root.startswith(PACKAGE_PREFIX):
            package, _, rest = self.data_root[len(PACKAGE_PREFIX):].partition("/")
            found = importlib.util.find_spec(package)
            if found is None or not found.submodule_search_locations:
                raise SpecError(f"{self.spec_path}: data_root: package {package!r} is not installed")
            return os.path.join(list(found.submodule_search_locations)[0], rest)
        if "://" in self.data_root or os.path.isabs(self.data_root):
            return self.data_root
        return os.path.normpath(os.path.join(self.directory, self.data_root))

    def to_mapping(self) -> Dict[str, Any]:
        """The spec as plain data (what dataset.yaml holds); `from_mapping` reads it back."""
        label: Dict[str, Any] = {"name": self.label.name, "task": self.task.task}
        if self.label.column:
            label["column"] = self.label.column
        if self.label.expression is not None:
            label["expression"] = self.label.expression.text
        for key in ("positive", "negative"):
            if getattr(self.task, key, None) is not None:
                label[key] = getattr(self.task, key)
        if getattr(self.task, "classes", None):
            label["classes"] = list(self.task.classes)
        values: Dict[str, Any] = {"name": self.name}
        if self.data_root is not None:
            values["data_root"] = self.data_root
        values.update({
            "label": label,
            "features": {f.name: f.to_spec() for f in self.features},
            "ignored": dict(self.ignored),
            "slices": list(self.slices),
            "gate": {k: v for k, v in dataclasses.asdict(self.gate).items() if v is not None},
            "model": self.model.to_mapping(),
            "training": dataclasses.asdict(self.training),
        })
        return values

    def to_json(self, keys: Optional[Tuple[str, ...]] = None) -> str:
        """Canonical JSON of the spec (only its `keys`, e.g. TRANSFORM_KEYS): what the Transform and
        Trainer components receive, so their cache keys follow the parts of the spec they read."""
        values = self.to_mapping()
        # Declaration order kept: the model is built in it.
        return json.dumps({k: v for k, v in values.items() if keys is None or k in keys})


def load(directory: str) -> DatasetSpec:
    """Reads `<directory>/dataset.yaml`; checks it against `<directory>/schema.pbtxt` if present."""
    directory = os.path.abspath(directory)
    path = os.path.join(directory, SPEC_FILE)
    if not os.path.isfile(path):
        hint = (" It holds a file, not a spec directory: pass its directory." if os.path.isfile(directory)
                else " Write one with `python -m pipeline init --data-root DIR --label COLUMN --spec "
                     f"{directory}`.")
        raise SpecError(f"No dataset spec at {path}.{hint}")
    with open(path, encoding="utf-8") as f:
        try:
            values = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise SpecError(f"{path} is not valid YAML: {e}") from e
    spec = from_mapping(values, directory)
    if os.path.isfile(spec.schema_path):
        check_against_schema(spec)
    return spec


def from_mapping(values: Any, directory: str) -> DatasetSpec:
    path = os.path.join(directory, SPEC_FILE)

    def fail(key: str, message: str):
        raise SpecError(f"{path}: {key}: {message}")

    if not isinstance(values, Mapping):
        raise SpecError(f"{path}: expected a mapping with keys {', '.join(_TOP_LEVEL_KEYS)}")
    unknown = sorted(set(values) - set(_TOP_LEVEL_KEYS))
    if unknown:
        fail(unknown[0], f"unknown key; allowed: {', '.join(_TOP_LEVEL_KEYS)}")
    for key in ("name", "label", "features"):
        if key not in values:
            fail(key, "missing; every spec declares name, label and features")
    name = values["name"]
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        fail("name", f"{name!r} must be letters, digits, _ or -")

    features = []
    raw_features = values["features"]
    if not isinstance(raw_features, Mapping) or not raw_features:
        fail("features", "must map each feature name to {kind: ...}")
    for feature_name, feature_values in raw_features.items():
        try:
            features.append(kinds_lib.from_spec(str(feature_name), feature_values).resolve(directory))
        except (TypeError, ValueError) as e:
            fail(f"features.{feature_name}", str(e))
    _check_shares(features, fail)
    seen: Dict[str, str] = {}
    for feature in features:  # TensorFlow names replace what they cannot hold by "_"
        other = seen.setdefault(safe_name(feature.name), feature.name)
        if other != feature.name:
            fail(f"features.{feature.name}", f"{feature.name!r} and {other!r} are the same name to "
                                             f"TensorFlow ({safe_name(other)!r}); rename "
                                             "one of the two features")

    label, task = _label(values["label"], fail)
    columns = {c for f in features for c in f.columns}
    if label.column and label.column in columns:
        fail("label.column", f"{label.column!r} is also a feature; a label cannot be a model input. "
                             f"Remove it from features.")
    if label.name in {f.name for f in features}:
        fail("label.name", f"{label.name!r} is also a feature name; rename one")

    ignored = values.get("ignored") or {}
    if not isinstance(ignored, Mapping):
        fail("ignored", "must map column names to the reason they are not used")
    clash = sorted(set(ignored) & (columns | set(label.source_columns)))
    if clash:
        fail(f"ignored.{clash[0]}", "is used by a feature or the label; remove it from ignored")

    slices = values.get("slices") or []
    if not isinstance(slices, list):
        fail("slices", f"{slices!r} must be a list of column names")
    known = columns | set(label.source_columns) | set(ignored)
    for column in slices:
        if column not in known:
            fail("slices", f"{column!r} is not a column of this spec; declare it as a feature or "
                           "under ignored")

    gate_values = values.get("gate") or {}
    unknown = sorted(set(gate_values) - set(_GATE_KEYS)) if isinstance(gate_values, Mapping) else []
    if not isinstance(gate_values, Mapping) or unknown:
        fail("gate", f"unknown key(s) {', '.join(unknown) or repr(gate_values)}; allowed: "
                     f"{', '.join(_GATE_KEYS)} (the metric is the task's: "
                     f"{task.gated_metric.name})")
    try:
        gate = Gate(**gate_values)
        if gate.threshold is not None:
            task.gated_metric.check_threshold(gate.threshold)
    except ValueError as e:
        fail("gate", str(e))

    try:
        model = ModelSettings(**(values.get("model") or {}))
    except TypeError as e:
        fail("model", f"{e}; allowed: {', '.join(f.name for f in dataclasses.fields(ModelSettings))}")
    except ValueError as e:
        fail("model", str(e))

    try:
        training = TrainingSettings(**(values.get("training") or {}))
    except TypeError as e:
        fail("training", f"{e}; allowed: "
             f"{', '.join(f.name for f in dataclasses.fields(TrainingSettings))}")
    except ValueError as e:
        fail("training", str(e))

    data_root = values.get("data_root")
    if data_root is not None and not isinstance(data_root, str):
        fail("data_root", f"{data_root!r} must be a path, a URI or package:<package>/<path>")
    return DatasetSpec(name=name, directory=directory, label=label, task=task,
                       features=tuple(features), data_root=data_root, ignored=dict(ignored),
                       slices=tuple(slices), gate=gate, model=model,
                       training=training)


def _label(values: Any, fail) -> Tuple[Label, tasks_lib.Task]:
    if not isinstance(values, Mapping):
        fail("label", "must be a mapping with column (or name + expression) and task")
    unknown = sorted(set(values) - set(_LABEL_KEYS))
    if unknown:
        fail(f"label.{unknown[0]}", f"unknown key; allowed: {', '.join(_LABEL_KEYS)}")
    task_name = values.get("task")
    if task_name not in tasks_lib.TASKS:
        fail("label.task", f"{task_name!r} is not a task; allowed: {', '.join(tasks_lib.TASKS)}")
    column, text = values.get("column"), values.get("expression")
    if (column is None) == (text is None):
        fail("label", "declare exactly one of `column` (a label column) and `expression` (a label "
                      "derived from columns)")
    parsed = None
    if text is not None:
        try:
            parsed = expression_lib.parse(text)
        except expression_lib.ExpressionError as e:
            fail("label.expression", str(e))
        if "name" not in values:
            fail("label.name", "a derived label needs a name (e.g. big_tipper)")
    name = str(values.get("name") or column)
    allowed = {"binary": ("positive", "negative"), "multiclass": ("classes",), "regression": ()}
    for key in ("positive", "negative", "classes"):
        if key in values and key not in allowed[task_name]:
            fail(f"label.{key}", f"is not used by a {task_name} label; remove it")
    if parsed is not None and task_name != "regression" and not parsed.is_boolean:
        fail("label.expression", f"{text!r} is a number; a {task_name} label from an expression "
                                 "needs a comparison (binary), or use task: regression")
    if parsed is not None and task_name == "regression" and parsed.is_boolean:
        fail("label.expression", f"{text!r} is a comparison; a regression label needs a number")
    if parsed is not None and task_name == "multiclass":
        fail("label.expression", "a multiclass label must be a column (declare column: and classes:)")
    try:
        if task_name == "binary":
            positive, negative = values.get("positive"), values.get("negative")
            if parsed is not None and (positive is not None or negative is not None):
                fail("label.positive", "an expression label is positive where it is true; remove "
                                       "positive and negative")
            if parsed is None and positive is None:
                fail("label.positive", "a binary label column needs its positive class, e.g. "
                                       "positive: \"yes\"")
            task = tasks_lib.Binary(positive=None if positive is None else str(positive),
                                    negative=None if negative is None else str(negative))
        elif task_name == "multiclass":
            task = tasks_lib.Multiclass(classes=tuple(values.get("classes") or ()))
        else:
            task = tasks_lib.Regression()
    except ValueError as e:
        fail("label", str(e))
    return Label(name=name, column=column, expression=parsed), task


def _check_shares(features, fail) -> None:
    groups: Dict[str, list] = {}
    for feature in features:
        if feature.share is not None:
            groups.setdefault(feature.share, []).append(feature)
    for share, members in groups.items():
        first = members[0]
        for other in members[1:]:
            if other.share_settings() != first.share_settings():
                fail(f"features.{other.name}.share",
                     f"{share!r} is shared with {first.name}, which has different settings "
                     f"({first.share_settings()} vs {other.share_settings()}); shared features "
                     "must agree")
        if len(members) == 1:
            fail(f"features.{first.name}.share", f"{share!r} has one member; a share group needs "
                                                 "two or more features (or remove share)")


def check_against_schema(spec: DatasetSpec) -> None:
    """The spec and its curated schema must describe the same columns."""
    from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=import-outside-toplevel
    from google.protobuf import text_format  # pylint: disable=import-outside-toplevel

    schema = schema_pb2.Schema()
    with open(spec.schema_path, encoding="utf-8") as f:
        try:
            text_format.Parse(f.read(), schema)
        except text_format.ParseError as e:
            raise SpecError(f"{spec.schema_path} is not a valid TFDV schema: {e}") from e
    types = {f.name: f.type for f in schema.feature}
    for column in spec.required_columns:
        if column not in types:
            raise SpecError(f"{spec.schema_path} has no column {column!r}, which {spec.spec_path} "
                            "uses; add it to the schema or fix the spec")
    for column in spec.numeric_columns:
        if types[column] == schema_pb2.BYTES:
            raise SpecError(f"{spec.schema_path}: column {column!r} is a string (BYTES) but "
                            f"{spec.spec_path} uses it as a number; fix its kind or the schema")
    serving = [f for f in schema.feature if f.name in spec.label_source_columns]
    for feature in serving:
        if "SERVING" not in feature.not_in_environment:
            raise SpecError(f"{spec.schema_path}: label source {feature.name!r} must be "
                            "`not_in_environment: \"SERVING\"` (clients do not send it)")


def from_json(text: str, directory: str = ".") -> DatasetSpec:
    """The spec from `DatasetSpec.to_json()`, as components receive it in their custom_config."""
    return from_mapping(json.loads(text), directory)


def from_custom_config(custom_config) -> DatasetSpec:
    """The spec a Transform or Trainer component received (pipeline/pipeline.py passes it)."""
    if not custom_config or SPEC_KEY not in custom_config:
        raise ValueError(f"custom_config has no {SPEC_KEY!r}: the pipeline passes the dataset spec "
                         "to Transform and Trainer (pipeline/pipeline.py)")
    return from_json(custom_config[SPEC_KEY])
