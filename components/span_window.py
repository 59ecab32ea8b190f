"""Resolves the training window: this run's examples plus those of the spans just before it.

TFX 1.16's ExampleGen ingests one span per run, so a window of the last N spans is assembled from what
earlier runs ingested (recorded in MLMD). TFX's SpanRangeStrategy would also return every earlier
ingestion of a span that was re-delivered; this keeps only the latest ingestion of each span.
"""
from typing import Dict, List, Optional

from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.common.resolver import ResolverStrategy

CURRENT_KEY = "examples"
INGESTED_KEY = "ingested"


def span_of(artifact: types.Artifact) -> int:
    return artifact.get_int_custom_property(example_gen_utils.SPAN_PROPERTY_NAME)


def _from_example_gen(artifact: types.Artifact) -> bool:
    """ExampleGen's outputs carry the input fingerprint; Transform's transformed examples do not."""
    return artifact.has_custom_property(example_gen_utils.FINGERPRINT_PROPERTY_NAME)


class SpanWindowStrategy(ResolverStrategy):
    """Inputs: `examples` (this run's ExampleGen output) and `ingested` (every Examples artifact).

    Output `ingested`: one artifact per span for the `num_spans` spans ending at this run's span,
    oldest first; this run's artifact is always the newest.
    """

    def __init__(self, num_spans: int):
        if num_spans < 1:
            raise ValueError(f"num_spans must be at least 1, got {num_spans}.")
        self._num_spans = num_spans

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        current = list(input_dict.get(CURRENT_KEY, []))
        if not current:
            return None
        newest_span = max(span_of(a) for a in current)
        oldest_span = newest_span - self._num_spans + 1
        by_span = {span_of(a): a for a in current}
        for artifact in sorted(input_dict.get(INGESTED_KEY, []), key=lambda a: a.id, reverse=True):
            if _from_example_gen(artifact) and oldest_span <= span_of(artifact) < newest_span:
                by_span.setdefault(span_of(artifact), artifact)  # latest ingestion of a span wins
        return {CURRENT_KEY: current, INGESTED_KEY: [by_span[s] for s in sorted(by_span)]}
