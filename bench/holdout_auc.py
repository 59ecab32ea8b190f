"""Held-out quality: train the pipeline on 80% of the taxi rows, score the other 20% with the pushed model.

    .venv/bin/python bench/holdout_auc.py [--seed 0] [--reference]

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

import models  # noqa: E402,F401
from models import features  # noqa: E402
from models.raw_examples import column_types, to_tf_examples  # noqa: E402
from pipeline.config import DEFAULT_SCHEMA_PATH, default_data_root  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def split_rows(seed: int, holdout_fraction: float = 0.2):
    with open(os.path.join(default_data_root(), "data.csv"), newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fieldnames, rows = reader.fieldnames, list(reader)
    random.Random(seed).shuffle(rows)
    cut = int(len(rows) * holdout_fraction)
    return fieldnames, rows[cut:], rows[:cut]


def label(row) -> int:
    return int(float(row["tips"]) > features.BIG_TIP_FRACTION * float(row["fare"]))


def score_pushed_model(serving_dir: str, rows) -> np.ndarray:
    model_dir = os.path.join(serving_dir, "big_tipper")
    version = max(os.listdir(model_dir), key=int)
    serve = tf.saved_model.load(os.path.join(model_dir, version)).signatures["serving_default"]
    examples = to_tf_examples(rows, column_types(DEFAULT_SCHEMA_PATH, "SERVING"))
    return np.concatenate([
        serve(examples=tf.constant(examples[i:i + 1024]))["big_tipper_probability"].numpy()
        for i in range(0, len(examples), 1024)])


def reference_auc(train_rows, holdout_rows) -> float:
    """scikit-learn gradient boosting on the same raw columns (one-hot strings, NaN as -1)."""
    import pandas as pd  # pylint: disable=import-outside-toplevel
    from sklearn.ensemble import HistGradientBoostingClassifier  # pylint: disable=import-outside-toplevel

    columns = list(features.SERVING_COLUMNS)
    frame = pd.DataFrame(train_rows + holdout_rows)[columns]
    for c in columns:
        frame[c] = (frame[c].astype("category").cat.codes if c in features.VOCAB_FEATURES
                    else pd.to_numeric(frame[c], errors="coerce"))
    x_train, x_test = frame.iloc[:len(train_rows)], frame.iloc[len(train_rows):]
    categorical = [c in features.VOCAB_FEATURES for c in columns]
    model = HistGradientBoostingClassifier(categorical_features=categorical, random_state=0)
    model.fit(x_train, [label(r) for r in train_rows])
    return float(roc_auc_score([label(r) for r in holdout_rows], model.predict_proba(x_test)[:, 1]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", action="store_true")
    args = parser.parse_args()

    fieldnames, train_rows, holdout_rows = split_rows(args.seed)
    work = tempfile.mkdtemp(prefix="holdout_")
    os.makedirs(os.path.join(work, "data"))
    with open(os.path.join(work, "data", "train.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(train_rows)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--data-root", os.path.join(work, "data"),
         "--output-dir", os.path.join(work, "out"), "--serving-dir", os.path.join(work, "serving")],
        check=False)
    if result.returncode != 0 or not os.path.isdir(os.path.join(work, "serving", "big_tipper")):
        sys.exit(f"The pipeline did not push a model (exit {result.returncode}); see the output above.")

    labels = [label(r) for r in holdout_rows]
    auc = float(roc_auc_score(labels, score_pushed_model(os.path.join(work, "serving"), holdout_rows)))
    report = {"seed": args.seed, "train_rows": len(train_rows), "holdout_rows": len(holdout_rows),
              "holdout_positive_rate": float(np.mean(labels)), "pushed_model_auc": auc}
    if args.reference:
        report["sklearn_gradient_boosting_auc"] = reference_auc(train_rows, holdout_rows)
    print(json.dumps(report, indent=2))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"holdout_seed{args.seed}.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
