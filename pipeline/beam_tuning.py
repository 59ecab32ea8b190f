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

3. Beam asks whether a DoFn is stateful (`userstate.get_dofn_specs`: `inspect.signature` of every method
of the DoFn) each time it builds a bundle processor or a transform's proto: ~7,000 calls and ~4 s of a
60 s run on the example data, ~0.7 ms each. The answer depends only on the DoFn's class unless the
instance itself holds bound methods, so it is computed once per class; such instances are inspected
every time, as before.

4. At the end of every bundle Beam stops its state sampler (per-step timing for Beam's metrics) and
waits for its thread, which sleeps up to 200 ms between samples: ~1.4 s of a cold run's 246 bundles.
Sampling every 20 ms gives the same metrics, slightly finer, for a wait of ~0.5 s.
"""
import logging
import types

import dill._dill
import objsize
from apache_beam.runners.worker import statecache, statesampler
from apache_beam.transforms import userstate

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


SAMPLING_PERIOD_MS = 20

_original_get_dofn_specs = userstate.get_dofn_specs
_dofn_specs_by_class = {}


def _dofn_specs_cached_by_class(dofn):
    if any(isinstance(v, types.MethodType) for v in getattr(dofn, "__dict__", {}).values()):
        return _original_get_dofn_specs(dofn)
    key = type(dofn)
    if key not in _dofn_specs_by_class:
        _dofn_specs_by_class[key] = _original_get_dofn_specs(dofn)
    states, timers = _dofn_specs_by_class[key]
    return set(states), set(timers)


def install() -> None:
    """Idempotent; affects only this process (the DirectRunner's in-process worker)."""
    statecache.get_deep_size = _deep_size_without_module_scan
    dill._dill._trace = _set_dill_trace  # pylint: disable=protected-access
    userstate.get_dofn_specs = _dofn_specs_cached_by_class
    statesampler.StateSampler.__init__.__defaults__ = (SAMPLING_PERIOD_MS,)
