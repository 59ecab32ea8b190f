"""The Transform component's `preprocessing_fn`: raw columns to model inputs and the label, per the spec."""
import tensorflow as tf

from models import kinds
from models import spec as spec_lib
from models.spec import SPEC_KEY  # noqa: F401  (re-exported: where tests and the pipeline look)


def label_values(inputs, spec: spec_lib.DatasetSpec) -> tf.Tensor:
    """The raw label column (dense), or the label expression evaluated over its columns."""
    if spec.label.expression is None:
        column = inputs[spec.label.column]
        default = "" if column.dtype == tf.string else 0
        return kinds.fill_missing(column, default)
    values = {c: kinds.fill_missing(inputs[c], float("nan"), tf.float32)
              for c in spec.label.expression.columns}
    return spec.label.expression.evaluate(values)


def transform(inputs, spec: spec_lib.DatasetSpec):
    """Every feature's transform, and the task's training target under `spec.transformed_label`."""
    shared = kinds.SharedState(spec.features)
    outputs = {}
    for feature in spec.features:
        outputs.update(feature.transform(inputs, shared))
    # The serving graph drops this output: TFT prunes what depends on columns absent at serving time.
    outputs[spec.transformed_label] = spec.task.target(label_values(inputs, spec))
    return outputs


def preprocessing_fn(inputs, custom_config):
    """tf.Transform callback; TFX passes the Transform component's custom_config."""
    return transform(inputs, spec_lib.from_custom_config(custom_config))
