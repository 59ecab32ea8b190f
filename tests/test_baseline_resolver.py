"""The baseline is the latest blessed model that is not the candidate itself."""
from tfx.components.evaluator import constants
from tfx.types import standard_artifacts

from components.baseline_resolver import LatestBlessedBaselineStrategy


def _model(artifact_id):
    model = standard_artifacts.Model()
    model.id = artifact_id
    return model


def _blessing(model_id, blessed):
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model_id)
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, int(blessed))
    return blessing


def _resolve(candidate_id, models, blessings):
    result = LatestBlessedBaselineStrategy().resolve_artifacts(
        None, {"candidate": [_model(candidate_id)], "model": [_model(i) for i in models],
               "model_blessing": blessings})
    return [m.id for m in result["model"]], result


def test_latest_blessed_other_model_is_the_baseline():
    ids, result = _resolve(5, [1, 2, 3, 5], [_blessing(1, True), _blessing(2, True),
                                             _blessing(3, False), _blessing(5, True)])
    assert ids == [2]
    assert result["model_blessing"][0].get_int_custom_property(
        constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY) == 2
    assert [c.id for c in result["candidate"]] == [5]


def test_a_cached_candidate_that_is_the_only_blessed_model_has_no_baseline():
    ids, result = _resolve(4, [4], [_blessing(4, True)])
    assert ids == [] and result["model_blessing"] == []


def test_first_run_has_no_baseline():
    ids, _ = _resolve(1, [1], [])
    assert ids == []
