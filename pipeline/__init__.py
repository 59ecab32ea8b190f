"""The TFX pipeline: its config, its DAG, its runners and its CLI (`python -m pipeline`).

TF 2.16 makes tf.keras Keras 3 unless TF_USE_LEGACY_KERAS=1 is set before TensorFlow is first imported;
TFT and TFMA 1.16 need Keras 2. Setting it here covers every entry point that imports the project, and
Beam's worker processes inherit it from this process's environment.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# gRPC (Beam, TFX, the serving API) restarts its event engine in a forked child when this is on; the
# serving check forks its model server, whose child then closes every inherited descriptor before
# exec, and the restarted engine's epoll_wait aborts the child ("epoll_wait error: Bad file
# descriptor", exit -6), intermittently. Every child here execs a new program, so it needs none.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
