"""Custom TFX pieces: data gates, resolver strategies, the serving check and the atomic Pusher."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# gRPC (Beam, TFX, the serving API) restarts its event engine in a forked child when this is on; the
# serving check forks its model server, whose child then closes every inherited descriptor before
# exec, and the restarted engine's epoll_wait aborts the child ("epoll_wait error: Bad file
# descriptor", exit -6), intermittently. Every child here execs a new program, so it needs none.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
