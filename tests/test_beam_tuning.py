"""pipeline/beam_tuning's speed fixes give Beam the same answers it computes itself."""
import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain

from pipeline import beam_tuning

COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())
FLUSH = userstate.TimerSpec("flush", TimeDomain.WATERMARK)


class _Stateless(beam.DoFn):
    def process(self, element):
        yield element


class _Stateful(beam.DoFn):
    def process(self, element, count=beam.DoFn.StateParam(COUNT), flush=beam.DoFn.TimerParam(FLUSH)):
        yield element

    @userstate.on_timer(FLUSH)
    def on_flush(self, count=beam.DoFn.StateParam(COUNT)):
        yield count.read()


class _Holder:
    """A bound method with a state parameter, as `beam.FlatMap(holder.process)` wraps it."""

    def process(self, element, count=beam.DoFn.StateParam(COUNT)):
        yield element


class _TwiceTheSameState(beam.DoFn):
    def process(self, element, a=beam.DoFn.StateParam(COUNT), b=beam.DoFn.StateParam(COUNT)):
        yield element


@pytest.fixture(name="tuned")
def _tuned():
    beam_tuning.install()
    assert userstate.get_dofn_specs is not beam_tuning._original_get_dofn_specs  # pylint: disable=protected-access
    return beam_tuning._original_get_dofn_specs  # pylint: disable=protected-access


def _stateful_wrapper():
    """A CallableWrapperDoFn whose instance holds the bound method: not answerable from its class."""
    return beam.FlatMap(_Holder().process).fn


@pytest.mark.parametrize("make", [
    _Stateless, _Stateful, lambda: beam.Map(lambda x: x).fn, _stateful_wrapper,
], ids=["stateless", "stateful", "lambda-wrapper", "bound-method-wrapper"])
def test_same_specs_as_beam(tuned, make):
    for _ in range(2):  # the second answer comes from the cache, when there is one
        assert userstate.get_dofn_specs(make()) == tuned(make())


def test_instances_of_one_class_with_different_methods_are_told_apart(tuned):
    # Both are CallableWrapperDoFn: a per-class answer would give the stateless one the state.
    stateless, stateful = beam.Map(lambda x: x).fn, _stateful_wrapper()
    assert userstate.is_stateful_dofn(stateless) is False
    assert userstate.is_stateful_dofn(stateful) is True
    assert userstate.is_stateful_dofn(beam.Map(lambda x: x).fn) is False
    assert tuned(stateful) == userstate.get_dofn_specs(stateful)


def test_callers_cannot_change_the_cached_answer(tuned):  # pylint: disable=unused-argument
    states, _ = userstate.get_dofn_specs(_Stateful())
    states.clear()
    assert userstate.get_dofn_specs(_Stateful())[0] == {COUNT}


def test_invalid_dofn_still_refused_every_time(tuned):  # pylint: disable=unused-argument
    for _ in range(2):
        with pytest.raises(ValueError, match="duplicate process method parameters"):
            userstate.get_dofn_specs(_TwiceTheSameState())


def test_bundles_state_sampler_samples_every_20_ms(tuned):  # pylint: disable=unused-argument
    # What Beam's bundle processor creates for every bundle (runners/worker/bundle_processor.py).
    from apache_beam.runners.worker import statesampler  # pylint: disable=import-outside-toplevel
    from apache_beam.utils.counters import CounterFactory  # pylint: disable=import-outside-toplevel

    sampler = statesampler.StateSampler("fnapi-step-1", CounterFactory())
    assert sampler.sampling_period_ms == beam_tuning.SAMPLING_PERIOD_MS == 20
    sampler.start()
    sampler.stop()  # returns within a period
