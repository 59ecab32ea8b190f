"""`python -m pipeline init`: a dataset spec and a curated schema inferred from a table, for review.

TFDV computes the statistics and infers the schema, with the same CSV type inference CsvExampleGen
uses; the decisions on top (the task, each column's kind, what to ignore, shared groups, the gate) are
made here from those statistics and a pass over the distinct values, and each is written with its
reason as a comment in `dataset.yaml`. Nothing is trained here.
"""
import dataclasses
import datetime
import math
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd
import yaml

from models import spec as spec_lib
from models import tasks as tasks_lib

TRUE_SPELLINGS = ("1", "true", "yes")  # a binary label's positive class when present (any case)
MAX_CLASSES = 20  # a label with more distinct non-numeric values is not guessed to be multiclass
MAX_MISSING_SHARE = 0.95  # columns missing more often than this are ignored
MAX_CATEGORICAL_INT_VALUES = 100  # integer columns with a small range are categories (hours, areas)
MAX_CATEGORICAL_INT_RANGE = 200
MAX_VOCABULARY = 1000  # the largest vocabulary; rarer values share OOV buckets
SHARE_OVERLAP = 0.8  # string columns whose values overlap this much share a vocabulary + embedding
LATITUDE = re.compile(r"^(.*?)[_ ]?(lat|latitude)$", re.IGNORECASE)
LONGITUDE = re.compile(r"^(.*?)[_ ]?(lon|lng|long|longitude)$", re.IGNORECASE)


class InitError(ValueError):
    """init cannot infer a spec; the message names the file or column and what to do."""


@dataclasses.dataclass
class Column:
    """What init learns of one column from a pass over its values (as CsvExampleGen reads them)."""
    name: str
    values: pd.Series  # the cells as strings; "" is missing

    def __post_init__(self):
        self.present = self.values[self.values != ""]
        numbers = pd.to_numeric(self.present, errors="coerce")
        self.numeric = bool(len(self.present)) and not numbers.isna().any()
        self.numbers = numbers if self.numeric else None
        self.integral = self.numeric and bool((numbers == numbers.round()).all())
        self.distinct = int(self.present.map(tasks_lib.label_string).nunique())

    @property
    def missing_share(self) -> float:
        return 1.0 - len(self.present) / max(1, len(self.values))


@dataclasses.dataclass
class Decision:
    column: str
    use: str  # label / feature kind / ignored
    reason: str


def read_table(data_root: str) -> pd.DataFrame:
    if not os.path.isdir(data_root):
        raise InitError(f"--data-root {data_root} is not a directory of CSV files")
    files = sorted(os.path.join(data_root, n) for n in os.listdir(data_root)
                   if not n.startswith(".") and os.path.isfile(os.path.join(data_root, n)))
    if not files:
        raise InitError(f"{data_root} has no files; put CSV files with a header row in it")
    frames = []
    for path in files:
        try:
            frames.append(pd.read_csv(path, dtype=str, keep_default_na=False))
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
            raise InitError(f"{path} is not a readable CSV file with a header row: {e}") from e
    columns = list(frames[0].columns)
    for path, frame in zip(files, frames):
        if list(frame.columns) != columns:
            raise InitError(f"{path} has columns {list(frame.columns)}, {files[0]} has {columns}; "
                            "every file of a data root needs the same header")
    return pd.concat(frames, ignore_index=True)


def infer_task(label: Column, task: Optional[str]) -> Tuple[str, str]:
    """The task and why."""
    if task is not None:
        return task, "given with --task"
    if label.distinct == 2:
        return "binary", "2 distinct values"
    if label.distinct < 2:
        raise InitError(f"label column {label.name!r} has {label.distinct} distinct value(s); "
                        "a model needs at least two classes or a number to predict")
    if label.numeric and not (label.integral and label.distinct <= MAX_CLASSES):
        return "regression", f"numbers with {label.distinct} distinct values"
    if label.distinct <= MAX_CLASSES:
        return "multiclass", f"{label.distinct} distinct values"
    raise InitError(f"label column {label.name!r} has {label.distinct} distinct non-numeric values; "
                    "pass --task multiclass to predict them all, or choose another label")


def positive_class(label: Column, given: Optional[str]) -> Tuple[str, str, str]:
    """(positive, negative, why) for a binary label."""
    counts = label.present.map(tasks_lib.label_string).value_counts()
    values = list(counts.index)
    if given is not None:
        matches = [v for v in values if v.lower() == str(given).lower()]
        if not matches:
            raise InitError(f"--positive-class {given!r} is not a value of {label.name!r} "
                            f"({', '.join(values)})")
        positive, why = matches[0], "given with --positive-class"
    else:
        spelled = [v for v in values if v.lower() in TRUE_SPELLINGS]
        if spelled:
            positive, why = spelled[0], f"{spelled[0]!r} means yes"
        else:
            positive = counts.index[-1]
            why = f"the minority class ({counts[positive] / counts.sum():.0%} of rows)"
    negative = next(v for v in values if v != positive)
    return positive, negative, why


def coordinate_pairs(columns: Sequence[Column]) -> Dict[str, Tuple[str, str]]:
    """Feature name -> (latitude, longitude) columns, paired by a common name prefix."""
    numeric = {c.name for c in columns if c.numeric}
    latitudes = {m.group(1): c for c in numeric if (m := LATITUDE.match(c))}
    pairs = {}
    for c in sorted(numeric):
        m = LONGITUDE.match(c)
        if m and m.group(1) in latitudes:
            name = m.group(1).rstrip("_ ") or "location"
            pairs[name] = (latitudes[m.group(1)], c)
    return pairs


def decide_feature(column: Column, rows: int) -> Tuple[Optional[dict], str]:
    """(the feature's spec mapping, or None to ignore it; the reason)."""
    if column.missing_share > MAX_MISSING_SHARE:
        return None, f"almost always missing ({column.missing_share:.0%} of rows)"
    if column.distinct == 1:
        return None, f"constant ({column.present.iloc[0]!r})"
    unique_per_row = column.distinct == len(column.present) and len(column.present) > 20
    if unique_per_row and (not column.numeric or column.integral):
        return None, "unique per row (an identifier)"
    missing = f", {column.missing_share:.0%} missing" if column.missing_share else ""
    if not column.numeric:
        top_k = min(column.distinct, MAX_VOCABULARY)
        oov = max(1, min(100, top_k // 10))
        more = " (the most frequent kept)" if column.distinct > MAX_VOCABULARY else ""
        return ({"kind": "categorical", "top_k": top_k, "oov_buckets": oov},
                f"strings, {column.distinct} distinct{more}{missing}")
    low, high = float(column.numbers.min()), float(column.numbers.max())
    if (column.integral and column.distinct <= MAX_CATEGORICAL_INT_VALUES
            and high - low <= MAX_CATEGORICAL_INT_RANGE):
        return ({"kind": "categorical_int", "min": int(low), "max": int(high)},
                f"whole numbers, {column.distinct} distinct in {int(low)}..{int(high)}{missing}")
    median = float(column.numbers.median())
    p99 = float(column.numbers.quantile(0.99))
    skewness = float(column.numbers.skew())
    skewed = low >= 0 and skewness > 2  # a long right tail of non-negative amounts: log1p first
    feature = {"kind": "numeric", "scale": "log" if skewed else "linear",
               "buckets": 20 if rows >= 10_000 else 10}
    shape = (f"heavy right tail (skewness {skewness:.1f}, p99 {p99:.3g} vs median {median:.3g})"
             if skewed else f"{low:.3g}..{high:.3g}")
    return feature, f"numbers, {shape}{missing}"


def shared_groups(columns: Dict[str, Column], features: Dict[str, dict]) -> Dict[str, str]:
    """Categorical string features whose values overlap strongly -> a share name."""
    names = [n for n, f in features.items() if f["kind"] == "categorical" and columns[n].distinct >= 3]
    sets = {n: set(columns[n].present.str.strip().value_counts().index[:MAX_VOCABULARY]) for n in names}
    share: Dict[str, str] = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            overlap = len(sets[a] & sets[b]) / min(len(sets[a]), len(sets[b]))
            if overlap >= SHARE_OVERLAP:
                group = share.get(a) or share.get(b) or _group_name(a, b)
                share[a] = share[b] = group
    return share


def _group_name(a: str, b: str) -> str:
    prefix = os.path.commonprefix([a, b]).rstrip("_")
    suffix = os.path.commonprefix([a[::-1], b[::-1]])[::-1].lstrip("_")
    return (suffix if len(suffix) >= len(prefix) else prefix) or f"{a}_{b}"


def infer(data_root: str, label: str, task: Optional[str] = None,
          positive: Optional[str] = None) -> Tuple[dict, Dict[str, Column], List[Decision]]:
    """The spec mapping (as dataset.yaml holds it), the columns and every decision with its reason."""
    table = read_table(data_root)
    if label not in table.columns:
        raise InitError(f"--label {label!r} is not a column of {data_root}; columns: "
                        f"{', '.join(table.columns)}")
    columns = {name: Column(name, table[name]) for name in table.columns}
    rows = len(table)
    decisions: List[Decision] = []

    label_column = columns[label]
    task, why = infer_task(label_column, task)
    label_spec: dict = {"column": label, "task": task}
    decisions.append(Decision(label, f"label ({task})", why))
    if task == "binary":
        positive, negative, why = positive_class(label_column, positive)
        label_spec.update(positive=positive, negative=negative)
        decisions.append(Decision(label, f"positive class {positive!r}", why))
    elif task == "multiclass":
        label_spec["classes"] = sorted(label_column.present.map(tasks_lib.label_string).unique())
    if label_column.missing_share:
        decisions.append(Decision(label, "warning", f"{len(label_column.values) - len(label_column.present)} "
                                  "rows have no label; the input checks refuse them: drop them"))

    others = [c for n, c in columns.items() if n != label]
    features: Dict[str, dict] = {}
    ignored: Dict[str, str] = {}
    paired = set()
    for name, (latitude, longitude) in coordinate_pairs(others).items():
        features[name] = {"kind": "coordinates", "latitude": latitude, "longitude": longitude,
                          "buckets": 10}
        paired |= {latitude, longitude}
        decisions.append(Decision(f"{latitude}, {longitude}", f"coordinates {name!r}",
                                  "a latitude/longitude pair by name"))
    if len([f for f in features.values() if f["kind"] == "coordinates"]) > 1:
        for f in features.values():
            f["share"] = "place"  # a grid cell means the same place in every pair
    for column in others:
        if column.name in paired:
            continue
        feature, why = decide_feature(column, rows)
        if feature is None:
            ignored[column.name] = why
        else:
            features[column.name] = feature
        decisions.append(Decision(column.name, feature["kind"] if feature else "ignored", why))
    for name, group in shared_groups(columns, features).items():
        features[name]["share"] = group
        decisions.append(Decision(name, f"shares {group!r}", "its values overlap another column's"))
    if not features:
        raise InitError(f"no column of {data_root} can be a feature (see the reasons above)")
    # A shared vocabulary has one size: the largest of its members'.
    for group in {f.get("share") for f in features.values() if f["kind"] == "categorical"} - {None}:
        members = [f for f in features.values() if f.get("share") == group]
        for key in ("top_k", "oov_buckets"):
            size = max(m[key] for m in members)
            for m in members:
                m[key] = size

    slices = [n for n, f in features.items()
              if f["kind"] in ("categorical", "categorical_int") and columns[n].distinct <= 12][:2]
    name = re.sub(r"[^A-Za-z0-9_-]", "_", os.path.basename(os.path.normpath(data_root))) or "dataset"
    mapping = {"name": name, "data_root": data_root, "label": label_spec, "features": features,
               "ignored": ignored, "slices": slices, "gate": _gate(task, label_column),
               # The defaults, written out so a reviewer sees (and can tune) them.
               "model": spec_lib.ModelSettings().to_mapping(),
               "training": dataclasses.asdict(spec_lib.TrainingSettings())}
    return mapping, columns, decisions


def _gate(task: str, label: Column) -> dict:
    """A first threshold a model must beat to be pushed at all: better than chance or a constant."""
    if task == "binary":
        return {"threshold": 0.6, "max_regression": 0.0}
    if task == "multiclass":  # better than always answering the most frequent class
        majority = label.present.value_counts(normalize=True).iloc[0]
        return {"threshold": round(min(0.99, math.ceil(majority * 100) / 100 + 0.05), 2),
                "max_regression": 0.0}
    # regression: a lower RMSE than always answering the mean (the label's standard deviation)
    return {"threshold": float(f"{label.numbers.std():.4g}"), "max_regression": 0.0}


def _flow(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False)
    return text.replace("\n...\n", "").strip()  # a lone scalar's document-end marker


def render(mapping: dict, decisions: Sequence[Decision], rows: int) -> str:
    """dataset.yaml's text: the mapping, with init's reason beside each decision."""
    why = {}
    for d in decisions:
        why.setdefault(d.column, d.reason)
    lines = [
        f"# Written by `python -m pipeline init` on {datetime.date.today()} from {rows:,} rows.",
        "# Review every decision (the comment says why init made it), then commit this directory.",
        f"name: {_flow(mapping['name'])}",
        f"data_root: {_flow(mapping['data_root'])}",
        "label:",
    ]
    label = mapping["label"]
    for key, value in label.items():
        comment = f"  # init: {why[label['column']]}" if key == "task" else ""
        lines.append(f"  {key}: {_flow(value)}{comment}")
    lines.append("features:")
    for name, feature in mapping["features"].items():
        reason = why.get(name) or why.get(f"{feature.get('latitude')}, {feature.get('longitude')}", "")
        lines.append(f"  {_flow(name)}: {_flow(feature)}  # init: {reason}")
    lines.append("ignored:" if mapping["ignored"] else "ignored: {}")
    for name, reason in mapping["ignored"].items():
        lines.append(f"  {_flow(name)}: {_flow(reason)}")
    lines.append(f"slices: {_flow(mapping['slices'])}")
    lines.append("gate:  # on the task's metric (binary AUC, multiclass accuracy, regression RMSE)")
    for key, value in mapping["gate"].items():
        lines.append(f"  {key}: {_flow(value)}")
    lines.append(f"model: {_flow(mapping['model'])}")
    lines.append(f"training: {_flow(mapping['training'])}  # epochs until the eval loss stops "
                 "improving, at most max_epochs")
    return "\n".join(lines) + "\n"


def write(spec_dir: str, data_root: str, label: str, task: Optional[str] = None,
          positive: Optional[str] = None, force: bool = False) -> Tuple[spec_lib.DatasetSpec, List[Decision]]:
    """Infers and writes `<spec_dir>/dataset.yaml` and `schema.pbtxt`; returns the loaded spec."""
    from pipeline import init_schema  # pylint: disable=import-outside-toplevel  (TFDV: slow import)

    spec_dir = os.path.abspath(spec_dir)
    targets = [os.path.join(spec_dir, f) for f in (spec_lib.SPEC_FILE, spec_lib.SCHEMA_FILE)]
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not force:
        raise InitError(f"{', '.join(existing)} already exist(s); pass --force to overwrite")
    if task is not None and task not in tasks_lib.TASKS:
        raise InitError(f"--task {task!r}: choose one of {', '.join(tasks_lib.TASKS)}")
    data_root = os.path.abspath(data_root)
    mapping, columns, decisions = infer(data_root, label, task, positive)
    relative = os.path.relpath(data_root, spec_dir)
    mapping["data_root"] = data_root if relative.startswith(os.pardir * 3) else relative
    mapping["name"] = re.sub(r"[^A-Za-z0-9_-]", "_", os.path.basename(spec_dir))
    schema = init_schema.curated_schema(data_root, mapping, columns)
    os.makedirs(spec_dir, exist_ok=True)
    with open(targets[0], "w", encoding="utf-8") as f:
        f.write(render(mapping, decisions, len(next(iter(columns.values())).values)))
    init_schema.write(schema, targets[1], mapping)
    return spec_lib.load(spec_dir), decisions
