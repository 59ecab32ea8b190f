"""Resolves the baseline for evaluation: the latest blessed model other than the candidate itself.

TFX's LatestBlessedModelStrategy returns the candidate itself when a cached Trainer re-emits a model
that was blessed before; the Evaluator's inputs then change, so an unchanged re-run evaluates and pushes
again. Excluding the candidate keeps the inputs identical and the re-run fully cached.
"""
from typing import Dict, List, Optional

from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.common.resolver import ResolverStrategy

CANDIDATE_KEY = "candidate"
MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"


class LatestBlessedBaselineStrategy(ResolverStrategy):
    """Inputs: `candidate` (this run's model), `model` and `model_blessing` (all of them)."""

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        candidate_ids = {a.id for a in input_dict.get(CANDIDATE_KEY, [])}
        blessing_by_model_id = {
            b.get_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY): b
            for b in input_dict.get(BLESSING_KEY, [])
            if b.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY) == 1}
        result = {CANDIDATE_KEY: list(input_dict.get(CANDIDATE_KEY, [])), MODEL_KEY: [], BLESSING_KEY: []}
        for model in sorted(input_dict.get(MODEL_KEY, []), key=lambda a: a.id, reverse=True):
            if model.id in blessing_by_model_id and model.id not in candidate_ids:
                result[MODEL_KEY] = [model]
                result[BLESSING_KEY] = [blessing_by_model_id[model.id]]
                break
        return result
