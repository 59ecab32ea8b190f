"""An asyncio micro-batcher: concurrent requests for the same model, version and signature share one
model call, like TF Serving's --enable_batching (max batch size, batch timeout).

One worker per (model, version, signature) takes the first waiting request, adds whatever else is
queued (or arrives within the timeout) up to the max batch size, runs one model call in a thread and
hands each request its own rows of the result. With the default timeout of 0 nothing waits: batches
form from the requests that queue up while the previous call runs, so a lone request pays no delay.
"""
import asyncio
import concurrent.futures
import dataclasses
import logging
from typing import Dict, List, Optional, Tuple

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

log = logging.getLogger("pipeline.serving")

Tensors = Dict[str, np.ndarray]
Key = Tuple[str, int, str]  # model, version, signature


class Metrics:
    """Counters for /monitoring/prometheus/metrics (TF Serving's path for its Prometheus metrics)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        labels = ("model", "version", "signature")
        self.model_calls = Counter("serving_model_calls", "Signature calls (one per batch)", labels,
                                   registry=self.registry)
        self.examples = Counter("serving_examples", "Examples (rows) run through the model", labels,
                                registry=self.registry)
        self.batch_requests = Histogram(
            "serving_batch_requests", "Requests served by one model call", labels,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.requests = Counter("serving_requests", "Requests answered", ("api", "method", "code"),
                                registry=self.registry)


@dataclasses.dataclass
class _Item:
    servable: object  # a reloaded version is a new servable: never batched with the old one
    tensors: Tensors
    rows: int
    future: asyncio.Future


def _compatible(a: _Item, b: _Item) -> bool:
    return a.servable is b.servable and all(
        a.tensors[k].dtype == b.tensors[k].dtype and a.tensors[k].shape[1:] == b.tensors[k].shape[1:]
        for k in a.tensors)


class Batcher:
    """Runs signature calls off the event loop, batching concurrent ones when enabled."""

    def __init__(self, metrics: Metrics, enabled: bool = True, max_batch_size: int = 128,
                 timeout_ms: float = 0.0, threads: int = 2):
        self.metrics = metrics
        self.enabled = enabled
        self.max_batch_size = max_batch_size
        self.timeout = timeout_ms / 1000.0
        self._executor = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="model")
        self._queues: Dict[Key, asyncio.Queue] = {}
        self._workers: List[asyncio.Task] = []

    async def call(self, servable, signature_name: str, tensors: Tensors, rows: Optional[int]) -> Tensors:
        """`servable.call(signature_name, tensors)` for one request, possibly batched with others."""
        key = (servable.model_name, servable.version, signature_name)
        if not self.enabled or rows is None or rows >= self.max_batch_size:
            return await self._run(key, servable, tensors, 1, rows or 0)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue()
            self._workers.append(asyncio.create_task(self._work(key, queue)))
        item = _Item(servable, tensors, rows, asyncio.get_running_loop().create_future())
        queue.put_nowait(item)
        return await item.future

    async def _run(self, key: Key, servable, tensors: Tensors, requests: int, rows: int) -> Tensors:
        labels = (key[0], str(key[1]), key[2])
        self.metrics.model_calls.labels(*labels).inc()
        self.metrics.examples.labels(*labels).inc(rows)
        self.metrics.batch_requests.labels(*labels).observe(requests)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, servable.call, key[2], tensors)

    async def _collect(self, queue: asyncio.Queue, first: _Item) -> Tuple[List[_Item], Optional[_Item]]:
        """The first item plus compatible queued ones up to the max batch size; the misfit, if any."""
        batch, rows = [first], first.rows
        deadline = asyncio.get_running_loop().time() + self.timeout
        while rows < self.max_batch_size:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if item.future.done():  # the client went away
                continue
            if rows + item.rows > self.max_batch_size or not _compatible(first, item):
                return batch, item
            batch.append(item)
            rows += item.rows
        return batch, None

    async def _work(self, key: Key, queue: asyncio.Queue) -> None:
        pending: Optional[_Item] = None
        while True:
            first = pending or await queue.get()
            pending = None
            if first.future.done():
                continue
            batch, pending = await self._collect(queue, first)
            try:
                await self._serve_batch(key, batch)
            except Exception:  # pylint: disable=broad-except  (a worker must never die)
                log.exception("Batch for %s failed unexpectedly", key)

    async def _serve_batch(self, key: Key, batch: List[_Item]) -> None:
        servable = batch[0].servable
        if len(batch) == 1:
            await self._settle(batch[0], self._run(key, servable, batch[0].tensors, 1, batch[0].rows))
            return
        merged = {k: np.concatenate([item.tensors[k] for item in batch]) for k in batch[0].tensors}
        total = sum(item.rows for item in batch)
        try:
            outputs = await self._run(key, servable, merged, len(batch), total)
        except Exception:  # pylint: disable=broad-except
            # One bad request (e.g. an undecodable tf.Example) must not fail the others it was
            # batched with: run each on its own so only the culprit gets the error.
            await asyncio.gather(*(self._settle(item, self._run(key, servable, item.tensors, 1, item.rows))
                                   for item in batch))
            return
        start = 0
        for item in batch:
            if not item.future.done():
                item.future.set_result({k: v[start:start + item.rows] for k, v in outputs.items()})
            start += item.rows

    @staticmethod
    async def _settle(item: _Item, call) -> None:
        try:
            result = await call
        except Exception as e:  # pylint: disable=broad-except  (delivered to the request)
            if not item.future.done():
                item.future.set_exception(e)
            return
        if not item.future.done():
            item.future.set_result(result)

    def close(self) -> None:
        for worker in self._workers:
            worker.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)  # no TF call left running at exit


