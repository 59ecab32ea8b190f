"""Held-out quality on several tables: the pipeline trains on 80% of the rows, the pushed model is scored
on the other 20%, next to scikit-learn's HistGradientBoosting trained and scored on the same split.

    .venv/bin/python bench/holdout.py [--datasets taxi,penguins,fares,flights] [--seed 0]

The 20% never reaches the pipeline (not even its eval split). The taxi uses the shipped spec
(schemas/taxi, its label is derived); every other table goes through `python -m pipeline init` with no
hand edits, as a new user's would. Prints a table; writes bench/results/holdout_seed<seed>.json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn import ensemble, metrics  # noqa: E402
from tensorflow_metadata.proto.v0 import schema_pb2  # noqa: E402

import models  # noqa: E402,F401
from models import kinds, preprocessing  # noqa: E402
from models import spec as spec_lib  # noqa: E402
from models.raw_examples import column_types, to_tf_examples  # noqa: E402
from pipeline.config import DEFAULT_SPEC_DIR, default_data_root  # noqa: E402

RESULTS = os.path.join(ROOT, "bench", "results")
_DTYPES = {schema_pb2.BYTES: tf.string, schema_pb2.INT: tf.int64, schema_pb2.FLOAT: tf.float32}


def _taxi():
    # As the file has it: pandas would write its integer columns with gaps as 8.0, which the taxi's
    # hand-curated schema (INT) refuses.
    return pd.read_csv(os.path.join(default_data_root(), "data.csv"), dtype=str,
                       keep_default_na=False)


def _penguins():
    import palmerpenguins  # pylint: disable=import-outside-toplevel

    return palmerpenguins.load_penguins()


def _fares():
    # pandas-written, as a user's export would be (init types the gappy integer columns FLOAT).
    return pd.read_csv(os.path.join(default_data_root(), "data.csv")).drop(
        columns=["tips", "payment_type"])


def _flights():
    from tests.tabular_data import flights  # pylint: disable=import-outside-toplevel

    return flights(rows=5000)


# name -> (the table, the init arguments; None: the shipped spec)
DATASETS = {
    "taxi": (_taxi, None),
    "penguins": (_penguins, ["--label", "species"]),
    "fares": (_fares, ["--label", "fare"]),
    "flights": (_flights, ["--label", "delayed"]),
}


def _cli(*args):
    result = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(f"`python -m pipeline {' '.join(args)}` exited {result.returncode}")


def _rows(frame: pd.DataFrame):
    return frame.fillna("").astype(str).to_dict("records")


def targets(spec: spec_lib.DatasetSpec, frame: pd.DataFrame) -> np.ndarray:
    """Each row's training target, computed by the spec's own label code."""
    types = column_types(spec.schema_path)
    columns = spec.label.source_columns
    examples = to_tf_examples(_rows(frame), {c: types[c] for c in columns})
    parsed = tf.io.parse_example(tf.constant(examples),
                                 {c: tf.io.VarLenFeature(_DTYPES[types[c]]) for c in columns})
    return spec.task.target(preprocessing.label_values(parsed, spec)).numpy()


def pushed_predictions(spec: spec_lib.DatasetSpec, serving_dir: str, frame: pd.DataFrame) -> np.ndarray:
    model_dir = os.path.join(serving_dir, spec.label.name)
    version = max(os.listdir(model_dir), key=int)
    serve = tf.saved_model.load(os.path.join(model_dir, version)).signatures["serving_default"]
    examples = to_tf_examples(_rows(frame), column_types(spec.schema_path, "SERVING"))
    return np.concatenate([serve(examples=tf.constant(examples[i:i + 1024]))[
        spec.task.prediction_key].numpy() for i in range(0, len(examples), 1024)])


def score(task: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    if task == "binary":
        return float(metrics.roc_auc_score(truth, predicted))
    if task == "multiclass":
        return float(metrics.accuracy_score(truth, predicted.argmax(axis=1)))
    return float(np.sqrt(metrics.mean_squared_error(truth, predicted)))


def gradient_boosting(spec: spec_lib.DatasetSpec, train: pd.DataFrame, test: pd.DataFrame) -> float:
    """HistGradientBoosting on the spec's raw feature columns (strings as categories)."""
    columns = list(spec.serving_columns)
    strings = {f.name for f in spec.features_of_kind(kinds.Categorical)}
    frame = pd.concat([train, test])[columns]
    for c in columns:
        frame[c] = (frame[c].astype("category").cat.codes if c in strings
                    else pd.to_numeric(frame[c], errors="coerce"))
    x_train, x_test = frame.iloc[:len(train)], frame.iloc[len(train):]
    task = spec.task.task
    model = (ensemble.HistGradientBoostingRegressor if task == "regression"
             else ensemble.HistGradientBoostingClassifier)(
        categorical_features=[c in strings for c in columns], random_state=0)
    model.fit(x_train, targets(spec, train))
    predicted = (model.predict(x_test) if task == "regression" else model.predict_proba(x_test))
    return score(task, targets(spec, test), predicted[:, 1] if task == "binary" else predicted)


def evaluate(name: str, seed: int, work: str) -> dict:
    load, init_args = DATASETS[name]
    frame = load().sample(frac=1.0, random_state=seed).reset_index(drop=True)
    cut = int(len(frame) * 0.2)
    test, train = frame.iloc[:cut], frame.iloc[cut:]
    data = os.path.join(work, name, "data")
    os.makedirs(data)
    train.to_csv(os.path.join(data, f"{name}.csv"), index=False)
    spec_dir = DEFAULT_SPEC_DIR if init_args is None else os.path.join(work, name, "spec")
    if init_args is not None:
        _cli("init", "--data-root", data, "--spec", spec_dir, *init_args)
    serving = os.path.join(work, name, "serving")
    _cli("run", "--spec", spec_dir, "--data-root", data, "--output-dir",
         os.path.join(work, name, "out"), "--serving-dir", serving)
    spec = spec_lib.load(spec_dir)
    if not os.path.isdir(os.path.join(serving, spec.label.name)):
        sys.exit(f"{name}: the pipeline did not push a model; see its output above")
    metric = {"binary": "AUC", "multiclass": "accuracy", "regression": "RMSE"}[spec.task.task]
    return {"dataset": name, "task": spec.task.task, "rows_train": len(train), "rows_held_out": cut,
            "metric": metric,
            "pipeline": score(spec.task.task, targets(spec, test),
                              pushed_predictions(spec, serving, test)),
            "gradient_boosting": gradient_boosting(spec, train, test)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="holdout_")
    reports = [evaluate(name, args.seed, work) for name in args.datasets.split(",")]
    print("| table | task | rows (train / held out) | metric | this pipeline | HistGradientBoosting |")
    print("|---|---|---|---|---|---|")
    for r in reports:
        print(f"| {r['dataset']} | {r['task']} | {r['rows_train']:,} / {r['rows_held_out']:,} | "
              f"{r['metric']} | {r['pipeline']:.4f} | {r['gradient_boosting']:.4f} |")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"holdout_seed{args.seed}.json"), "w", encoding="utf-8") as f:
        json.dump(reports, f, indent=2)


if __name__ == "__main__":
    main()
