"""The missing-value markers: exactly one integer marks a missing integer, in int64 and int32 alike."""
import math

import pytest
import tensorflow as tf

from models import missing_values
from models.missing_values import MISSING_INT


@pytest.mark.parametrize("dtype", [tf.int64, tf.int32])
def test_only_the_integer_marker_is_missing(dtype):
    values = tf.constant([MISSING_INT, -1, -5, 0, 7, MISSING_INT + 1], dtype)
    assert missing_values.missing_mask(values).numpy().tolist() == [True, False, False, False, False,
                                                                     False]
    assert missing_values.marker(dtype) == MISSING_INT == tf.int32.min


def test_float_and_string_markers():
    assert missing_values.missing_mask(tf.constant([math.nan, -1.0, 0.0])).numpy().tolist() == [
        True, False, False]
    assert missing_values.missing_mask(tf.constant(["", " ", "Cash"])).numpy().tolist() == [
        True, False, False]
    assert math.isnan(missing_values.marker(tf.float32)) and missing_values.marker(tf.string) == ""
    with pytest.raises(ValueError, match="No missing-value marker for int8"):
        missing_values.marker(tf.int8)


def test_what_a_row_leaves_blank():
    assert all(missing_values.is_blank(v) for v in (None, "", math.nan))
    assert not any(missing_values.is_blank(v) for v in (0, -1, " ", 0.0))
