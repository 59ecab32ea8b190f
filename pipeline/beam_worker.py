"""Set-up for Beam's worker processes, imported through `--beam_plugins=pipeline.beam_worker`.

Beam's worker entry point (`sdk_worker_main`: the multi_processing DirectRunner's worker processes, and the
SDK containers of Dataflow, Flink and Spark) imports these plugins before it runs any bundle. Importing the
`pipeline` package sets TF_USE_LEGACY_KERAS=1, which the Evaluator's workers need to load the Keras 2
model, and this module applies pipeline/beam_tuning's speed fixes inside the worker, where the bundles run.
"""
from pipeline import beam_tuning

beam_tuning.install()
