"""The Transform component's `preprocessing_fn`: raw CSV features to model inputs and the label."""
import tensorflow as tf
import tensorflow_transform as tft

from models import features


def _fill_missing(x, default, dtype=None):
    """A rank-2 SparseTensor (CSV columns may have empty cells) to a dense rank-1 tensor."""
    if not isinstance(x, tf.sparse.SparseTensor):
        return tf.reshape(x if dtype is None else tf.cast(x, dtype), [-1])
    values = x.values if dtype is None else tf.cast(x.values, dtype)
    dense = tf.sparse.to_dense(
        tf.SparseTensor(x.indices, values, [x.dense_shape[0], 1]), default_value=default)
    return tf.squeeze(dense, axis=1)


def _is_present(x):
    if not isinstance(x, tf.sparse.SparseTensor):
        return tf.ones_like(tf.reshape(x, [-1]), dtype=tf.bool)
    ones = tf.SparseTensor(x.indices, tf.ones_like(x.values, dtype=tf.int64), [x.dense_shape[0], 1])
    return tf.squeeze(tf.sparse.to_dense(ones), axis=1) > 0


def _float_with_mean_imputed(x):
    """Missing and non-finite values become the column's mean over the training data."""
    values = _fill_missing(x, float("nan"), tf.float32)
    mean = tft.mean(tf.boolean_mask(values, tf.math.is_finite(values)))
    return tf.where(tf.math.is_finite(values), values, mean)


def _location_id(latitude, longitude):
    """The cell of a quantile grid over the training coordinates; UNKNOWN_LOCATION_ID when absent."""
    n = features.LOCATION_BUCKETS_PER_AXIS
    present = _is_present(latitude) & _is_present(longitude)
    lat = tft.bucketize(_float_with_mean_imputed(latitude), n)
    lon = tft.bucketize(_float_with_mean_imputed(longitude), n)
    cell = tf.cast(lat * n + lon, tf.int64)
    return tf.where(present, cell, tf.constant(features.UNKNOWN_LOCATION_ID, tf.int64))


def preprocessing_fn(inputs):
    """tf.Transform callback: every output is keyed by `features.transformed_name`."""
    outputs = {}
    for key in features.NUMERIC_FEATURES:
        value = tf.maximum(_float_with_mean_imputed(inputs[key]), 0.0)
        outputs[features.transformed_name(key)] = tft.scale_to_z_score(tf.math.log1p(value))
        # Quantile buckets of the value itself, not of its log1p (the same partition: log1p is
        # monotonic). log1p's last bit depends on the batch (vectorized vs scalar kernel), so common
        # values sitting on a boundary (0.8 miles) changed bucket with the other rows in a request.
        outputs[features.bucket_name(key)] = tft.bucketize(
            value, features.NUMERIC_QUANTILE_BUCKETS)

    for key, vocab in features.VOCAB_FEATURES.items():
        outputs[features.transformed_name(key)] = tft.compute_and_apply_vocabulary(
            tf.strings.strip(_fill_missing(inputs[key], "")), top_k=vocab.top_k,
            num_oov_buckets=vocab.oov_buckets, vocab_filename=key)

    for key, num_ids in features.CATEGORY_FEATURES.items():
        value = _fill_missing(inputs[key], 0, tf.int64)
        # Out-of-range values share id 0 with missing ones instead of failing the embedding lookup.
        outputs[features.transformed_name(key)] = tf.where(
            (value >= 0) & (value < num_ids), value, tf.zeros_like(value))

    for key, location in features.LOCATIONS.items():
        outputs[features.transformed_name(key)] = _location_id(
            inputs[location.latitude], inputs[location.longitude])

    # The serving graph drops this output: TFT prunes what depends on the absent `tips` column.
    fare = _fill_missing(inputs[features.FARE_KEY], float("nan"), tf.float32)
    tips = _fill_missing(inputs[features.TIPS_KEY], 0.0, tf.float32)
    big_tipper = tf.math.is_finite(fare) & (tips > features.BIG_TIP_FRACTION * fare)
    outputs[features.TRANSFORMED_LABEL_KEY] = tf.cast(big_tipper, tf.int64)
    return outputs
