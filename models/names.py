"""TensorFlow names for the table's columns: columns keep their names in the data, the tf.Examples and
the spec; op scopes, Keras layers and inputs, vocabulary files and signature inputs need names
TensorFlow accepts ("mean radius" cannot be one)."""
import re

_OP_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*\Z")  # TensorFlow's own rule for op names


def safe_name(key: str) -> str:
    """`key` with what TensorFlow cannot hold replaced: "mean radius" -> "mean_radius", "_id" ->
    "x_id"."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
    return name if re.match(r"[A-Za-z0-9.]", name) else f"x{name}"


def raw_input_name(column: str) -> str:
    """The `serving_raw` signature's input that takes `column`: its own name where TensorFlow
    accepts it (so existing clients keep working), else `safe_name(column)`."""
    return column if _OP_NAME.match(column) else safe_name(column)
