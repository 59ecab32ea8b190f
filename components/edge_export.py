"""Portable exports and their parity check before push: TFLite and TF.js answer as the SavedModel does.

Between the serving check and the Pusher. It converts the candidate SavedModel (components/
edge_formats.py), then runs both exports on eval-split examples, each also varied to hold missing
values (one column at a time, and all at once) and unseen, space-padded categories: the TFLite model
in the TFLite interpreter, the TF.js model in Node with the pure-JS @tensorflow/tfjs
(components/tfjs/predict.js), each on the whole batch and on rows alone (TFLite every row, TF.js the
first 20). Every numeric output must be within the format's tolerance of the SavedModel's
`serving_raw` (1e-5 TFLite, 1e-4 TF.js; absolute up to 1, relative above, as the serving check
measures), and string outputs (a multiclass model's class names) equal to it.

Outputs: `exported_model`, the SavedModel with its exports beside it (`tflite/model.tflite`, `tfjs/model.json`
and weight shards; TF Serving loads only the SavedModel's own files), which the Pusher pushes in one
rename; and `parity_blessing`, an InfraBlessing the Pusher requires: blessed when the serving check
blessed the model and both exports match, with the figures and, when not, which format and row differ.
(Not `blessing`: TFX's Airflow runner names artifacts by output key and type, and the ServingCheck's
InfraBlessing is already called that.)

A model may hold what a format cannot convert: a spec with a text feature embeds it with a TF Hub
module (models/kinds.Text) whose string ops TF.js lacks (StringSplitV2, StringLower). The pipeline then
passes `unconvertible`, the reason; a format whose converter fails is skipped, with that reason and the
converter's own message in the run record, and the model is pushed with the formats that converted
(each still checked). Without it a failed conversion fails the component: a tabular model always
converts, so a failure there is a bug to see, not to skip.
"""
import dataclasses
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Examples, InfraBlessing, Model
from tfx.utils import io_utils, path_utils

from components import edge_formats
from components.serving_check import (BLESSED_FILE, NOT_BLESSED_FILE, eval_examples, raw_input_spec,
                                      serving_requests)
from models import missing_values

TFLITE_DIR, TFJS_DIR = "tflite", "tfjs"
FORMATS = ("tflite", "tfjs")
SKIPPED_REASON = "skipped: the serving check did not bless the model"
# What stands in for a category no vocabulary holds; padded, as exports pad values.
UNSEEN_CATEGORY = "  no such category (parity check)  "
# Node answers a one-row call in ~35 ms: the first rows alone (every row in the batch); TFLite: all.
TFJS_ROWS_ALONE = 20


@dataclasses.dataclass
class FormatResult:
    """One export's parity: the largest difference from the SavedModel, and where it was."""
    max_diff: float = math.nan
    worst_row: str = ""
    size_bytes: int = 0
    skipped: str = ""  # why this format was not exported (then no figures)


@dataclasses.dataclass
class ParityResult:
    blessed: bool
    reason: str = ""
    rows: int = 0
    formats: Dict[str, FormatResult] = dataclasses.field(default_factory=dict)
    select_tf_ops: List[str] = dataclasses.field(default_factory=list)
    seconds: float = math.nan
    files: List[str] = dataclasses.field(default_factory=list)  # the exports', relative to the model


def parity_rows(instances: Sequence[dict], raw_spec: Dict[str, tf.TensorSpec]
                ) -> Tuple[List[dict], List[str]]:
    """The eval rows and their variants, each with what it is (named in a mismatch's reason).

    Eval row i also comes with column i (cycling) set to its missing-value marker; the first eval
    row also with every column missing, and with every string column an unseen, padded category.
    """
    names = sorted(raw_spec)
    rows = [dict(i) for i in instances]
    labels = [f"eval example {i}" for i in range(len(instances))]
    for i, instance in enumerate(instances):
        name = names[i % len(names)]
        rows.append({**instance, name: missing_values.marker(raw_spec[name].dtype)})
        labels.append(f"eval example {i} with {name} missing")
    if instances:
        rows.append({name: missing_values.marker(raw_spec[name].dtype) for name in names})
        labels.append("every column missing")
        strings = [n for n in names if raw_spec[n].dtype == tf.string]
        if strings:
            rows.append({**instances[0], **{n: UNSEEN_CATEGORY for n in strings}})
            labels.append(f"eval example 0 with unseen categories in {', '.join(strings)}")
    return rows, labels


def columns_of(rows: Sequence[dict], raw_spec: Dict[str, tf.TensorSpec]) -> Dict[str, np.ndarray]:
    """Rows as one array per input, of the dtype the signature takes (strings as objects)."""
    return {name: np.array([r[name] for r in rows],
                           dtype=object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype)
            for name, spec in raw_spec.items()}


def _answers(outputs: Dict[str, object]) -> Dict[str, np.ndarray]:
    """Each output as an array with one row per example: numbers as float64, strings (a multiclass
    model's class names) as str."""
    answers = {}
    for name, value in outputs.items():
        array = np.asarray(value)
        if array.dtype.kind in "OSU":
            array = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v),
                                 otypes=[object])(array)
        else:
            array = array.astype(np.float64)
        answers[name] = array.reshape(len(array), -1)
    return answers


def saved_model_answers(model, columns: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    signature = model.signatures[edge_formats.SIGNATURE]
    spec = raw_input_spec(model)
    return _answers({k: v.numpy() for k, v in signature(
        **{name: tf.constant(values, spec[name].dtype) for name, values in columns.items()}).items()})


def tflite_answers(tflite_path: str, columns: Dict[str, np.ndarray]
                   ) -> Tuple[Dict[str, np.ndarray], List[Dict[str, np.ndarray]]]:
    """Each row alone, then the whole batch in one call, in the TFLite interpreter. A fresh
    interpreter's first call is one row, as an app's would be: it prepares without a resize."""
    interpreter = tf.lite.Interpreter(model_path=tflite_path)
    runner = interpreter.get_signature_runner(edge_formats.SIGNATURE)
    count = len(next(iter(columns.values())))
    rows = [_answers(runner(**{n: v[i:i + 1] for n, v in columns.items()})) for i in range(count)]
    return _answers(runner(**columns)), rows


class TfjsRunner:
    """Node with components/tfjs/predict.js on the TF.js model at `tfjs_dir`, started at once (it
    loads @tensorflow/tfjs meanwhile, before the model exists); `answers` sends it the rows. Stops it
    if unused (a context manager)."""

    def __init__(self, tfjs_dir: str):
        edge_formats.require_node_packages()
        self._process = subprocess.Popen(
            ["node", os.path.join(edge_formats.TFJS_TOOLS, "predict.js"), tfjs_dir],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def answers(self, columns: Dict[str, np.ndarray], raw_spec: Dict[str, tf.TensorSpec],
                rows_alone: int = TFJS_ROWS_ALONE, timeout_s: float = 600
                ) -> Tuple[Dict[str, np.ndarray], List[Dict[str, np.ndarray]]]:
        """The whole batch in one call, and the first `rows_alone` rows alone.

        TF.js has no int64: integer inputs go in as int32 (the missing marker fits,
        models/missing_values.py).
        """
        dtypes = {n: "string" if s.dtype == tf.string else "float32" if s.dtype.is_floating else "int32"
                  for n, s in raw_spec.items()}
        # JSON has no NaN: a missing float is null, NaN again in predict.js.
        inputs = {n: [None if isinstance(v, float) and math.isnan(v) else v for v in values.tolist()]
                  for n, values in columns.items()}
        request = {"dtypes": dtypes, "inputs": inputs, "alone": rows_alone}
        try:
            stdout, stderr = self._process.communicate(json.dumps(request), timeout_s)
        except subprocess.TimeoutExpired as e:
            raise edge_formats.ExportError(f"TF.js in Node took over {timeout_s:g} s") from e
        if self._process.returncode != 0:
            raise edge_formats.ExportError(f"TF.js in Node failed: {stderr.strip()[-2000:]}")
        answers = json.loads(stdout)
        return _answers(answers["batch"]), [_answers(r) for r in answers["rows"]]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self._process.poll() is None:
            self._process.kill()
            self._process.communicate()


def tfjs_answers(tfjs_dir: str, columns: Dict[str, np.ndarray], raw_spec: Dict[str, tf.TensorSpec],
                 rows_alone: int = TFJS_ROWS_ALONE
                 ) -> Tuple[Dict[str, np.ndarray], List[Dict[str, np.ndarray]]]:
    """TfjsRunner's answers, from a Node started for them."""
    with TfjsRunner(tfjs_dir) as runner:
        return runner.answers(columns, raw_spec, rows_alone)


def compare(expected: Dict[str, np.ndarray], batch: Dict[str, np.ndarray],
            rows: Sequence[Dict[str, np.ndarray]], labels: Sequence[str]) -> Tuple[float, str]:
    """The largest difference of any answer (batch or one row alone) from the SavedModel's, and
    which row and output it was on. Absolute up to 1, relative above (a regression's label units)."""
    worst, where = -1.0, ""
    for name, want in expected.items():
        answers = [("in one batch", batch.get(name))]
        answers += [("alone", None if name not in r else r[name]) for r in rows]
        for i, (how, got) in enumerate(answers):
            row_want = want if i == 0 else want[i - 1:i]
            if got is None or got.shape != row_want.shape:
                return math.inf, f"{labels[max(i - 1, 0)]}: no {name} output of shape {row_want.shape}"
            if want.dtype == object:  # strings: equal or not
                diff = np.where(got == row_want, 0.0, np.inf)
            else:
                diff = np.abs(got - row_want) / np.maximum(1.0, np.abs(row_want))
                diff = np.where(np.isnan(got) & np.isnan(row_want), 0.0, diff)  # both NaN: same
                diff = np.where(np.isnan(diff), np.inf, diff)
            row = int(np.argmax(np.max(diff, axis=1)))
            if diff.max() > worst:
                index = row if i == 0 else i - 1
                worst = float(diff.max())
                where = (f"{labels[index]} ({how}): {name} {_text(got[row])} vs the SavedModel's "
                         f"{_text(row_want[row])}")
    return worst, where


def _text(values: np.ndarray) -> str:
    return ", ".join(repr(v) if isinstance(v, str) else f"{v:.7g}" for v in values.reshape(-1))


def verdict(results: Dict[str, Tuple[float, str]], tolerances: Dict[str, float]) -> Tuple[bool, str]:
    """Blessed when every format's largest difference is within its tolerance; else which differ,
    by how much, and where."""
    problems = [f"the {name} export differs from the SavedModel by {max_diff:.3g} (tolerance "
                f"{tolerances[name]:g}) on {where}"
                for name, (max_diff, where) in results.items() if not max_diff <= tolerances[name]]
    return not problems, "; ".join(problems)


def converter_message(error: BaseException) -> str:
    """The converter's own verdict: from the last line naming an error (a traceback's tail)."""
    lines = str(error).strip().splitlines()
    last = max((i for i, line in enumerate(lines) if "Error" in line), default=0)
    return " ".join(line.strip() for line in lines[last:])


def check_model(model_path: str, output_path: str, serialized: Sequence[bytes],
                tolerances: Dict[str, float], unconvertible: str = "") -> ParityResult:
    """Writes the SavedModel with its exports to `output_path` and checks their answers; with
    `unconvertible` (why a format may not convert), a format whose conversion fails is skipped."""
    started = time.monotonic()
    skipped: Dict[str, str] = {}

    def converted(name, convert) -> bool:
        try:
            convert()
            return True
        except Exception as e:  # pylint: disable=broad-except  (each converter raises its own)
            if not unconvertible:
                raise
            skipped[name] = f"{unconvertible}; the {name} converter failed: {converter_message(e)}"
            return False

    tflite_path = os.path.join(output_path, TFLITE_DIR, edge_formats.TFLITE_FILE)
    tfjs_dir = os.path.join(output_path, TFJS_DIR)
    work = tempfile.mkdtemp(prefix="edge_export_")
    # The TF.js converter and Node start first, and the converter gets the model as soon as it
    # exists: their start-up and the conversion overlap the TFLite conversion and check, on the
    # other core.
    with edge_formats.TfjsConverter() as tfjs_converter, TfjsRunner(tfjs_dir) as tfjs_runner:
        try:
            io_utils.copy_dir(model_path, output_path)
            tf.io.gfile.makedirs(os.path.dirname(tflite_path))
            model = tf.saved_model.load(model_path)
            constant_tables = os.path.join(work, "constant_tables")
            edge_formats.constant_table_model(model, constant_tables)
            tfjs_converter.start(constant_tables, os.path.join(work, TFJS_DIR))
            select_ops: List[str] = []
            if not converted("tflite", lambda: select_ops.extend(
                    edge_formats.to_tflite(constant_tables, tflite_path))):
                tf.io.gfile.rmtree(os.path.dirname(tflite_path))
            raw_spec = raw_input_spec(model)
            instances, _ = serving_requests(serialized, raw_spec)
            rows, labels = parity_rows(instances, raw_spec)
            columns = columns_of(rows, raw_spec)
            expected = saved_model_answers(model, columns)
            results = {}
            if "tflite" not in skipped:
                results["tflite"] = compare(expected, *tflite_answers(tflite_path, columns), labels)
            if converted("tfjs", tfjs_converter.wait):
                io_utils.copy_dir(os.path.join(work, TFJS_DIR), tfjs_dir)
                results["tfjs"] = compare(expected, *tfjs_runner.answers(columns, raw_spec), labels)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    blessed, reason = verdict(results, tolerances)
    formats = {name: FormatResult(max_diff, where, _size(tflite_path if name == "tflite" else tfjs_dir))
               for name, (max_diff, where) in results.items()}
    formats.update({name: FormatResult(skipped=why) for name, why in skipped.items()})
    return ParityResult(
        blessed=blessed, reason=reason, rows=len(rows), select_tf_ops=select_ops, formats=formats,
        files=[f"{d}/{f}" for d in (TFLITE_DIR, TFJS_DIR) if tf.io.gfile.isdir(os.path.join(output_path, d))
               for f in sorted(tf.io.gfile.listdir(os.path.join(output_path, d)))],
        seconds=time.monotonic() - started)


def _size(path: str) -> int:
    if not tf.io.gfile.isdir(path):
        return tf.io.gfile.stat(path).length
    return sum(tf.io.gfile.stat(os.path.join(path, f)).length for f in tf.io.gfile.listdir(path))


def record(blessing: InfraBlessing, result: ParityResult, tolerances: Dict[str, float]) -> None:
    """The verdict and figures as the blessing's custom properties (what the run summary reads)."""
    io_utils.write_string_file(
        os.path.join(blessing.uri, BLESSED_FILE if result.blessed else NOT_BLESSED_FILE), "")
    blessing.set_int_custom_property("blessed", int(result.blessed))
    blessing.set_string_custom_property("reason", result.reason)
    blessing.set_int_custom_property("rows", result.rows)
    if result.files:
        blessing.set_string_custom_property("files", ",".join(result.files))
    if result.select_tf_ops:
        blessing.set_string_custom_property("tflite_select_tf_ops", "; ".join(
            f"{op} ({edge_formats.SELECT_TF_OPS.get(op, 'not expected')})"
            for op in result.select_tf_ops))
    if not math.isnan(result.seconds):
        blessing.set_float_custom_property("seconds", result.seconds)
    for name in FORMATS:
        blessing.set_float_custom_property(f"{name}_tolerance", tolerances[name])
        if name in result.formats and result.formats[name].skipped:
            blessing.set_string_custom_property(f"{name}_skipped", result.formats[name].skipped)
        elif name in result.formats:
            each = result.formats[name]
            # A string: ML Metadata's SQLite store keeps 6 decimals of a double (1.5e-7 reads 0.0).
            blessing.set_string_custom_property(f"{name}_max_diff", f"{each.max_diff:.3g}")
            blessing.set_string_custom_property(f"{name}_worst_row", each.worst_row)
            blessing.set_int_custom_property(f"{name}_bytes", each.size_bytes)


def run_check(model: Model, examples: Examples, infra_blessing: Optional[InfraBlessing],
              exported: Model, blessing: InfraBlessing, num_examples: int,
              tolerances: Dict[str, float], unconvertible: str = "") -> ParityResult:
    """The component's work; skipped (not blessed) when the serving check did not bless the model."""
    if infra_blessing is not None and infra_blessing.get_int_custom_property("blessed") != 1:
        result = ParityResult(blessed=False, reason=SKIPPED_REASON)
    else:
        model_path = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
        result = check_model(model_path, path_utils.serving_model_path(exported.uri),
                             eval_examples(examples, num_examples), tolerances, unconvertible)
    record(blessing, result, tolerances)
    return result


@component
def EdgeExport(model: InputArtifact[Model], examples: InputArtifact[Examples],
               exported_model: OutputArtifact[Model], parity_blessing: OutputArtifact[InfraBlessing],
               code_sha256: Parameter[str],
               infra_blessing: InputArtifact[InfraBlessing] = None,
               num_examples: Parameter[int] = 50,
               tflite_tolerance: Parameter[float] = 1e-5,
               tfjs_tolerance: Parameter[float] = 1e-4,
               unconvertible: Parameter[str] = "") -> None:
    """Exports the model to TFLite and TF.js and blesses it for push when both answer as it does
    (`unconvertible`: why a format may fail to convert; it is then skipped, with that reason)."""
    del code_sha256  # only keys TFX's cache on this code and its tools (components/fingerprints.py)
    if num_examples < 1 or tflite_tolerance < 0 or tfjs_tolerance < 0:
        raise ValueError("EdgeExport needs num_examples >= 1 and tolerances >= 0.")
    run_check(model, examples, infra_blessing, exported_model, parity_blessing, num_examples,
              {"tflite": tflite_tolerance, "tfjs": tfjs_tolerance}, unconvertible)
