"""Raw CSV rows to serialized tf.Examples, typed by the curated schema: what a serving client sends."""
from typing import Dict, Iterable, List, Mapping, Optional

import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.utils import io_utils


def column_types(schema_path: str, environment: Optional[str] = None) -> Dict[str, int]:
    """Column name -> schema_pb2 type (INT, FLOAT, BYTES), optionally only those in `environment`."""
    schema = io_utils.SchemaReader().read(schema_path)
    return {f.name: f.type for f in schema.feature
            if environment is None or environment not in f.not_in_environment}


def to_tf_example(row: Mapping[str, str], types: Mapping[str, int]) -> bytes:
    """One CSV row (strings) to a serialized tf.Example; empty cells are left out, as missing."""
    feature = {}
    for name, kind in types.items():
        value = row.get(name)
        if value is None or value == "":
            continue
        if kind == schema_pb2.INT:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(float(value))]))
        elif kind == schema_pb2.FLOAT:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
        else:
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def to_tf_examples(rows: Iterable[Mapping[str, str]], types: Mapping[str, int]) -> List[bytes]:
    return [to_tf_example(row, types) for row in rows]
