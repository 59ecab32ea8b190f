"""Resolves Transform's analyzer cache: the cache of the latest Transform that read an earlier window.

tf.Transform keeps its analyzers' partial results per input dataset (a span's Examples artifact) and
per analyzer (a hash of the analyzer and of the graph leading to it), so a window that shares spans
with an earlier one need not analyze those spans again. TFX's Transform writes that cache
(`updated_analyzer_cache`) on every run; fed back the latest one, an unchanged re-run would see a new
input and run Transform and everything after it again. This returns the cache of the latest Transform
that read other examples than this run's and shares a span with them (the previous window): the same
artifact until the window moves, so an unchanged re-run stays cached.
"""
from typing import Dict, List, Optional, Set

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common.resolver import ResolverStrategy
from tfx.types import standard_component_specs

EXAMPLES_KEY = "examples"
CACHE_KEY = "analyzer_cache"


def _key(event) -> str:
    return event.path.steps[0].key if event.path.steps else ""


class LatestOtherWindowCacheStrategy(ResolverStrategy):
    """Inputs: `examples` (what Transform reads this run) and `analyzer_cache` (every TransformCache).

    Output `analyzer_cache`: one cache, or none on the first run and until the window first moves.
    """

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        examples = list(input_dict.get(EXAMPLES_KEY, []))
        result = {EXAMPLES_KEY: examples, CACHE_KEY: []}
        current = {a.id for a in examples}
        caches = {a.id: a for a in input_dict.get(CACHE_KEY, [])}
        if not current or not caches:
            return result
        # Finished Transform executions, found through the caches they wrote: a cached execution
        # records the same output, a failed one none; resolvers publish theirs as INTERNAL_OUTPUT.
        wrote = {e.execution_id: e.artifact_id for e in store.get_events_by_artifact_ids(list(caches))
                 if e.type == metadata_store_pb2.Event.OUTPUT
                 and _key(e) == standard_component_specs.UPDATED_ANALYZER_CACHE_KEY}
        read: Dict[int, Set[int]] = {}
        for event in store.get_events_by_execution_ids(list(wrote)):
            if (event.type == metadata_store_pb2.Event.INPUT
                    and _key(event) == standard_component_specs.EXAMPLES_KEY):
                read.setdefault(event.execution_id, set()).add(event.artifact_id)
        for execution_id in sorted(wrote, reverse=True):
            examples_read = read.get(execution_id, set())
            if examples_read != current and examples_read & current:
                result[CACHE_KEY] = [caches[wrote[execution_id]]]
                break
        return result
