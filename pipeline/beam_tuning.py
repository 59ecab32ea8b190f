"""Workarounds for two Beam 2.59 slowdowns in the local (in-process) runner; both only change speed.

1. Beam's in-process worker sizes every side input it caches with `objsize.get_deep_size`, and objsize
first collects the ids of *every global of every loaded module* to exclude them. With TensorFlow, TFX and
Beam loaded that is hundreds of thousands of objects per call: measured here, ~25 s of a 110 s run on the
example data, 19 s of it inside Transform. Sizing without that exclusion set gives the cache a slightly
larger (safe) estimate at a fraction of the cost.

2. Beam's dill pickler switches dill's trace logging on and off around every pickle, and each
`Logger.setLevel` clears the level cache of every logger in the process (thousands here): ~12 s of
Transform. Setting dill's level directly and clearing only dill's own logger cache is equivalent, since
the "dill" logger has no children.
"""
import logging

import dill._dill
import objsize
from apache_beam.runners.worker import statecache

_original_get_deep_size = statecache.get_deep_size


def _deep_size_without_module_scan(*objs) -> int:
    return objsize.get_deep_size(
        *objs,
        get_size_func=statecache._size_func,  # pylint: disable=protected-access
        get_referents_func=statecache._get_referents_func,  # pylint: disable=protected-access
        filter_func=statecache._filter_func,  # pylint: disable=protected-access
        exclude_modules_globals=False)


def _set_dill_trace(enabled: bool) -> None:
    level = logging.INFO if enabled else logging.WARN
    logger = dill._dill.log  # pylint: disable=protected-access
    if logger.level != level:
        logger.level = level
        logger._cache.clear()  # pylint: disable=protected-access


def install() -> None:
    """Idempotent; affects only this process (the DirectRunner's in-process worker)."""
    statecache.get_deep_size = _deep_size_without_module_scan
    dill._dill._trace = _set_dill_trace  # pylint: disable=protected-access
