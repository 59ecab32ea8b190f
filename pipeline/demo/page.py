"""The demo page: a form generated from the dataset spec, for the newest pushed version's TF.js model.

The page (templates/demo.html.j2, static/demo.js) runs the model itself with @tensorflow/tfjs; the
server (pipeline/demo/server.py) only hands out files. The choices of a categorical field are the
vocabulary the model was trained with, read from the pushed SavedModel's assets/: tf.Transform's
vocabulary files, which the SavedModel's tables are filled from and which the TF.js export's constant
tables were copied from (components/edge_formats.py). Those files name their vocabulary and list it
most frequent first; the export's tables are anonymous nodes of a frozen graph.
"""
import dataclasses
import json
import os
from typing import Dict, List, Optional, Tuple

import jinja2

from components.edge_export import TFJS_DIR
from models import kinds, missing_values
from models.spec import DatasetSpec
from pipeline import serving_dir as serving

ASSETS_DIR = "assets"
# The datalist of a categorical field: its most frequent values (a vocabulary may hold many more).
MAX_CHOICES = 1000
# TensorFlow dtypes of the export's inputs as TF.js runs them: it has no int64 (integers are int32).
_TFJS_DTYPES = {"DT_FLOAT": "float32", "DT_DOUBLE": "float32", "DT_INT32": "int32",
                "DT_INT64": "int32", "DT_STRING": "string"}

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("pipeline.demo", "templates"),
    autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


class DemoError(RuntimeError):
    """No page can be served: the message names the directory or file and what to do."""


@dataclasses.dataclass(frozen=True)
class Export:
    """The TF.js export of one pushed version: its inputs (name -> TF.js dtype) and outputs
    (signature key -> graph node), from its model.json."""
    version_dir: str
    inputs: Dict[str, str]
    outputs: Dict[str, str]

    @property
    def version(self) -> str:
        return os.path.basename(self.version_dir)

    @property
    def tfjs_dir(self) -> str:
        return os.path.join(self.version_dir, TFJS_DIR)


@dataclasses.dataclass(frozen=True)
class Field:
    """One form field: a raw column of the model, named as in the query string."""
    column: str
    feature: str
    kind: str
    dtype: str  # float32, int32 or string
    hint: str
    choices: Tuple[str, ...] = ()


def newest_export(serving_dir: str, model_name: str) -> Export:
    """The TF.js export of the newest version under `<serving_dir>/<model_name>/`."""
    model_dir = os.path.join(serving_dir, model_name)
    versions = serving.versions(model_dir)
    if not versions:
        raise DemoError(f"No pushed version of {model_name} in {model_dir}: run `python -m pipeline "
                        "run` (it pushes a blessed model there), or pass the directory it pushed to "
                        "with --serving-dir.")
    version_dir = os.path.join(model_dir, str(versions[-1]))
    model_json = os.path.join(version_dir, TFJS_DIR, "model.json")
    if not os.path.isfile(model_json):
        raise DemoError(f"The newest pushed version {version_dir} has no TF.js export ({model_json} "
                        "is missing): it was pushed before the portable exports. Run `python -m "
                        "pipeline run` to push a version with them (`make tfjs` installs the "
                        "converter they need).")
    with open(model_json, encoding="utf-8") as f:
        signature = json.load(f)["signature"]
    inputs = {}
    for name, tensor in signature["inputs"].items():
        if tensor["dtype"] == "DT_RESOURCE":  # a table's handle: the model initializes it
            continue
        if tensor["dtype"] not in _TFJS_DTYPES:
            raise DemoError(f"{model_json}: input {name} is {tensor['dtype']}; the page sends "
                            f"{', '.join(_TFJS_DTYPES)} only")
        inputs[name.split(":")[0]] = _TFJS_DTYPES[tensor["dtype"]]
    outputs = {key: tensor["name"] for key, tensor in signature["outputs"].items()}
    return Export(version_dir, inputs, outputs)


def vocabulary(export: Export, feature: kinds.Categorical) -> List[str]:
    """The feature's vocabulary as the model was trained with it, most frequent first."""
    path = os.path.join(export.version_dir, ASSETS_DIR, feature.vocabulary_name)
    if not os.path.isfile(path):
        raise DemoError(f"{path} is missing: the pushed model has no vocabulary for {feature.name}. "
                        "Is --spec the spec it was trained with?")
    with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in f if line.rstrip("\n")]


def _hint(feature: kinds.Kind, column: str, choices: List[str]) -> str:
    if isinstance(feature, kinds.Categorical):
        return f"one of {len(choices)} known values, or any other"
    if isinstance(feature, kinds.CategoricalInt):
        return f"an integer, {feature.min} to {feature.max}"
    if isinstance(feature, kinds.Coordinates):
        return "latitude" if column == feature.latitude else "longitude"
    return "a number"


def form_fields(spec: DatasetSpec, export: Export) -> List[Field]:
    """A field per raw column, in the spec's order; the export must take exactly those columns."""
    if set(spec.serving_columns) != set(export.inputs):
        raise DemoError(f"The model in {export.version_dir} takes {', '.join(sorted(export.inputs))}, "
                        f"but the spec {spec.spec_path} declares {', '.join(spec.serving_columns)}: "
                        "pass the spec it was trained with (--spec).")
    fields = []
    for feature in spec.features:
        choices = vocabulary(export, feature) if isinstance(feature, kinds.Categorical) else []
        for column in feature.columns:
            if column not in {f.column for f in fields}:  # a column two features read: one field
                fields.append(Field(column, feature.name, feature.kind, export.inputs[column],
                                    _hint(feature, column, choices), tuple(choices[:MAX_CHOICES])))
    return fields


def render(spec: DatasetSpec, model_name: str, export: Export, fields: List[Field]) -> str:
    """The page's HTML; what the page's script needs travels as JSON inside it."""
    config = {"label": spec.label.name, "task": spec.task.task,
              "inputs": {f.column: f.dtype for f in fields}, "outputs": export.outputs,
              # An empty field is the column's missing value, the marker serving_raw takes (a float's
              # is NaN, which JSON cannot hold: the script writes it).
              "missingInt": missing_values.MISSING_INT, "missingString": missing_values.MISSING_STRING}
    return _TEMPLATES.get_template("demo.html.j2").render(
        model_name=model_name, version=export.version, label=spec.label.name, task=spec.task.task,
        fields=fields, config=config)
