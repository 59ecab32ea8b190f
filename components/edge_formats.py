"""Portable exports of a pushed model: TFLite and a TensorFlow.js graph model of its `serving_raw`.

Both take the raw features (one input per column: the names and dtypes of the SavedModel's
`serving_raw`, models/signatures.py) and answer the same outputs; the Transform graph runs inside them.
They are made from the SavedModel's own `serving_raw` graph, so there is no second copy of the
preprocessing: the same ops, the same learned means and quantile boundaries (constants in the graph).

One change makes the graph convertible: tf.Transform's vocabularies are hash tables filled from asset
files at load time (InitializeTableFromTextFileV2), which the TFLite converter drops (the model then
fails with "hashtable need to be initialized"; TensorFlow issue #52206) and TensorFlow.js cannot run.
`constant_table_model` freezes `serving_raw` (variables to constants, functions inlined) and feeds each
table's lookups from a StaticHashTable holding exactly the loaded table's keys and values (read back
from the table itself with LookupTableExportV2), then saves that as a SavedModel with one signature,
`serving_raw`. The TFLite and TF.js converters start from it.

TFLite keeps a few Select TF ops, for which it has no builtin: SELECT_TF_OPS says which and why (the
run record lists a model's). TF.js runs every op of the graph.
"""
import hashlib
import os
import subprocess
import tempfile
from typing import Dict, List

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants  # pylint: disable=no-name-in-module

from components import fingerprints

SIGNATURE = "serving_raw"
TFLITE_FILE = "model.tflite"
# The Select TF ops the Transform graph leaves in a TFLite model, and why TFLite has no builtin for it.
SELECT_TF_OPS = {
    "StringToHashBucketFast": "out-of-vocabulary buckets: no builtin string hash",
    "StaticRegexReplace": "the strip of surrounding whitespace: no builtin string ops",
    "UpperBound": "tft.bucketize's quantile lookup: no builtin search",
    "SparseToDense": "missing-value filling of CSV columns: the builtin has no strings or float64",
    "Round": "integer categories read through float64: the builtin has no float64",
}
# The TF.js tools: the converter script, the Node runner, and its npm packages (package-lock.json).
TFJS_TOOLS = os.path.join(fingerprints.PROJECT_ROOT, "components", "tfjs")
# The converter's own venv (components/tfjs/requirements.lock); `make tfjs` makes it and installs the
# npm packages. An installed package (the Kubeflow image) has no checkout to hold it: the image names
# its venv in PIPELINE_TFJS_VENV.
TFJS_VENV = os.environ.get("PIPELINE_TFJS_VENV") or os.path.join(fingerprints.PROJECT_ROOT, ".venv-tfjs")
TFJS_SETUP = "make tfjs"
# What the exports depend on besides this package's Python (relative to the project): they key the
# component's cache.
TOOL_FILES = ("components/tfjs/convert.py", "components/tfjs/predict.js",
              "components/tfjs/package-lock.json", "components/tfjs/requirements.lock")


def tools_sha256() -> str:
    """One hash over TOOL_FILES' contents, in the project fingerprints.PROJECT_ROOT names."""
    digest = hashlib.sha256()
    for path in TOOL_FILES:
        with open(os.path.join(fingerprints.PROJECT_ROOT, path), "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


class ExportError(RuntimeError):
    """A model could not be converted, or a converter is not installed."""


def _table_dtypes(graph_def) -> tuple:
    """The key and value dtypes of the graph's table lookups (tf.Transform: string -> int64)."""
    lookups = [node for function in graph_def.library.function for node in function.node_def
               if node.op == "LookupTableFindV2"]
    lookups += [node for node in graph_def.node if node.op == "LookupTableFindV2"]
    dtypes = {(node.attr["Tin"].type, node.attr["Tout"].type) for node in lookups}
    if len(dtypes) > 1:
        raise ExportError(f"The model's tables have different key/value types {sorted(dtypes)}")
    keys, values = dtypes.pop() if dtypes else (tf.string.as_datatype_enum, tf.int64.as_datatype_enum)
    return tf.dtypes.as_dtype(keys), tf.dtypes.as_dtype(values)


def _table_handles(signature, graph_def) -> Dict[str, tf.Tensor]:
    """Node name -> the loaded model's (initialized) table behind each table node of the graph, whose
    nodes become placeholders fed with constant tables.

    A table reaches the frozen graph either as a captured handle (a resource Placeholder; tf.Transform
    in TF 2 mode) or as a HashTableV2 node that finds the table the loader initialized by its shared
    name (tf.Transform in compat.v1 mode, as the pipeline's Transform runs).
    """
    captured = {internal.name: external for external, internal in signature.graph.captures}
    handles = {}
    for node in graph_def.node:
        if node.op == "Placeholder" and node.attr["dtype"].type == tf.resource.as_datatype_enum:
            handles[node.name] = captured[f"{node.name}:0"]
        elif node.op == "HashTableV2":
            # The same op run eagerly, with the same shared name, is a handle to the same table.
            handles[node.name] = tf.raw_ops.HashTableV2(
                key_dtype=node.attr["key_dtype"].type, value_dtype=node.attr["value_dtype"].type,
                container=node.attr["container"].s, shared_name=node.attr["shared_name"].s,
                use_node_name_sharing=node.attr["use_node_name_sharing"].b)
            node.op = "Placeholder"
            for attr in list(node.attr):
                del node.attr[attr]
            node.attr["dtype"].type = tf.resource.as_datatype_enum
            node.attr["shape"].shape.SetInParent()  # a scalar
    return handles


def _shape_lookups(graph_def) -> None:
    """Gives each table lookup's result its keys' shape, in place.

    A lookup on a table fed through a placeholder has no static shape (TensorFlow infers it from the
    table handle's data, which a placeholder lacks), and TFLite then stores the tensors after it
    without a rank: a fresh interpreter's first call, if it needs no resize (one row), fails to
    prepare ("CONCATENATION ... 1 != 2"). Reshape(lookup, Shape(keys)) has the keys' rank.
    """
    lookups = [node for node in graph_def.node if node.op == "LookupTableFindV2"]
    shaped = {}
    for lookup in lookups:
        shape = graph_def.node.add(name=f"{lookup.name}/keys_shape", op="Shape",
                                   input=[lookup.input[1]])
        shape.attr["T"].type = lookup.attr["Tin"].type
        shape.attr["out_type"].type = tf.int32.as_datatype_enum
        reshape = graph_def.node.add(name=f"{lookup.name}/shaped", op="Reshape",
                                     input=[lookup.name, shape.name])
        reshape.attr["T"].type = lookup.attr["Tout"].type
        reshape.attr["Tshape"].type = tf.int32.as_datatype_enum
        shaped[lookup.name] = shaped[f"{lookup.name}:0"] = reshape.name
    added = set(shaped.values())
    for node in graph_def.node:
        if node.name not in added:
            node.input[:] = [shaped.get(name, name) for name in node.input]


class _ConstantTableModel(tf.Module):
    """`serving_raw` frozen, its tables built from constants; what both converters read."""

    def __init__(self, signature):
        super().__init__()
        # Every function inlined: one graph, whose only non-feature inputs are then the tables.
        frozen, graph_def = convert_to_constants.convert_variables_to_constants_v2_as_graph(
            signature, aggressive_inlining=True)
        _shape_lookups(graph_def)
        key_dtype, value_dtype = _table_dtypes(graph_def)
        self._tables: Dict[str, tf.lookup.StaticHashTable] = {}
        for name, handle in _table_handles(signature, graph_def).items():
            keys, values = tf.raw_ops.LookupTableExportV2(table_handle=handle, Tkeys=key_dtype,
                                                          Tvalues=value_dtype)
            if keys.shape[0] == 0:
                raise ExportError(f"The model's table {name} is empty: its vocabulary was not "
                                  "loaded, and an export would map every value out of vocabulary.")
            # The default value is an input of each lookup in the graph; this one is unused.
            self._tables[name] = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)
        self.tables = list(self._tables.values())  # tracked: saved with the model
        inputs = signature.structured_input_signature[1]
        output_keys = list(tf.nest.flatten(
            {k: k for k in signature.structured_outputs}))  # the order of `frozen.outputs`
        output_names = [t.name for t in frozen.outputs]

        @tf.function(input_signature=[{name: tf.TensorSpec(spec.shape, spec.dtype, name=name)
                                        for name, spec in inputs.items()}])
        def serving_raw(raw):
            feeds = {name: raw[name] for name in inputs}
            feeds.update({name: tf.identity(table.resource_handle)
                          for name, table in self._tables.items()})
            outputs = tf.graph_util.import_graph_def(graph_def, input_map=feeds,
                                                     return_elements=output_names, name="")
            return dict(zip(output_keys, outputs))

        self.serving_raw = serving_raw


def constant_table_model(model, output_dir: str) -> None:
    """The loaded SavedModel's `serving_raw`, frozen, with constant tables, saved at `output_dir`."""
    module = _ConstantTableModel(model.signatures[SIGNATURE])
    tf.saved_model.save(module, output_dir,
                        signatures={SIGNATURE: module.serving_raw.get_concrete_function()})


def to_tflite(constant_table_dir: str, output_path: str) -> List[str]:
    """Writes the TFLite model; returns the Select TF ops it keeps (sorted)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(constant_table_dir,
                                                         signature_keys=[SIGNATURE])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    flatbuffer = converter.convert()
    with tf.io.gfile.GFile(output_path, "wb") as f:
        f.write(flatbuffer)
    return select_tf_ops(flatbuffer)


def select_tf_ops(flatbuffer: bytes) -> List[str]:
    """The Select TF ops ("Flex" custom ops) a TFLite model uses, without the prefix."""
    from tensorflow.lite.python import schema_py_generated as schema  # pylint: disable=import-outside-toplevel

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    return sorted({code.customCode.decode()[len("Flex"):] for code in model.operatorCodes
                   if code.customCode and code.customCode.startswith(b"Flex")})


class TfjsConverter:
    """The TF.js converter in its own venv, started at once (it imports TensorFlow meanwhile);
    `start` hands it the model to convert and returns, `wait` waits for the TF.js model (`convert`:
    both). Stops it if unused (a context manager)."""

    def __init__(self):
        python = os.path.join(TFJS_VENV, "bin", "python")
        if not os.path.exists(python):
            raise ExportError(f"The TensorFlow.js converter's venv {TFJS_VENV} is missing: run "
                              f"`{TFJS_SETUP}` (it installs components/tfjs/requirements.lock).")
        # That venv has its own TensorFlow and Keras: nothing of this process' Python settings.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TF_USE_LEGACY_KERAS")}
        # Its messages go to a file, not a pipe: it converts while nobody reads, and a full pipe would
        # stall it. Its stdout is only a line per int64 weight cast to int32 (TF.js has no int64).
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        self._process = subprocess.Popen(
            [python, os.path.join(TFJS_TOOLS, "convert.py"), SIGNATURE], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=self._stderr, text=True, env=env)

    def start(self, constant_table_dir: str, output_dir: str) -> None:
        """Hands it the constant-table model; it converts while this process goes on."""
        try:
            self._process.stdin.write(f"{constant_table_dir}\n{output_dir}\n")
            self._process.stdin.close()
        except BrokenPipeError:  # it stopped early (an import failed): `wait` says why
            pass

    def wait(self, timeout_s: float = 600) -> None:
        """Returns once the TF.js graph model (model.json and weight shards) is written."""
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired as e:
            raise ExportError(f"The TensorFlow.js converter took over {timeout_s:g} s") from e
        if self._process.returncode != 0:
            self._stderr.seek(0)
            raise ExportError(f"The TensorFlow.js converter failed: {self._stderr.read().strip()[-2000:]}")

    def convert(self, constant_table_dir: str, output_dir: str, timeout_s: float = 600) -> None:
        """Writes the TF.js graph model of the constant-table model, and waits for it."""
        self.start(constant_table_dir, output_dir)
        self.wait(timeout_s)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if not self._process.stdin.closed:
            self._process.stdin.close()
        self._stderr.close()


def require_node_packages() -> None:
    """ExportError with the fix when the npm packages (components/tfjs/package-lock.json) are missing."""
    if not os.path.isdir(os.path.join(TFJS_TOOLS, "node_modules", "@tensorflow", "tfjs")):
        raise ExportError(f"@tensorflow/tfjs is not installed in {TFJS_TOOLS}: run `{TFJS_SETUP}` "
                          "(npm ci from its package-lock.json).")
