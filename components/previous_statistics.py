"""Resolves the statistics of the previous data: the latest ExampleStatistics not computed from this
run's examples.

Excluding this run's own examples (found through MLMD lineage) keeps an unchanged re-run's inputs
identical, so it stays cached, and a run on new data compares against the data before it.
Examples a finished Transform already read were accepted then (drift checked, or drift accepted with
--accept-drift), so a re-run on them resolves no previous statistics: it does not stop again on a
drift that was already judged.
"""
from typing import Dict, List, Optional, Set

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common.resolver import ResolverStrategy

EXAMPLES_KEY = "examples"
STATISTICS_KEY = "statistics"


def _input_ids_of_producers(store, artifact_ids: List[int]) -> Dict[int, Set[int]]:
    """artifact id -> ids of the artifacts its producing executions read."""
    outputs = [e for e in store.get_events_by_artifact_ids(artifact_ids)
               if e.type == metadata_store_pb2.Event.OUTPUT]
    inputs_by_execution: Dict[int, Set[int]] = {}
    for event in store.get_events_by_execution_ids({e.execution_id for e in outputs}):
        if event.type == metadata_store_pb2.Event.INPUT:
            inputs_by_execution.setdefault(event.execution_id, set()).add(event.artifact_id)
    result: Dict[int, Set[int]] = {}
    for event in outputs:
        result.setdefault(event.artifact_id, set()).update(
            inputs_by_execution.get(event.execution_id, set()))
    return result


def _already_trained_on(store, artifact_ids: Set[int]) -> bool:
    """Whether a completed (or cached) Transform execution read any of these artifacts."""
    reads = [e for e in store.get_events_by_artifact_ids(list(artifact_ids))
             if e.type == metadata_store_pb2.Event.INPUT]
    done = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
    return any(execution.type.endswith("Transform") and execution.last_known_state in done
               for execution in store.get_executions_by_id({e.execution_id for e in reads}))


class PreviousDataStatisticsStrategy(ResolverStrategy):
    """Inputs: `examples` (this run's) and `statistics` (all of them)."""

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        current = {a.id for a in input_dict.get(EXAMPLES_KEY, [])}
        if current and _already_trained_on(store, current):
            return {EXAMPLES_KEY: list(input_dict.get(EXAMPLES_KEY, [])), STATISTICS_KEY: []}
        candidates = sorted(input_dict.get(STATISTICS_KEY, []), key=lambda a: a.id, reverse=True)
        sources = _input_ids_of_producers(store, [a.id for a in candidates]) if candidates else {}
        previous = next((a for a in candidates if not sources.get(a.id, set()) & current), None)
        return {EXAMPLES_KEY: list(input_dict.get(EXAMPLES_KEY, [])),
                STATISTICS_KEY: [previous] if previous else []}
