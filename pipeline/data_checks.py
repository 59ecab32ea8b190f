"""Checks the CSV input before the pipeline starts, so bad files fail fast with the file, line and column.

ExampleValidator (inside the pipeline) judges the data against the schema; these checks catch what would
otherwise surface as an obscure error deep inside ExampleGen or Transform: no files, empty files, a
missing column, rows with the wrong number of fields, text or NaN/inf in a numeric column, bytes that
are not UTF-8.
"""
import csv
import dataclasses
import math
import os
from typing import Iterable, List, Optional, Sequence

from models.spec import DatasetSpec
from models.tasks import label_string
from pipeline import spans

MAX_REPORTED_PROBLEMS = 5


class InputDataError(ValueError):
    """The input CSV files cannot be used; the message says which file, column and what to do."""


@dataclasses.dataclass
class DataCheck:
    rows: int
    warnings: List[str]
    # For a span-versioned data root: the span this run reads, and its directory.
    span: Optional[int] = None
    span_dir: Optional[str] = None


def _check_directory(data_root: str) -> None:
    if not os.path.exists(data_root):
        raise InputDataError(
            f"Data directory {data_root} does not exist. Pass --data-root with a directory of CSV "
            "files that have a header row.")
    if not os.path.isdir(data_root):
        raise InputDataError(
            f"--data-root must be a directory of CSV files, but {data_root} is a file. Pass its "
            f"directory instead: --data-root {os.path.dirname(data_root) or '.'}")


def _data_files(data_root: str) -> List[str]:
    # CsvExampleGen reads every file in the directory, so every file is checked.
    files = sorted(os.path.join(data_root, name) for name in os.listdir(data_root)
                   if not name.startswith(".") and os.path.isfile(os.path.join(data_root, name)))
    if not files:
        raise InputDataError(
            f"Data directory {data_root} has no files. Put one or more CSV files with a header row "
            "in it.")
    return files


def _is_finite_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def check_csv_file(path: str, spec: DatasetSpec) -> DataCheck:
    """Counts the file's data rows and warns of unknown columns; raises InputDataError if unusable."""
    required_columns: Sequence[str] = spec.required_columns
    numeric_columns: Iterable[str] = spec.numeric_columns
    known_columns: Iterable[str] = spec.known_columns
    problems: List[str] = []
    warnings: List[str] = []
    rows = 0
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise InputDataError(
                    f"{path} is empty. Each CSV file needs a header row and at least one data row; "
                    "remove the file or fill it.")
            header = [h.strip() for h in header]
            missing = [c for c in required_columns if c not in header]
            if missing:
                raise InputDataError(
                    f"{path} is missing required column(s): {', '.join(missing)} (declared in "
                    f"{spec.spec_path}). Add them to the header (values may be empty where unknown), "
                    f"or fix the spec. Columns found: {', '.join(header)}.")
            unknown = [c for c in header if c not in set(known_columns)]
            if unknown:
                warnings.append(f"{path}: column(s) {', '.join(unknown)} are not used by the model "
                                "and are ignored.")
            numeric = [(header.index(c), c) for c in numeric_columns if c in header]
            label = header.index(spec.label.column) if spec.label.column else None
            for rows, row in enumerate(reader, start=1):
                if len(row) != len(header):
                    problems.append(
                        f"line {reader.line_num}: {len(row)} fields where the header has "
                        f"{len(header)} (an unbalanced quote or a stray comma?)")
                    continue
                if label is not None and not row[label].strip():
                    problems.append(f"line {reader.line_num}, column '{spec.label.column}': the label "
                                    "is empty (a row without a label cannot be trained on; drop it)")
                elif label is not None and not spec.task.is_known_label(label_string(row[label])):
                    problems.append(
                        f"line {reader.line_num}, column '{spec.label.column}': label "
                        f"{row[label].strip()!r} is not one of the spec's classes "
                        f"({', '.join(spec.task.label_values)}); drop the row, or add the class to "
                        f"{spec.spec_path} (a new class needs a new model)")
                for index, column in numeric:
                    value = row[index].strip()
                    if value and not _is_finite_number(value):
                        problems.append(f"line {reader.line_num}, column '{column}': {value!r} is "
                                        "not a finite number")
                if len(problems) > MAX_REPORTED_PROBLEMS:
                    break
    except UnicodeDecodeError as e:
        raise InputDataError(
            f"{path} is not UTF-8 text (byte {e.start}: {e.reason}). Re-save it as UTF-8 CSV.") from e
    if problems:
        shown = "\n  - ".join(problems[:MAX_REPORTED_PROBLEMS])
        more = " (and more)" if len(problems) > MAX_REPORTED_PROBLEMS else ""
        raise InputDataError(
            f"{path} has malformed rows or values{more}:\n  - {shown}\nFix the rows; where a value "
            "is unknown, leave the cell empty (empty cells are imputed; NaN and inf are not allowed).")
    if rows == 0:
        raise InputDataError(
            f"{path} has a header but no data rows. Add rows or remove the file.")
    return DataCheck(rows=rows, warnings=warnings)


def check_data_root(data_root: str, spec: DatasetSpec) -> DataCheck:
    """Checks every file ExampleGen will read: those in `data_root`, or, when it holds span-<N>/
    directories, those of the newest span (older spans were checked when their run read them)."""
    _check_directory(data_root)
    try:
        span_dirs = spans.span_dirs(data_root)
    except spans.SpanLayoutError as e:
        raise InputDataError(str(e)) from e
    span = max(span_dirs) if span_dirs else None
    read_dir = span_dirs[span] if span_dirs else data_root
    checks = [check_csv_file(path, spec) for path in _data_files(read_dir)]
    return DataCheck(rows=sum(c.rows for c in checks), warnings=[w for c in checks for w in c.warnings],
                     span=span, span_dir=read_dir if span_dirs else None)
