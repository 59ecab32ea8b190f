"""Held-out quality: train the pipeline on 80% of a dataset's rows, score the other 20% with the pushed model.

    .venv/bin/python bench/holdout_auc.py [--spec schemas/taxi] [--seed 0] [--reference]

The 20% never reaches the pipeline (not even its eval split). `--reference` also fits scikit-learn's
gradient boosting on the same 80% for comparison. Prints the figures; writes bench/results/holdout.json.
"""
import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from tensorflow_metadata.proto.v0 import schema_pb2  # noqa: E402

import models  # noqa: E402,F401
from models import kinds, preprocessing  # noqa: E402
from models import spec as spec_lib  # noqa: E402
from models.raw_examples import column_types, to_tf_examples  # noqa: E402
from pipeline.config import DEFAULT_SPEC_DIR, default_data_root  # noqa: E402

_DTYPES = {schema_pb2.BYTES: tf.string, schema_pb2.INT: tf.int64, schema_pb2.FLOAT: tf.float32}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def split_rows(spec_dir: str, seed: int, holdout_fraction: float = 0.2):
    root = default_data_root(spec_dir)
    fieldnames, rows = None, []
    for name in sorted(os.listdir(root)):
        with open(os.path.join(root, name), newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fieldnames = fieldnames or reader.fieldnames
            rows.extend(reader)
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * holdout_fraction)
    return fieldnames, rows[cut:], rows[:cut]


def labels(spec: spec_lib.DatasetSpec, rows) -> np.ndarray:
    """The training target of each row, computed by the spec's own label code."""
    types = column_types(spec.schema_path)
    columns = spec.label.source_columns
    parsed = tf.io.parse_example(tf.constant(to_tf_examples(rows, {c: types[c] for c in columns})),
                                 {c: tf.io.VarLenFeature(_DTYPES[types[c]]) for c in columns})
    return spec.task.target(preprocessing.label_values(parsed, spec)).numpy()


def score_pushed_model(spec: spec_lib.DatasetSpec, serving_dir: str, rows) -> np.ndarray:
    model_dir = os.path.join(serving_dir, spec.label.name)
    version = max(os.listdir(model_dir), key=int)
    serve = tf.saved_model.load(os.path.join(model_dir, version)).signatures["serving_default"]
    examples = to_tf_examples(rows, column_types(spec.schema_path, "SERVING"))
    return np.concatenate([
        next(iter(serve(examples=tf.constant(examples[i:i + 1024])).values())).numpy()
        for i in range(0, len(examples), 1024)])


def reference_auc(spec: spec_lib.DatasetSpec, train_rows, holdout_rows) -> float:
    """scikit-learn gradient boosting on the same raw columns (one-hot strings, NaN as -1)."""
    import pandas as pd  # pylint: disable=import-outside-toplevel
    from sklearn.ensemble import HistGradientBoostingClassifier  # pylint: disable=import-outside-toplevel

    columns = list(spec.serving_columns)
    strings = {f.name for f in spec.features_of_kind(kinds.Categorical)}
    frame = pd.DataFrame(train_rows + holdout_rows)[columns]
    for c in columns:
        frame[c] = (frame[c].astype("category").cat.codes if c in strings
                    else pd.to_numeric(frame[c], errors="coerce"))
    x_train, x_test = frame.iloc[:len(train_rows)], frame.iloc[len(train_rows):]
    model = HistGradientBoostingClassifier(categorical_features=[c in strings for c in columns],
                                           random_state=0)
    model.fit(x_train, labels(spec, train_rows))
    return float(roc_auc_score(labels(spec, holdout_rows), model.predict_proba(x_test)[:, 1]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=DEFAULT_SPEC_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", action="store_true")
    args = parser.parse_args()

    spec = spec_lib.load(args.spec)
    fieldnames, train_rows, holdout_rows = split_rows(args.spec, args.seed)
    work = tempfile.mkdtemp(prefix="holdout_")
    os.makedirs(os.path.join(work, "data"))
    with open(os.path.join(work, "data", "train.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(train_rows)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--spec", args.spec,
         "--data-root", os.path.join(work, "data"),
         "--output-dir", os.path.join(work, "out"), "--serving-dir", os.path.join(work, "serving")],
        check=False)
    if result.returncode != 0 or not os.path.isdir(os.path.join(work, "serving", spec.label.name)):
        sys.exit(f"The pipeline did not push a model (exit {result.returncode}); see the output above.")

    truth = labels(spec, holdout_rows)
    auc = float(roc_auc_score(truth, score_pushed_model(spec, os.path.join(work, "serving"),
                                                        holdout_rows)))
    report = {"dataset": spec.name, "seed": args.seed, "train_rows": len(train_rows),
              "holdout_rows": len(holdout_rows), "holdout_positive_rate": float(np.mean(truth)),
              "pushed_model_auc": auc}
    if args.reference:
        report["sklearn_gradient_boosting_auc"] = reference_auc(spec, train_rows, holdout_rows)
    print(json.dumps(report, indent=2))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"holdout_{spec.name}_seed{args.seed}.json"), "w",
              encoding="utf-8") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
