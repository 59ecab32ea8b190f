"""Writes N taxi rows for scale benchmarks by replicating and slightly perturbing the real taxi sample.

    .venv/bin/python bench/generate_taxi_data.py --rows 1500000 --output /tmp/taxi_1.5m [--files 8] [--seed 0]

Every output row is a real row of the source CSV (the taxi sample inside tfx by default) with its numbers
jittered: fare, tips and trip_miles scaled by one shared factor in [0.98, 1.02] (so the "big tipper" label
stays what it was), trip_seconds by its own factor, and trip_start_timestamp moved within its hour (so
trip_start_hour/day/month still agree with it). Jittered values are capped at the source's maximum, and
categorical, location and census columns are copied unchanged, so the data passes the curated schema
(schemas/taxi/schema.pbtxt) and the drift check like the source does. Deterministic for a given seed; the rows
are split over several files so ExampleGen can read them in parallel.
"""
import argparse
import csv
import os
import sys
import time

import numpy as np

# The taxi sample that ships inside the tfx wheel (see pipeline.config.default_data_root).
SOURCE_RELATIVE = os.path.join("examples", "chicago_taxi_pipeline", "data", "simple", "data.csv")
MONEY_COLUMNS = ("fare", "tips")  # one factor for both: the tip fraction, hence the label, is kept
JITTER = 0.02
CHUNK_ROWS = 50_000


def default_source() -> str:
    import importlib.util  # pylint: disable=import-outside-toplevel

    # The package's location without importing it (importing tfx costs seconds).
    return os.path.join(os.path.dirname(importlib.util.find_spec("tfx").origin), SOURCE_RELATIVE)


def read_source(path: str):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    if not rows:
        sys.exit(f"{path} has no data rows; pass --source with a taxi CSV that has a header and rows.")
    missing = [c for c in (*MONEY_COLUMNS, "trip_miles", "trip_seconds", "trip_start_timestamp")
               if c not in header]
    if missing:
        sys.exit(f"{path} lacks column(s) {', '.join(missing)}; pass --source with the taxi columns.")
    return header, rows


class _Column:
    """One numeric column of the source: its values (NaN where empty), index and cap."""

    def __init__(self, header, rows, name):
        self.index = header.index(name)
        self.values = np.array([float(r[self.index]) if r[self.index] else np.nan for r in rows])
        self.cap = np.nanmax(self.values)


def perturbed_rows(header, rows, count: int, seed: int):
    """Yields lists of `count` rows in chunks; row i is a jittered copy of source row i mod len(rows)."""
    rng = np.random.default_rng(seed)
    money = [_Column(header, rows, name) for name in MONEY_COLUMNS]
    miles = _Column(header, rows, "trip_miles")
    seconds = _Column(header, rows, "trip_seconds")
    timestamp = _Column(header, rows, "trip_start_timestamp")
    for start in range(0, count, CHUNK_ROWS):
        source = np.arange(start, min(start + CHUNK_ROWS, count)) % len(rows)
        n = len(source)
        # Formatted as text up front: numpy's vectorised formatting is much faster than per cell.
        money_factor = rng.uniform(1 - JITTER, 1 + JITTER, n)
        updates = [(c.index, _money_text(np.minimum(c.values[source] * money_factor, c.cap)))
                   for c in money]
        updates.append((miles.index, _money_text(
            np.minimum(miles.values[source] * rng.uniform(1 - JITTER, 1 + JITTER, n), miles.cap))))
        updates.append((seconds.index, _int_text(np.minimum(
            np.round(seconds.values[source] * rng.uniform(1 - JITTER, 1 + JITTER, n)), seconds.cap))))
        # Within the same hour: Chicago's offset from UTC is whole hours, so hour, day and month hold.
        ts = timestamp.values[source]
        moved = ts - ts % 3600 + (ts % 3600 + rng.integers(-600, 601, n)) % 3600
        updates.append((timestamp.index, _int_text(moved)))
        chunk = [list(rows[s]) for s in source]
        for index, texts in updates:
            for row, text in zip(chunk, texts):
                if row[index]:  # empty stays empty ("missing")
                    row[index] = text
        yield chunk


def _money_text(values):
    return np.char.mod("%.2f", np.nan_to_num(values)).tolist()


def _int_text(values):
    return np.char.mod("%d", np.nan_to_num(values).astype(np.int64)).tolist()


def write(output: str, header, chunks, count: int, files: int):
    """Writes the rows to `files` CSV files of near-equal size, each with the header."""
    os.makedirs(output, exist_ok=True)
    stale = [n for n in os.listdir(output) if n.endswith(".csv")]
    if stale:
        sys.exit(f"{output} already has CSV files ({stale[0]}, ...); CsvExampleGen would read them too. "
                 "Pass an empty or new --output directory.")
    per_file = -(-count // files)
    paths, handle, writer, in_file = [], None, None, per_file
    for chunk in chunks:
        while chunk:
            if in_file == per_file:
                if handle:
                    handle.close()
                paths.append(os.path.join(output, f"taxi-{len(paths):05d}-of-{files:05d}.csv"))
                handle = open(paths[-1], "w", newline="", encoding="utf-8")
                writer = csv.writer(handle)
                writer.writerow(header)
                in_file = 0
            take = min(len(chunk), per_file - in_file)
            writer.writerows(chunk[:take])
            chunk, in_file = chunk[take:], in_file + take
    if handle:
        handle.close()
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True, help="how many data rows to write")
    parser.add_argument("--output", required=True, help="a new or empty directory")
    parser.add_argument("--files", type=int, default=8, help="number of CSV files (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", default=None, help="taxi CSV to replicate (default: tfx's sample)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.files < 1:
        parser.error("--rows and --files must be positive")
    started = time.time()
    header, rows = read_source(args.source or default_source())
    files = min(args.files, args.rows)
    paths = write(args.output, header, perturbed_rows(header, rows, args.rows, args.seed), args.rows,
                  files)
    print(f"Wrote {args.rows:,} rows to {len(paths)} files in {args.output} "
          f"in {time.time() - started:.1f} s")
    return paths


if __name__ == "__main__":
    main()
