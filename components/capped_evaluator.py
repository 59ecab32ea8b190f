"""TFX's Evaluator with a cap on the examples it scores: `max_examples` (0: no cap).

TFMA scores every example of the eval split, and its time grows with it (measured here: 320 s for the
300k eval rows of a 1.5M-row run, README "Scale"); the metrics and the gate's verdict settle long before.
When the split holds more, the Evaluator scores a sample: the `max_examples` rows with the smallest
sha256 of their serialized tf.Example, so the same row is in or out of the sample in every run, and
the candidate and its baseline are judged on the same rows. The sample is written to the executor's
temporary directory (one streaming pass over the split; memory: at most twice the sample's rows) and
TFX's executor evaluates it. The evaluation artifact records how many examples were scored of how many
(`EVALUATED_KEY`, `SPLIT_EXAMPLES_KEY`), which the run summary states when the cap applied.
TFMA reads the examples `batch_size` rows at a time (components/batch_size.py; 0: tfx_bsl's adaptive
batches), with the extractors of components/tfma_extractors.py. Given the curated schema
(`curated_schema`, not TFX's `schema`, which would make TFX hand TFMA tensors of the schema's
types), it decodes only the features the Evaluator reads when its extractors cut the rest
(`decoded_features`): tfx_bsl decoded all 18 of a taxi example, 1.8 s of a 100k-row sample's
evaluation (README "Scale").
"""
import hashlib
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as keys
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, json_utils, proto_utils

from components import tfma_extractors
from components.batch_size import BATCH_SIZE_KEY, tfxio_batch_size

CURATED_SCHEMA_KEY = "curated_schema"
MAX_EXAMPLES_KEY = "max_examples"
CODE_KEY = "code_sha256"
EVALUATED_KEY = "evaluated_examples"  # custom properties of the evaluation artifact
SPLIT_EXAMPLES_KEY = "split_examples"
_READ_BATCH = 4096


class CappedEvaluatorSpec(keys.EvaluatorSpec):
    INPUTS = {**keys.EvaluatorSpec.INPUTS,
              CURATED_SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema, optional=True)}
    PARAMETERS = {**keys.EvaluatorSpec.PARAMETERS,
                  MAX_EXAMPLES_KEY: ExecutionParameter(type=int, optional=True),
                  BATCH_SIZE_KEY: ExecutionParameter(type=int, optional=True),
                  # Keys TFX's cache on this code (components/fingerprints.py).
                  CODE_KEY: ExecutionParameter(type=str, optional=True)}


def _split_batches(split_uri: str) -> Iterator[np.ndarray]:
    """The split's serialized examples, file by file, a batch at a time."""
    for path in sorted(fileio.glob(os.path.join(split_uri, "*"))):
        dataset = tf.data.TFRecordDataset(path, "GZIP" if path.endswith(".gz") else "")
        yield from dataset.batch(_READ_BATCH).as_numpy_iterator()


def _keys(records: np.ndarray) -> np.ndarray:
    """Each record's sample key: the first 8 bytes of its sha256, as a number."""
    return np.frombuffer(b"".join(hashlib.sha256(r).digest()[:8] for r in records),
                         ">u8").astype(np.uint64)


def sample_split(split_uri: str, output_uri: str, max_examples: int) -> Tuple[int, int]:
    """Writes to `output_uri` the split's `max_examples` rows of smallest sample key (equal keys:
    equal rows, the earlier first), in the split's order, if it has more; returns (rows written,
    rows in the split); (rows, rows) without writing anything otherwise.

    One pass: the rows that can still make the sample are kept, pruned back to `max_examples`
    whenever they reach twice that (memory: at most 2 x max_examples rows, whatever the split's size).
    """
    chunks: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (keys, positions, records)
    kept, threshold, rows = 0, None, 0  # threshold: the sample's largest key so far, once full

    def smallest() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        keys_, positions, records = (np.concatenate(column) for column in zip(*chunks))
        order = np.lexsort((positions, keys_))[:max_examples]
        return keys_[order], positions[order], records[order]

    for batch in _split_batches(split_uri):
        keys_, positions = _keys(batch), np.arange(rows, rows + len(batch))
        rows += len(batch)
        if threshold is not None:
            candidate = keys_ <= threshold
            keys_, positions, batch = keys_[candidate], positions[candidate], batch[candidate]
        chunks.append((keys_, positions, batch.astype(object)))
        kept += len(keys_)
        if kept >= 2 * max_examples:
            chunks = [smallest()]
            kept, threshold = max_examples, chunks[0][0][-1]
    if rows <= max_examples:
        return rows, rows
    _, positions, records = smallest()
    fileio.makedirs(output_uri)
    # Uncompressed: a temporary file, read once, by the Evaluator alone.
    with tf.io.TFRecordWriter(os.path.join(output_uri, "data_tfrecord-00000-of-00001")) as writer:
        for record in records[np.argsort(positions)]:
            writer.write(record)
    return max_examples, rows


def decoded_features(schema: schema_pb2.Schema,
                     eval_config: tfma.EvalConfig) -> Optional[schema_pb2.Schema]:
    """The schema's features the Evaluator reads: the slicing features, labels and example weights,
    when its extractors cut the others (components/tfma_extractors.py); None (all) otherwise, or
    when it reads none of them (a source decodes at least one feature)."""
    if not tfma_extractors.metrics_read_only_default_inputs(eval_config):
        return None
    read = set(tfma_extractors.slicing_features(eval_config))
    for spec in eval_config.model_specs:
        read |= {spec.label_key, spec.example_weight_key, *spec.label_keys.values(),
                 *spec.example_weight_keys.values()}
    decoded = schema_pb2.Schema()
    decoded.feature.extend(f for f in schema.feature if f.name in read)
    return decoded if decoded.feature else None


def _copy_split(split_uri: str, output_uri: str) -> None:
    fileio.makedirs(output_uri)
    for path in fileio.glob(os.path.join(split_uri, "*")):
        fileio.copy(path, os.path.join(output_uri, os.path.basename(path)))


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor on a sample of at most `max_examples` rows per evaluated split, read
    `batch_size` rows at a time."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        exec_properties, input_dict = dict(exec_properties), dict(input_dict)
        decode_only = None
        if input_dict.get(CURATED_SCHEMA_KEY):
            decode_only = decoded_features(
                io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(
                    artifact_utils.get_single_uri(input_dict[CURATED_SCHEMA_KEY]))),
                proto_utils.json_to_proto(exec_properties[keys.EVAL_CONFIG_KEY], tfma.EvalConfig()))
        input_dict.pop(CURATED_SCHEMA_KEY, None)
        with tfxio_batch_size(exec_properties.pop(BATCH_SIZE_KEY, None) or 0, decode_only):
            self._evaluate(input_dict, output_dict, exec_properties)

    def _evaluate(self, input_dict: Dict[str, List[types.Artifact]],
                  output_dict: Dict[str, List[types.Artifact]],
                  exec_properties: Dict[str, Any]) -> None:
        max_examples = exec_properties.pop(MAX_EXAMPLES_KEY, None) or 0
        exec_properties.pop(CODE_KEY, None)
        # TFX's executor imports `custom_extractors` from this module.
        exec_properties[keys.MODULE_PATH_KEY] = tfma_extractors.__name__
        if not max_examples:
            super().Do(input_dict, output_dict, exec_properties)
            return
        examples = artifact_utils.get_single_instance(input_dict[keys.EXAMPLES_KEY])
        splits = json_utils.loads(exec_properties.get(keys.EXAMPLE_SPLITS_KEY) or "null") or ["eval"]
        sample = standard_artifacts.Examples()
        sample.uri = os.path.join(self._get_tmp_dir(), "capped_examples")
        # Split names, payload and file format: key by key (a map's MergeFrom across the
        # artifacts' protobuf implementations aborts the process).
        for field in ("properties", "custom_properties"):
            for name, value in getattr(examples.mlmd_artifact, field).items():
                getattr(sample.mlmd_artifact, field)[name].CopyFrom(value)
        counts = {}  # split -> (rows evaluated, rows in the split)
        for split in splits:
            counts[split] = sample_split(artifact_utils.get_split_uri([examples], split),
                                         artifact_utils.get_split_uri([sample], split), max_examples)
        if all(evaluated == rows for evaluated, rows in counts.values()):
            super().Do(input_dict, output_dict, exec_properties)  # under the cap: the splits as they are
        else:
            for split, (evaluated, rows) in counts.items():
                if evaluated == rows:  # this split under the cap: all of it, beside the others' samples
                    _copy_split(artifact_utils.get_split_uri([examples], split),
                                artifact_utils.get_split_uri([sample], split))
            try:
                super().Do({**input_dict, keys.EXAMPLES_KEY: [sample]}, output_dict, exec_properties)
            finally:
                fileio.rmtree(sample.uri)
        evaluation = artifact_utils.get_single_instance(output_dict[keys.EVALUATION_KEY])
        evaluation.set_int_custom_property(EVALUATED_KEY, sum(e for e, _ in counts.values()))
        evaluation.set_int_custom_property(SPLIT_EXAMPLES_KEY, sum(r for _, r in counts.values()))


class CappedEvaluator(base_component.BaseComponent):
    """The subset of TFX Evaluator's arguments this project uses, plus `max_examples` and
    `batch_size`."""

    SPEC_CLASS = CappedEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 baseline_model: types.BaseChannel, eval_config, max_examples: int = 0,
                 batch_size: int = 0, curated_schema: Optional[types.BaseChannel] = None,
                 code_sha256: Optional[str] = None):
        super().__init__(spec=CappedEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model,
            curated_schema=curated_schema,
            eval_config=eval_config, example_splits=json_utils.dumps(None),
            fairness_indicator_thresholds=json_utils.dumps(None),
            max_examples=max_examples, batch_size=batch_size, code_sha256=code_sha256,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing)))
