"""A local model server that speaks TensorFlow Serving's REST and gRPC APIs, and a client for it.

`python -m pipeline serve` serves every `<serving-dir>/<model>/<version>/` SavedModel the Pusher writes:
- `servable.py`: one loaded SavedModel version (its signatures, their metadata, a call);
- `registry.py`: which versions are served; polls the directory and hot-reloads new versions;
- `tensors.py`: TF Serving's JSON request/response formats to and from numpy arrays;
- `batching.py`: an asyncio micro-batcher, so concurrent requests share one model call;
- `rest.py` and `grpc_service.py`: the two APIs; `server.py` starts both on one event loop;
- `client.py`: builds TF Serving requests from raw CSV/JSON rows (works against real TF Serving too).
"""
