"""Span-versioned input: a data root of `span-<N>/` directories, one per data delivery (a day, a week).

    data_root/span-1/*.csv   data_root/span-2/*.csv   ...

ExampleGen reads the newest span each run (TFX's `{SPAN}` pattern with a one-span RollingRange; TFX
1.16's ExampleGen reads one span per run). Older spans enter training through the span window
(components/span_window.py), from what earlier runs ingested.
"""
import os
from typing import Dict

from tfx.proto import example_gen_pb2, range_config_pb2

SPAN_DIR_PREFIX = "span-"
SPAN_PATTERN = SPAN_DIR_PREFIX + "{SPAN}/*"


class SpanLayoutError(ValueError):
    """The data root mixes span directories with other entries, or a span directory is misnamed."""


def span_dirs(data_root: str) -> Dict[int, str]:
    """Span number -> directory; empty when `data_root` is a plain directory of CSV files."""
    spans: Dict[int, str] = {}
    others = []
    for name in sorted(os.listdir(data_root)):
        path = os.path.join(data_root, name)
        if name.startswith("."):
            continue
        if not name.startswith(SPAN_DIR_PREFIX):
            others.append(path)
            continue
        number = name[len(SPAN_DIR_PREFIX):]
        if not number.isdigit() or not os.path.isdir(path):
            raise SpanLayoutError(
                f"{path} is not a span directory: spans are directories named span-<number> "
                "(span-1, span-2, ...). Rename it, or move it out of the data root.")
        if int(number) in spans:
            raise SpanLayoutError(
                f"{spans[int(number)]} and {path} are both span {int(number)}. Keep one of them.")
        spans[int(number)] = path
    if spans and others:
        raise SpanLayoutError(
            f"{data_root} mixes span directories ({', '.join(os.path.basename(p) for p in spans.values())})"
            f" with other entries ({', '.join(others[:3])}). Only span-<N>/ directories are read: move "
            "the other files into a span directory or out of the data root.")
    return spans


def is_span_versioned(data_root: str) -> bool:
    return os.path.isdir(data_root) and bool(span_dirs(data_root))


def newest_span_input() -> example_gen_pb2.Input:
    """ExampleGen's input: every file of a span directory (with `newest_span_range`)."""
    return example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="single_split", pattern=SPAN_PATTERN)])


def newest_span_range() -> range_config_pb2.RangeConfig:
    return range_config_pb2.RangeConfig(rolling_range=range_config_pb2.RollingRange(num_spans=1))
