"""Feature kinds: how one declared feature becomes model inputs, and how the model encodes them.

Each kind is one small class that owns
- the raw columns it reads and which of them must parse as numbers (the input checks),
- its tf.Transform preprocessing (`transform`), keyed by `<feature>_xf` names,
- the model inputs that preprocessing produces (`model_inputs`),
- and its encoder in the Functional model (`encode`).
A new kind is a new class registered in `KINDS`; nothing else names kinds.

Features with the same `share` name use one vocabulary (categorical strings) or one grid (coordinates)
and one embedding table: the model's shared layer (`models.layers.SharedEmbedding`).
"""
import dataclasses
import os
from typing import ClassVar, Dict, List, Mapping, Optional, Tuple

import tensorflow as tf
import tensorflow_transform as tft

from models import layers
from models.names import safe_name


def transformed_name(key: str) -> str:
    return f"{safe_name(key)}_xf"


def bucket_name(key: str) -> str:
    return f"{safe_name(key)}_bucket_xf"


def embedding_dim(num_ids: int) -> int:
    """A rule of thumb: about 0.8 * num_ids ** 0.56, rounded and clipped to [2, 16]."""
    return int(min(16, max(2, round(1.6 * num_ids ** 0.56 / 2))))


@dataclasses.dataclass(frozen=True)
class ModelInput:
    """One tensor the Transform graph emits and the model reads: float, int64 ids in [0, num_ids), or
    a string (free text the model encodes itself)."""
    name: str
    num_ids: Optional[int] = None  # None: a float value (or a string, with `text`)
    text: bool = False

    @property
    def dtype(self) -> tf.DType:
        if self.text:
            return tf.string
        return tf.float32 if self.num_ids is None else tf.int64


# --- tf.Transform helpers: CSV columns arrive as rank-2 SparseTensors (empty cells are missing) ----

def fill_missing(x, default, dtype=None):
    """A rank-2 SparseTensor (CSV columns may have empty cells) to a dense rank-1 tensor."""
    if not isinstance(x, tf.sparse.SparseTensor):
        return tf.reshape(x if dtype is None else tf.cast(x, dtype), [-1])
    values = x.values if dtype is None else tf.cast(x.values, dtype)
    dense = tf.sparse.to_dense(
        tf.SparseTensor(x.indices, values, [x.dense_shape[0], 1]), default_value=default)
    return tf.squeeze(dense, axis=1)


def is_present(x):
    if not isinstance(x, tf.sparse.SparseTensor):
        return tf.ones_like(tf.reshape(x, [-1]), dtype=tf.bool)
    ones = tf.SparseTensor(x.indices, tf.ones_like(x.values, dtype=tf.int64), [x.dense_shape[0], 1])
    return tf.squeeze(tf.sparse.to_dense(ones), axis=1) > 0


def float_with_mean_imputed(x):
    """Missing and non-finite values become the column's mean over the training data."""
    values = fill_missing(x, float("nan"), tf.float32)
    mean = tft.mean(tf.boolean_mask(values, tf.math.is_finite(values)))
    return tf.where(tf.math.is_finite(values), values, mean)


# What tf.strings.strip drops: ASCII whitespace at either end.
_SURROUNDING_WHITESPACE = r"^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$"


def strip_whitespace(x):
    """tf.strings.strip as a regex (the same result): TensorFlow.js has no StringStrip op, and the
    exported TF.js model runs the Transform graph (components/edge_formats.py)."""
    return tf.strings.regex_replace(x, _SURROUNDING_WHITESPACE, "")


def clean_strings(x):
    """Missing cells become "", surrounding whitespace is dropped (exports pad values)."""
    return strip_whitespace(fill_missing(x, ""))


class SharedState:
    """What features with one `share` name have in common inside one preprocessing_fn or model build."""

    def __init__(self, features=()):
        self._values: Dict[Tuple[str, str], object] = {}
        self._members: Dict[str, List[str]] = {}
        for feature in features:
            if feature.share is not None:
                self._members.setdefault(feature.share, []).append(feature.name)

    def members(self, share: str) -> List[str]:
        return self._members[share]

    def get(self, kind: str, share: str, make):
        key = (kind, share)
        if key not in self._values:
            self._values[key] = make()
        return self._values[key]


@dataclasses.dataclass(frozen=True)
class Kind:
    """Base of every feature kind; `name` is the feature's name in the spec."""
    name: str

    kind: ClassVar[str] = ""  # the spec's `kind:` value
    options: ClassVar[Tuple[str, ...]] = ()  # keys allowed beside `kind` in the spec
    column_options: ClassVar[Tuple[str, ...]] = ()  # options that name columns (may differ in a share)

    @property
    def columns(self) -> Tuple[str, ...]:
        return (self.name,)

    @property
    def numeric_columns(self) -> Tuple[str, ...]:
        """Columns whose cells must parse as numbers."""
        return ()

    @property
    def share(self) -> Optional[str]:
        return None

    def model_inputs(self) -> List[ModelInput]:
        raise NotImplementedError

    def transform(self, inputs: Mapping, shared: SharedState) -> Dict[str, tf.Tensor]:
        raise NotImplementedError

    def encode(self, inputs: Mapping[str, tf.Tensor], shared: SharedState, settings) -> List[tf.Tensor]:
        """Keras tensors of shape [batch, d] for this feature's model inputs."""
        raise NotImplementedError

    def embedding_labels(self, tf_transform_output) -> Dict[str, List[str]]:
        """{embedding layer name: a label per row} for the tables this feature looks its ids up in
        (TensorBoard's Embedding Projector shows them); a shared table has the same entry in each member."""
        return {}

    def share_settings(self) -> dict:
        """What features sharing one vocabulary or grid and one embedding must agree on."""
        return {k: v for k, v in self.to_spec().items() if k not in self.column_options}

    def resolve(self, directory: str) -> "Kind":
        """This feature with paths it names resolved against the spec's directory (the spec travels
        to Transform and Trainer as JSON, read there from another working directory)."""
        return self

    def missing_files(self) -> List[str]:
        """What is wrong with the files this feature needs to be trained (checked before a run, not
        when the spec is read: clients read it without them)."""
        return []

    def to_spec(self) -> dict:
        """The spec's mapping for this feature (round-trips through `from_spec`)."""
        values = {"kind": self.kind}
        for field in dataclasses.fields(self):
            if field.name != "name" and getattr(self, field.name) != field.default:
                value = getattr(self, field.name)
                values[field.name] = list(value) if isinstance(value, tuple) else value
        return values


def _own_embedding_name(name: str) -> str:
    return f"{name}_embedding"


def _own_embedding(name: str, num_ids: int, value):
    return tf.keras.layers.Embedding(num_ids, embedding_dim(num_ids), name=_own_embedding_name(name))(value)


@dataclasses.dataclass(frozen=True)
class Numeric(Kind):
    """A number: z-score (of log1p for `scale: log`, for heavy right tails), mean-imputed, plus
    quantile buckets so the model can learn non-monotonic effects."""
    scale: str = "linear"  # linear | log
    buckets: int = 20  # 0: no buckets
    kind = "numeric"
    options = ("scale", "buckets")

    def __post_init__(self):
        if self.scale not in ("linear", "log"):
            raise ValueError(f"scale: {self.scale!r} is not one of linear, log")
        if not isinstance(self.buckets, int) or self.buckets < 0 or self.buckets == 1:
            raise ValueError(f"buckets: {self.buckets!r} must be 0 (none) or an integer >= 2")

    @property
    def numeric_columns(self):
        return self.columns

    def model_inputs(self):
        inputs = [ModelInput(transformed_name(self.name))]
        if self.buckets:
            inputs.append(ModelInput(bucket_name(self.name), self.buckets))
        return inputs

    def transform(self, inputs, shared):
        value = float_with_mean_imputed(inputs[self.name])
        outputs = {}
        if self.scale == "log":
            value = tf.maximum(value, 0.0)
            outputs[transformed_name(self.name)] = tft.scale_to_z_score(tf.math.log1p(value))
        else:
            outputs[transformed_name(self.name)] = tft.scale_to_z_score(value)
        if self.buckets:
            # Buckets of the value itself, not of its log1p (the same partition: log1p is monotonic).
            # log1p's last bit depends on the batch (vectorized vs scalar kernel), so values sitting
            # on a boundary would change bucket with the other rows in a request.
            outputs[bucket_name(self.name)] = tft.bucketize(value, self.buckets)
        return outputs

    def encode(self, inputs, shared, settings):
        encoded = [tf.keras.layers.Reshape((1,), name=f"{safe_name(self.name)}_column")(
            inputs[transformed_name(self.name)])]
        if self.buckets:
            encoded.append(_own_embedding(bucket_name(self.name), self.buckets,
                                          inputs[bucket_name(self.name)]))
        return encoded


@dataclasses.dataclass(frozen=True)
class Categorical(Kind):
    """A string category: a vocabulary of the `top_k` most frequent values learned from the training
    data; rarer and unseen values hash into `oov_buckets` ids. Features with one `share` name learn
    one vocabulary over all their values and share one embedding."""
    top_k: int = 100
    oov_buckets: int = 10
    share_with: Optional[str] = None
    kind = "categorical"
    options = ("top_k", "oov_buckets", "share")

    def __post_init__(self):
        for key in ("top_k", "oov_buckets"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "top_k" else 0):
                raise ValueError(f"{key}: {value!r} must be an integer >= {1 if key == 'top_k' else 0}")

    @property
    def share(self):
        return self.share_with

    @property
    def num_ids(self) -> int:
        return self.top_k + self.oov_buckets

    @property
    def vocabulary_name(self) -> str:
        """The vocabulary's file name: in the Transform output and in the SavedModel's assets/."""
        return safe_name(self.share or self.name)

    def model_inputs(self):
        return [ModelInput(transformed_name(self.name), self.num_ids)]

    def transform(self, inputs, shared):
        value = clean_strings(inputs[self.name])
        if self.share is None:
            ids = tft.compute_and_apply_vocabulary(value, top_k=self.top_k,
                                                   num_oov_buckets=self.oov_buckets,
                                                   vocab_filename=self.vocabulary_name)
        else:
            members = shared.members(self.share)
            vocabulary = shared.get("categorical_vocabulary", self.share, lambda: tft.vocabulary(
                tf.concat([clean_strings(inputs[m]) for m in members], axis=0), top_k=self.top_k,
                vocab_filename=self.vocabulary_name))
            ids = tft.apply_vocabulary(value, vocabulary, num_oov_buckets=self.oov_buckets)
        return {transformed_name(self.name): ids}

    @property
    def embedding_name(self) -> str:
        if self.share is None:
            return _own_embedding_name(transformed_name(self.name))
        return f"{safe_name(self.share)}_shared_embedding"

    def encode(self, inputs, shared, settings):
        value = inputs[transformed_name(self.name)]
        if self.share is None:
            return [_own_embedding(transformed_name(self.name), self.num_ids, value)]
        layer = shared.get("embedding", self.share, lambda: layers.SharedEmbedding(
            self.num_ids, settings.shared_embedding_dim, name=self.embedding_name))
        return [layer(value)]

    def embedding_labels(self, tf_transform_output):
        # tft.apply_vocabulary: ids [0, len(vocabulary)) are its entries, the next `oov_buckets` the
        # hash buckets of other values; a vocabulary shorter than top_k leaves the last rows unused.
        vocabulary = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in
                      tf_transform_output.vocabulary_by_name(self.vocabulary_name)]
        labels = vocabulary + [f"(other values, bucket {k + 1})" for k in range(self.oov_buckets)]
        return {self.embedding_name: labels + ["(unused)"] * (self.num_ids - len(labels))}

    def to_spec(self):
        values = super().to_spec()
        if "share_with" in values:
            values["share"] = values.pop("share_with")
        return values


@dataclasses.dataclass(frozen=True)
class CategoricalInt(Kind):
    """An integer category with a known range (hours, days, area codes): id = value - min + 1;
    missing and out-of-range values share id 0 instead of failing the embedding lookup."""
    min: int = 0
    max: int = 1
    kind = "categorical_int"
    options = ("min", "max")

    def __post_init__(self):
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (self.min, self.max)):
            raise ValueError(f"min and max must be integers, got {self.min!r} and {self.max!r}")
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        if self.max - self.min > 100_000:
            raise ValueError(f"{self.max - self.min + 1} values is too many for one embedding; "
                             "use kind: categorical (a vocabulary of the frequent values)")

    @property
    def numeric_columns(self):
        return self.columns

    @property
    def num_ids(self) -> int:
        return self.max - self.min + 2

    def model_inputs(self):
        return [ModelInput(transformed_name(self.name), self.num_ids)]

    def transform(self, inputs, shared):
        present = is_present(inputs[self.name])
        # Through float: a column pandas wrote as 8.0 parses as FLOAT in the schema.
        value = tf.cast(tf.round(fill_missing(inputs[self.name], 0.0, tf.float64)), tf.int64)
        valid = present & (value >= self.min) & (value <= self.max)
        return {transformed_name(self.name): tf.where(valid, value - self.min + 1,
                                                      tf.zeros_like(value))}

    def encode(self, inputs, shared, settings):
        return [_own_embedding(transformed_name(self.name), self.num_ids,
                               inputs[transformed_name(self.name)])]

    def embedding_labels(self, tf_transform_output):
        return {_own_embedding_name(transformed_name(self.name)):
                ["(missing or out of range)"] + [str(v) for v in range(self.min, self.max + 1)]}


@dataclasses.dataclass(frozen=True)
class Coordinates(Kind):
    """A latitude/longitude pair: the cell of a quantile grid over the training coordinates
    (`buckets` per axis), one more id when either is missing. Features with one `share` name use one
    embedding table (pickup and dropoff: a cell means the same place in both)."""
    latitude: str = ""
    longitude: str = ""
    buckets: int = 12
    share_with: Optional[str] = None
    kind = "coordinates"
    options = ("latitude", "longitude", "buckets", "share")
    column_options = ("latitude", "longitude")

    def __post_init__(self):
        if not self.latitude or not self.longitude:
            raise ValueError("needs `latitude` and `longitude`: the names of its two columns")
        if isinstance(self.buckets, bool) or not isinstance(self.buckets, int) or self.buckets < 2:
            raise ValueError(f"buckets: {self.buckets!r} must be an integer >= 2")

    @property
    def columns(self):
        return (self.latitude, self.longitude)

    @property
    def numeric_columns(self):
        return self.columns

    @property
    def share(self):
        return self.share_with

    @property
    def num_ids(self) -> int:
        return self.buckets * self.buckets + 1

    def model_inputs(self):
        return [ModelInput(transformed_name(self.name), self.num_ids)]

    def transform(self, inputs, shared):
        latitude, longitude = inputs[self.latitude], inputs[self.longitude]
        present = is_present(latitude) & is_present(longitude)
        lat = tft.bucketize(float_with_mean_imputed(latitude), self.buckets)
        lon = tft.bucketize(float_with_mean_imputed(longitude), self.buckets)
        cell = tf.cast(lat * self.buckets + lon, tf.int64)
        unknown = tf.constant(self.num_ids - 1, tf.int64)
        return {transformed_name(self.name): tf.where(present, cell, unknown)}

    @property
    def embedding_name(self) -> str:
        return f"{safe_name(self.share or self.name)}_embedding"

    def encode(self, inputs, shared, settings):
        def make():
            return layers.SharedEmbedding(self.num_ids, settings.shared_embedding_dim,
                                          name=self.embedding_name)
        layer = make() if self.share is None else shared.get("embedding", self.share, make)
        return [layer(inputs[transformed_name(self.name)])]

    def embedding_labels(self, tf_transform_output):
        # The id of a cell (see `transform`): latitude bucket * buckets + longitude bucket, counted
        # from the south-west; buckets are quantiles of the training coordinates.
        cells = [f"latitude {lat + 1}/{self.buckets}, longitude {lon + 1}/{self.buckets}"
                 for lat in range(self.buckets) for lon in range(self.buckets)]
        return {self.embedding_name: cells + ["(missing coordinates)"]}

    def to_spec(self):
        values = super().to_spec()
        if "share_with" in values:
            values["share"] = values.pop("share_with")
        return values


# A TF Hub handle that is a web address: TF Hub's download protocol, which this project does not
# implement (no tensorflow_hub import: README "TF Hub").
_WEB_HANDLE = ("http://", "https://")


@dataclasses.dataclass(frozen=True)
class Text(Kind):
    """Free text encoded by a TF Hub-format text-embedding `module` (a TF2 SavedModel mapping a batch
    of strings to [batch, d]; a local path, relative to the spec, or a URI TensorFlow reads, gs://...).

    The Transform only cleans the string (missing -> "", surrounding whitespace dropped): the module
    owns its tokenization, and the model (models/layers.TextModuleEmbedding) embeds the text, so the
    module is saved inside the SavedModel and the served model still takes the raw text."""
    module: str = ""
    kind = "text"
    options = ("module",)

    def __post_init__(self):
        if not isinstance(self.module, str) or not self.module:
            raise ValueError("needs `module`: the path of a TF Hub-format text-embedding module "
                             "(a TF2 SavedModel directory)")
        if self.module.startswith(_WEB_HANDLE):
            raise ValueError(
                f"module: {self.module!r} is a web handle; download the module once and name its "
                f"directory (reproducible, and hashed into the Trainer's cache key): mkdir -p DIR && "
                f"curl -L '{self.module}?tf-hub-format=compressed' | tar xz -C DIR")

    def resolve(self, directory):
        if "://" in self.module or os.path.isabs(self.module):
            return self
        return dataclasses.replace(self, module=os.path.normpath(os.path.join(directory, self.module)))

    def missing_files(self):
        if "://" in self.module or os.path.isfile(os.path.join(self.module, "saved_model.pb")):
            return []
        return [f"features.{self.name}: module: {self.module} has no saved_model.pb; a TF Hub-format "
                "module is a TF2 SavedModel directory"]

    def model_inputs(self):
        return [ModelInput(transformed_name(self.name), text=True)]

    def transform(self, inputs, shared):
        return {transformed_name(self.name): clean_strings(inputs[self.name])}

    def encode(self, inputs, shared, settings):
        return [layers.TextModuleEmbedding(self.module, name=f"{safe_name(self.name)}_text_embedding")(
            inputs[transformed_name(self.name)])]


KINDS: Dict[str, type] = {k.kind: k for k in (Numeric, Categorical, CategoricalInt, Coordinates, Text)}


def from_spec(name: str, values: Mapping) -> Kind:
    """One feature from its spec mapping; ValueError names the offending key and what is allowed."""
    if not isinstance(values, Mapping) or "kind" not in values:
        raise ValueError(f"needs a mapping with `kind:` (one of {', '.join(KINDS)})")
    cls = KINDS.get(values["kind"])
    if cls is None:
        raise ValueError(f"kind: {values['kind']!r} is unknown; allowed: {', '.join(KINDS)}")
    unknown = sorted(set(values) - {"kind"} - set(cls.options))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} for kind {cls.kind}; allowed: "
                         f"{', '.join(cls.options) or 'none'}")
    kwargs = {("share_with" if k == "share" else k): v for k, v in values.items() if k != "kind"}
    return cls(name=name, **kwargs)
