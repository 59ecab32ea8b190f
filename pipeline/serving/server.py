"""Start-up: load what the serving directory holds, then serve REST (uvicorn) and gRPC on one event loop.

Like TF Serving, the first scan loads every model before the ports open, so a client that can connect
finds the models AVAILABLE; later versions are picked up by the background poller.
"""
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
from typing import Tuple

log = logging.getLogger("pipeline.serving")

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024


class ServerStartError(RuntimeError):
    """The server cannot start (no serving directory, port in use, nothing to serve on)."""


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    serving_dir: str
    model_names: Tuple[str, ...] = ()
    host: str = "127.0.0.1"
    rest_port: int = 8501  # 0 disables REST, as in TF Serving
    grpc_port: int = 8500  # 0 disables gRPC
    poll_seconds: float = 1.0
    num_versions: int = 2  # the newest N loadable versions; 0 = all
    enable_batching: bool = True
    max_batch_size: int = 128
    batch_timeout_ms: float = 0.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES


def _uvicorn_server(app, options: ServerOptions):
    import uvicorn  # pylint: disable=import-outside-toplevel

    class Server(uvicorn.Server):
        # Signals are handled once, by run(), for both APIs.
        @contextlib.contextmanager
        def capture_signals(self):
            yield

    config = uvicorn.Config(app, host=options.host, port=options.rest_port, log_level="warning",
                            access_log=False, lifespan="off", timeout_graceful_shutdown=5)
    return Server(config)


def _bind(host: str, port: int, api: str, flag: str) -> socket.socket:
    """The listening socket, bound here so a port in use is a clear error, not uvicorn's exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP; without it,
    # Nagle's algorithm and delayed ACKs add 40 ms to every keep-alive request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ServerStartError(f"Cannot serve {api} on {host}:{port} ({e.strerror}); is the port in use? "
                               f"Choose another with {flag}") from e
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def run(options: ServerOptions) -> None:
    """Serves until SIGINT/SIGTERM. Raises ServerStartError for problems the user must fix."""
    if not os.path.isdir(options.serving_dir):
        raise ServerStartError(
            f"Serving directory {options.serving_dir} does not exist. `python -m pipeline run` pushes "
            "blessed models to serving_model/ by default; point --serving-dir at that directory.")
    if not options.rest_port and not options.grpc_port:
        raise ServerStartError("Both --rest-port and --grpc-port are 0: there is nothing to serve on.")
    from pipeline.serving.registry import Registry  # pylint: disable=import-outside-toplevel

    registry = Registry(options.serving_dir, options.model_names, options.num_versions)
    registry.poll(settle=False)
    if not registry.model_names():
        log.warning("No model under %s yet (a model is <serving-dir>/<name>/<numeric version>/); "
                    "polling every %.1f s", options.serving_dir, options.poll_seconds)
    asyncio.run(_serve(options, registry))


async def _serve(options: ServerOptions, registry) -> None:
    # Imported here: TensorFlow is only needed once there is something to serve.
    from pipeline.serving import grpc_service, rest  # pylint: disable=import-outside-toplevel
    from pipeline.serving.batching import Batcher, Metrics  # pylint: disable=import-outside-toplevel

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    batcher = Batcher(Metrics(), options.enable_batching, options.max_batch_size,
                      options.batch_timeout_ms)
    rest_server, rest_task, grpc_server = None, None, None
    try:
        if options.grpc_port:
            try:
                grpc_server = grpc_service.create_server(registry, batcher, options.host,
                                                         options.grpc_port)
            except (OSError, RuntimeError) as e:
                raise ServerStartError(f"Cannot serve gRPC on {options.host}:{options.grpc_port} ({e}); "
                                       "is the port in use? Choose another with --grpc-port") from e
            await grpc_server.start()
        if options.rest_port:
            rest_socket = _bind(options.host, options.rest_port, "REST", "--rest-port")
            rest_server = _uvicorn_server(
                rest.create_app(registry, batcher, options.max_request_bytes), options)
            rest_task = asyncio.create_task(rest_server.serve(sockets=[rest_socket]))
            while not rest_server.started and not rest_task.done():
                await asyncio.sleep(0.02)
        registry.start_polling(options.poll_seconds)
        where = ([f"REST http://{options.host}:{options.rest_port}"] if options.rest_port else []) + (
            [f"gRPC {options.host}:{options.grpc_port}"] if options.grpc_port else [])
        log.info("Serving %s from %s on %s", ", ".join(registry.model_names()) or "no model yet",
                 options.serving_dir, " and ".join(where))
        waiters = [asyncio.create_task(stop.wait())] + ([rest_task] if rest_task else [])
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        log.info("Shutting down")
    finally:
        registry.stop()
        if rest_server is not None:
            rest_server.should_exit = True
            with contextlib.suppress(BaseException):
                await rest_task
        if grpc_server is not None:
            await grpc_server.stop(grace=1)
        batcher.close()
