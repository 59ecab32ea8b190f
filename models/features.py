"""Every feature definition, in one place: raw columns, their transforms, model inputs, label, slices.

Preprocessing, the model builder, the serving signatures, the input checks and the evaluation slices all
read this module; nothing else names a column.
"""
import dataclasses
from typing import Dict, Tuple

# --- The label -------------------------------------------------------------------------------------
LABEL_KEY = "big_tipper"
TIPS_KEY = "tips"
FARE_KEY = "fare"
BIG_TIP_FRACTION = 0.2  # a "big tipper" tips more than 20% of the fare
LABEL_SOURCE_COLUMNS = (TIPS_KEY, FARE_KEY)

# --- Numeric columns: z-score of log1p (heavy right tails) with mean imputation, plus quantile buckets
# so the model can learn non-monotonic effects (fares on round-number tip boundaries).
NUMERIC_FEATURES = ("fare", "trip_miles", "trip_seconds")
NUMERIC_QUANTILE_BUCKETS = 20


@dataclasses.dataclass(frozen=True)
class VocabFeature:
    """A string column mapped to ids by a tf.Transform vocabulary; rare or unseen values go to OOV buckets."""
    top_k: int
    oov_buckets: int

    @property
    def num_ids(self) -> int:
        return self.top_k + self.oov_buckets


# Categorical strings: vocabulary computed from the training data, with OOV buckets for unseen values.
VOCAB_FEATURES: Dict[str, VocabFeature] = {
    "payment_type": VocabFeature(top_k=10, oov_buckets=2),
    "company": VocabFeature(top_k=100, oov_buckets=10),
}

# Categorical integers with a known range: the value itself is the id (0..num_ids-1; missing -> 0).
CATEGORY_FEATURES: Dict[str, int] = {
    "trip_start_hour": 24,
    "trip_start_day": 8,  # 1..7
    "trip_start_month": 13,  # 1..12
    "pickup_community_area": 78,  # 1..77
    "dropoff_community_area": 78,
}


@dataclasses.dataclass(frozen=True)
class Location:
    latitude: str
    longitude: str


# Coordinates are bucketized on a quantile grid; a location's id is its grid cell. Pickup and dropoff
# share one embedding table (models.layers.LocationEmbedding) because a cell means the same place in both.
LOCATIONS: Dict[str, Location] = {
    "pickup_location": Location("pickup_latitude", "pickup_longitude"),
    "dropoff_location": Location("dropoff_latitude", "dropoff_longitude"),
}
LOCATION_BUCKETS_PER_AXIS = 12
# Cells 0..B*B-1 are the grid; one more id for a trip with no coordinates.
NUM_LOCATION_IDS = LOCATION_BUCKETS_PER_AXIS * LOCATION_BUCKETS_PER_AXIS + 1
UNKNOWN_LOCATION_ID = NUM_LOCATION_IDS - 1

# --- Evaluation slices (TFMA) ----------------------------------------------------------------------
SLICE_FEATURES = ("payment_type", "trip_start_hour")


def transformed_name(key: str) -> str:
    return f"{key}_xf"


def bucket_name(key: str) -> str:
    return f"{key}_bucket_xf"


def location_columns() -> Tuple[str, ...]:
    return tuple(c for loc in LOCATIONS.values() for c in (loc.latitude, loc.longitude))


# Raw columns the model reads at serving time (no label source except fare, which is a feature).
SERVING_COLUMNS: Tuple[str, ...] = (
    NUMERIC_FEATURES + tuple(VOCAB_FEATURES) + tuple(CATEGORY_FEATURES) + location_columns())
# Raw columns a training CSV must have.
REQUIRED_TRAINING_COLUMNS: Tuple[str, ...] = tuple(dict.fromkeys(SERVING_COLUMNS + LABEL_SOURCE_COLUMNS))
# Columns the schema knows but the model does not read (kept for lineage and statistics).
OTHER_SCHEMA_COLUMNS = ("trip_start_timestamp", "pickup_census_tract", "dropoff_census_tract")
KNOWN_COLUMNS: Tuple[str, ...] = REQUIRED_TRAINING_COLUMNS + OTHER_SCHEMA_COLUMNS
# Raw columns whose values must parse as numbers.
NUMERIC_COLUMNS: Tuple[str, ...] = (
    NUMERIC_FEATURES + tuple(CATEGORY_FEATURES) + location_columns() + (TIPS_KEY,))

# --- Model inputs, grouped the way the model consumes them -----------------------------------------
NUMERIC_INPUTS = tuple(transformed_name(k) for k in NUMERIC_FEATURES)
# name -> number of ids, for every id-valued input embedded on its own
CATEGORICAL_INPUTS: Dict[str, int] = {
    **{transformed_name(k): v.num_ids for k, v in VOCAB_FEATURES.items()},
    **{transformed_name(k): n for k, n in CATEGORY_FEATURES.items()},
    **{bucket_name(k): NUMERIC_QUANTILE_BUCKETS for k in NUMERIC_FEATURES},
}
LOCATION_INPUTS = tuple(transformed_name(k) for k in LOCATIONS)
MODEL_INPUTS = NUMERIC_INPUTS + tuple(CATEGORICAL_INPUTS) + LOCATION_INPUTS
TRANSFORMED_LABEL_KEY = transformed_name(LABEL_KEY)


def embedding_dim(num_ids: int) -> int:
    """Half of fastai's rule of thumb, `1.6 * num_ids ** 0.56 / 2`, rounded and clipped to [2, 16]."""
    return int(min(16, max(2, round(1.6 * num_ids ** 0.56 / 2))))
