"""run_fn's training length: epochs sized by the data, early stopping on the eval split, the kept weights."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
from tfx.components.util import tfxio_utils
from tfx.types import standard_artifacts

from models import trainer
from models.spec import HISTORY_FILE, SPEC_KEY
from tests.conftest import TAXI_SPEC
from tests.test_distributed import TRAIN_ROWS, transformed_data  # noqa: F401  (a fixture)


@pytest.mark.parametrize("examples, batch, max_epochs, max_steps, expected", [
    # A pass over 160 rows is 2 batches: an epoch is stretched to MIN_STEPS_PER_EPOCH.
    (160, 128, 20, None, (50, 20)),
    (12_002, 128, 20, None, (94, 20)),
    (1_200_000, 128, 5, None, (9375, 5)),
    # A cap on steps: whole epochs within it, never more steps than it allows.
    (12_002, 128, 20, 500, (94, 5)),
    (12_002, 128, 20, 20, (20, 1)),
    (160, 128, 20, 1, (1, 1)),
])
def test_an_epoch_is_a_pass_over_the_data_or_the_minimum_steps(examples, batch, max_epochs, max_steps,
                                                                 expected):
    plan = trainer.plan_epochs(examples, batch, max_epochs, max_steps)
    assert (plan.steps_per_epoch, plan.epochs) == expected
    assert plan.steps_per_epoch >= min(trainer.MIN_STEPS_PER_EPOCH, max_steps or np.inf)
    if max_steps:
        assert plan.steps_per_epoch * plan.epochs <= max_steps


def test_several_steps_per_call_only_when_an_epoch_is_long_enough_to_earn_back_their_trace():
    # 15k taxi rows (12,002 in train: 94 steps an epoch) one step per call, 150k (938 steps) several.
    assert trainer.plan_epochs(12_002, 128, 20).steps_per_execution == 1
    assert trainer.plan_epochs(119_987, 128, 20).steps_per_execution == trainer.STEPS_PER_EXECUTION
    threshold = trainer.SEVERAL_STEPS_PER_CALL_FROM
    assert trainer.plan_epochs(threshold * 128, 128, 20).steps_per_execution > 1
    assert trainer.plan_epochs((threshold - 1) * 128, 128, 20).steps_per_execution == 1
    # A cap on steps that shortens the epochs counts: the steps an epoch runs, not the rows.
    assert trainer.plan_epochs(119_987, 128, 20, threshold - 1).steps_per_execution == 1


def test_an_empty_training_split_is_refused_with_what_to_check():
    with pytest.raises(ValueError, match="training split has no examples.*CSV files have no rows"):
        trainer.plan_epochs(0, 128, 20)


@pytest.mark.parametrize("compression, suffix", [("GZIP", ".gz"), ("", "")])
def test_count_examples_counts_every_record_of_every_file(tmp_path, compression, suffix):
    sizes = (3, 0, 7, 9000)  # more than one of count_examples' batches of 8,192
    for index, size in enumerate(sizes):
        options = tf.io.TFRecordOptions(compression_type=compression)
        with tf.io.TFRecordWriter(str(tmp_path / f"part-{index}{suffix}"), options) as writer:
            for _ in range(size):
                writer.write(b"x")
    assert trainer.count_examples([str(tmp_path / "part-*")]) == sum(sizes)
    assert trainer.count_examples([str(tmp_path / "nothing-*")]) == 0


@pytest.mark.slow
def test_training_stops_when_the_eval_loss_stops_improving_and_keeps_the_best_epoch(
        transformed_data, tmp_path):  # noqa: F811
    root, _ = transformed_data
    fn_args = FnArgs(
        train_files=[str(root / "examples" / "Split-train" / "*")],
        eval_files=[str(root / "examples" / "Split-eval" / "*")],
        train_steps=None, eval_steps=50,  # the defaults: no cap on steps
        transform_output=str(root / "transform_graph"),
        serving_model_dir=str(tmp_path / "serving_model"), model_run_dir=str(tmp_path / "run"),
        data_accessor=_accessor(root),
        custom_config={SPEC_KEY: TAXI_SPEC.to_json()})
    model = trainer.run_fn(fn_args)

    with open(tmp_path / "run" / HISTORY_FILE, encoding="utf-8") as f:
        record = json.load(f)
    settings = TAXI_SPEC.training
    assert record["train_examples"] == TRAIN_ROWS
    # 600 rows are 5 batches: each epoch is stretched to the minimum number of steps.
    assert record["steps_per_epoch"] == trainer.MIN_STEPS_PER_EPOCH
    val_loss = record["history"]["val_loss"]
    assert len(val_loss) == record["epochs_run"] <= settings.max_epochs
    assert record["best_epoch"] == int(np.argmin(val_loss)) + 1
    if record["epochs_run"] < settings.max_epochs:  # stopped early: `patience` epochs after the best
        assert record["epochs_run"] - record["best_epoch"] == settings.patience

    # The model returned (and saved) has the best epoch's weights, not the last epoch's.
    validation = trainer.input_fn(fn_args.eval_files, fn_args.data_accessor,
                                  trainer.tft.TFTransformOutput(fn_args.transform_output), TAXI_SPEC,
                                  settings.batch_size, shuffle=False, num_epochs=1)
    loss = model.evaluate(validation, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(min(val_loss), rel=1e-4)
    assert os.path.isfile(tmp_path / "serving_model" / "saved_model.pb")


def _accessor(root) -> DataAccessor:
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    return DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=None, data_view_decode_fn=None)


def _train(root, tmp_path, name, train_steps):
    """run_fn on the fixture's transformed rows: its training record and the model it returned."""
    fn_args = FnArgs(
        train_files=[str(root / "examples" / "Split-train" / "*")],
        eval_files=[str(root / "examples" / "Split-eval" / "*")],
        train_steps=train_steps, eval_steps=50,
        transform_output=str(root / "transform_graph"),
        serving_model_dir=str(tmp_path / name / "serving_model"),
        model_run_dir=str(tmp_path / name / "run"),
        data_accessor=_accessor(root),
        custom_config={SPEC_KEY: TAXI_SPEC.to_json(), "seed": 3})
    model = trainer.run_fn(fn_args)
    with open(tmp_path / name / "run" / HISTORY_FILE, encoding="utf-8") as f:
        return json.load(f), model


def _loops_inside_a_call(model) -> bool:
    # pylint: disable=protected-access
    functions = model.train_tf_function._list_all_concrete_functions_for_serialization()
    return any(op.type == "While" for f in functions for op in f.graph.get_operations())


@pytest.mark.slow
def test_several_steps_per_execution_learn_exactly_what_one_step_per_call_learns(
        transformed_data, tmp_path, monkeypatch):  # noqa: F811
    """The same batches and updates: 3 epochs of 50 steps, one per call (epochs shorter than
    SEVERAL_STEPS_PER_CALL_FROM) and 16 per call (a partial call of 2 at each epoch's end),
    validated on the eval split's 2 batches (a partial call)."""
    root, _ = transformed_data
    monkeypatch.setattr(trainer, "STEPS_PER_EXECUTION", 16)
    monkeypatch.setattr(trainer, "SEVERAL_STEPS_PER_CALL_FROM", 51)
    reference, reference_model = _train(root, tmp_path, "one", train_steps=150)
    monkeypatch.setattr(trainer, "SEVERAL_STEPS_PER_CALL_FROM", 50)
    record, model = _train(root, tmp_path, "several", train_steps=150)

    assert (record["steps_per_epoch"], record["epochs_run"]) == (50, 3)
    assert (reference["steps_per_execution"], record["steps_per_execution"]) == (1, 16)
    # The several-step run did loop inside Keras' compiled call; the reference did not.
    assert _loops_inside_a_call(model) and not _loops_inside_a_call(reference_model)
    for trained in (model, reference_model):  # every batch one update, none skipped or repeated
        assert int(trained.optimizer.iterations.numpy()) == 3 * 50
    assert record["best_epoch"] == reference["best_epoch"]
    assert record["history"].keys() == reference["history"].keys()
    for key, values in reference["history"].items():
        assert record["history"][key] == pytest.approx(values, rel=1e-5), key
    for after, expected in zip(model.get_weights(), reference_model.get_weights()):
        np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-6)
    # The model returned is back to one step per call: it evaluates every batch of a dataset of
    # unknown length.
    eval_split = trainer.input_fn(
        [str(root / "examples" / "Split-eval" / "*")], _accessor(root),
        trainer.tft.TFTransformOutput(str(root / "transform_graph")), TAXI_SPEC,
        TAXI_SPEC.training.batch_size, shuffle=False, num_epochs=1)
    losses = [trained.evaluate(eval_split, verbose=0, return_dict=True)["loss"]
              for trained in (model, reference_model)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
