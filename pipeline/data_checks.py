"""Checks the CSV input before the pipeline starts, so bad files fail fast with the file, line and column.

ExampleValidator (inside the pipeline) judges the data against the schema; these checks catch what would
otherwise surface as an obscure error deep inside ExampleGen or Transform: no files, empty files, a
missing column, text in a numeric column, bytes that are not UTF-8.
"""
import csv
import os
from typing import Iterable, List, Sequence

from models import features

MAX_REPORTED_PROBLEMS = 5


class InputDataError(ValueError):
    """The input CSV files cannot be used; the message says which file, column and what to do."""


def _data_files(data_root: str) -> List[str]:
    if not os.path.exists(data_root):
        raise InputDataError(
            f"Data directory {data_root} does not exist. Pass --data-root with a directory of CSV "
            "files that have a header row.")
    if not os.path.isdir(data_root):
        raise InputDataError(
            f"--data-root must be a directory of CSV files, but {data_root} is a file. Pass its "
            f"directory instead: --data-root {os.path.dirname(data_root) or '.'}")
    # CsvExampleGen reads every file in the directory, so every file is checked.
    files = sorted(os.path.join(data_root, name) for name in os.listdir(data_root)
                   if not name.startswith(".") and os.path.isfile(os.path.join(data_root, name)))
    if not files:
        raise InputDataError(
            f"Data directory {data_root} has no files. Put one or more CSV files with a header row "
            "in it.")
    return files


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def check_csv_file(path: str, required_columns: Sequence[str] = features.REQUIRED_TRAINING_COLUMNS,
                   numeric_columns: Iterable[str] = features.NUMERIC_COLUMNS) -> int:
    """Returns the file's number of data rows; raises InputDataError on the first unusable file."""
    problems: List[str] = []
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
                    f"{path} is missing required column(s): {', '.join(missing)}. Add them to the "
                    f"header (values may be empty where unknown). Columns found: {', '.join(header)}.")
            numeric = [(header.index(c), c) for c in numeric_columns if c in header]
            for rows, row in enumerate(reader, start=1):
                for index, column in numeric:
                    value = row[index].strip() if index < len(row) else ""
                    if value and not _is_number(value):
                        problems.append(f"line {reader.line_num}, column '{column}': {value!r} is "
                                        "not a number")
                if len(problems) > MAX_REPORTED_PROBLEMS:
                    break
    except UnicodeDecodeError as e:
        raise InputDataError(
            f"{path} is not UTF-8 text (byte {e.start}: {e.reason}). Re-save it as UTF-8 CSV.") from e
    if problems:
        shown = "\n  - ".join(problems[:MAX_REPORTED_PROBLEMS])
        more = " (and more)" if len(problems) > MAX_REPORTED_PROBLEMS else ""
        raise InputDataError(
            f"{path} has text in numeric columns{more}:\n  - {shown}\nFix the values, or leave the "
            "cell empty where the value is unknown (empty cells are imputed).")
    if rows == 0:
        raise InputDataError(
            f"{path} has a header but no data rows. Add rows or remove the file.")
    return rows


def check_data_root(data_root: str) -> int:
    """Checks every file under `data_root`; returns the total number of data rows."""
    return sum(check_csv_file(path) for path in _data_files(data_root))
