"""The curated TFDV schema `init` writes beside a new dataset spec.

TFDV infers it from statistics of the CSV files (the same CSV reading CsvExampleGen does); init then
curates it the way a reviewer would: the columns the model reads must be present in every row
(CsvExampleGen writes an empty cell as a present, empty feature), at most one value each; numeric
ranges with headroom, category ranges exact; a small tolerated share of unseen categories; drift
thresholds against the previous data; and a SERVING environment without the label's columns.
"""
import os
import tempfile
from typing import Dict

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2

SERVING = "SERVING"
HEADROOM = 0.5  # numeric ranges: the seen range widened by half of it on each side
DRIFT_L_INFINITY = 0.25  # categorical drift: largest change of one value's share
DRIFT_JENSEN_SHANNON = 0.25  # numeric drift, on quantile histograms (equal-width ones are noisy)


def curated_schema(data_root: str, mapping: dict, columns: Dict) -> schema_pb2.Schema:
    # TFDV writes the statistics to a file too: without a path, to a directory it leaves in /tmp.
    with tempfile.TemporaryDirectory(prefix="init_statistics_") as temp:
        statistics = tfdv.generate_statistics_from_csv(
            os.path.join(data_root, "*"), output_path=os.path.join(temp, "data_stats.tfrecord"))
    schema = tfdv.infer_schema(statistics, infer_feature_shape=False)
    features = mapping["features"]
    label = mapping["label"]["column"]
    kind_of = {}
    for name, feature in features.items():
        for column in ([feature["latitude"], feature["longitude"]]
                       if feature["kind"] == "coordinates" else [name]):
            kind_of[column] = feature
    schema.default_environment[:] = ["TRAINING", SERVING]
    for f in schema.feature:
        if f.name in mapping["ignored"]:
            # Kept for statistics and lineage, unconstrained: the model does not read it.
            for field in ("presence", "value_count", "distribution_constraints"):
                f.ClearField(field)
            continue
        f.presence.min_fraction, f.presence.min_count = 1.0, 1
        f.value_count.min = 0 if columns[f.name].missing_share else 1
        f.value_count.max = 1
        if f.name == label:
            f.not_in_environment.append(SERVING)
            continue
        feature = kind_of.get(f.name)
        if feature is None:
            continue
        if feature["kind"] == "categorical":
            if f.HasField("domain") or f.HasField("string_domain"):
                many = columns[f.name].distinct > 20
                f.distribution_constraints.min_domain_mass = 0.9 if many else 0.99
            f.drift_comparator.infinity_norm.threshold = DRIFT_L_INFINITY
        elif feature["kind"] == "categorical_int":
            _set_range(f, feature["min"], feature["max"])
        else:
            numbers = columns[f.name].numbers
            low, high = float(numbers.min()), float(numbers.max())
            margin = (high - low) * HEADROOM
            _set_range(f, max(0.0, low - margin) if low >= 0 else low - margin, high + margin)
            if feature["kind"] == "numeric":
                comparator = f.drift_comparator.jensen_shannon_divergence
                comparator.threshold = DRIFT_JENSEN_SHANNON
                comparator.source.type = schema_pb2.HistogramSelection.QUANTILES
    return schema


def _set_range(feature: schema_pb2.Feature, low: float, high: float) -> None:
    if feature.type == schema_pb2.INT:
        feature.int_domain.min, feature.int_domain.max = int(low), int(round(high + 0.499))
    else:
        feature.float_domain.min, feature.float_domain.max = float(low), float(high)


def write(schema: schema_pb2.Schema, path: str, mapping: dict) -> None:
    tfdv.write_schema_text(schema, path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    header = (f"# Curated TFDV schema for {mapping['name']}, written by `python -m pipeline init` "
              "beside dataset.yaml.\n# Required columns, ranges with headroom, tolerated unseen "
              "categories, drift thresholds, and a\n# SERVING environment without the label: "
              "review and edit by hand (README, \"Your own data\").\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write(header + text)
