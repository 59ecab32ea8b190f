"""TFX's Trainer with one more parameter, `train_steps` (an int), that overrides `train_args.num_steps`.

TFX can only bind a runtime parameter to a whole component parameter, and `train_args` is a proto: a
parameter *inside* it (`TrainArgs(num_steps=RuntimeParameter(...))`, or a dict holding one) is not
wired by the Kubeflow V2 compiler (it is JSON-dumped into a constant), and a string parameter holding
the proto's JSON is untyped. An int parameter of its own shows up on Kubeflow Pipelines / Vertex as a
typed NUMBER_INTEGER pipeline parameter that can be set per run. Everything else is TFX's Trainer.
"""
from typing import Any, Dict, List, Optional, Union

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils, proto_utils

TRAIN_STEPS_KEY = "train_steps"


class TrainerSpec(standard_component_specs.TrainerSpec):
    PARAMETERS = {**standard_component_specs.TrainerSpec.PARAMETERS,
                  TRAIN_STEPS_KEY: ExecutionParameter(type=int, optional=True)}


def fold_train_steps(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of the exec properties with `train_steps` (when given) moved into `train_args`."""
    exec_properties = dict(exec_properties)
    train_steps = exec_properties.pop(TRAIN_STEPS_KEY, None)
    if train_steps is None:
        return exec_properties
    # Kubeflow passes pipeline parameters as JSON numbers: 500 may arrive as 500.0.
    # 0: no cap (TFX reads num_steps 0 as unset; models/trainer.py then sizes training by the data).
    if isinstance(train_steps, bool) or int(train_steps) != train_steps or train_steps < 0:
        raise ValueError(f"train_steps must be an integer >= 0 (0: no cap), got {train_steps!r}.")
    train_args = trainer_pb2.TrainArgs()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.TRAIN_ARGS_KEY], train_args)
    train_args.num_steps = int(train_steps)
    exec_properties[standard_component_specs.TRAIN_ARGS_KEY] = proto_utils.proto_to_json(train_args)
    return exec_properties


class Executor(trainer_executor.GenericExecutor):
    """TFX's GenericExecutor, after folding `train_steps` into `train_args`."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        super().Do(input_dict, output_dict, fold_train_steps(exec_properties))


class Trainer(base_component.BaseComponent):
    """The subset of TFX Trainer's arguments this project uses, plus `train_steps`."""

    SPEC_CLASS = TrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, transform_graph: types.BaseChannel,
                 schema: types.BaseChannel, run_fn: str, train_args: trainer_pb2.TrainArgs,
                 eval_args: trainer_pb2.EvalArgs, custom_config: Dict[str, Any],
                 train_steps: Optional[Union[int, data_types.RuntimeParameter]] = None):
        super().__init__(spec=TrainerSpec(
            examples=examples, transform_graph=transform_graph, schema=schema, run_fn=run_fn,
            train_args=train_args, eval_args=eval_args,
            custom_config=json_utils.dumps(custom_config), train_steps=train_steps,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun)))
