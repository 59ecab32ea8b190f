"""How a missing value is written where a column cannot be left out: the `serving_raw` signature's dense
inputs, one value per column and row. One definition for the signature (models/signatures.py), the
server, the client and the serving check; a tf.Example simply leaves the feature out.

- float: NaN.
- string: "".
- integer: exactly -2**31 (INT32_MIN); every other integer, negative ones included, is a value.
  Why this number: the marker must not collide with real data, and 0, -1 or "any negative" do (a
  temperature, an offset, a balance, a code); INT32_MIN sits at the edge of the type, where no count,
  id, calendar field or measurement of a taxi trip lies (a column whose real values can reach it must
  be sent as a float or a string). It fits int32 as well as int64: TF.js has no int64 and runs an
  exported model's integer inputs as int32, so INT64_MIN would not survive the export, while the same
  marker works in both.

JSON clients need not know the markers: the server (pipeline/serving/tensors.py) reads `null` as the
input's marker, and the client (pipeline/serving/client.py) writes an empty CSV cell or a null as the
marker, so its requests stay valid for TF Serving too (whose JSON parser rejects null).
"""
import math
from typing import Any

import tensorflow as tf

MISSING_FLOAT = math.nan
MISSING_STRING = ""
MISSING_INT = -2**31


def marker(dtype: tf.dtypes.DType) -> Any:
    """The missing-value marker for an input of `dtype` (a float, string or integer type)."""
    dtype = tf.dtypes.as_dtype(dtype)
    if dtype == tf.string:
        return MISSING_STRING
    if dtype.is_floating:
        return MISSING_FLOAT
    if dtype.is_integer and dtype.min <= MISSING_INT:
        return MISSING_INT
    raise ValueError(f"No missing-value marker for {dtype.name} inputs: use a float, string, int32 "
                     "or int64 column")


def is_blank(value: Any) -> bool:
    """How an input row (CSV cells, JSON values) leaves a value out: null (None), "" or NaN."""
    return value is None or value == MISSING_STRING or (isinstance(value, float) and math.isnan(value))


def missing_mask(value: tf.Tensor) -> tf.Tensor:
    """True where a dense input holds its dtype's marker (inside the exported signature)."""
    if value.dtype == tf.string:
        return tf.equal(value, MISSING_STRING)
    if value.dtype.is_floating:
        return tf.math.is_nan(value)
    return tf.equal(value, tf.constant(MISSING_INT, value.dtype))
