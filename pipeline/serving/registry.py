"""Which model versions are served: polls the serving directory and hot-reloads versions in the background.

Like TF Serving's file-system source: every numeric `<serving-dir>/<model>/<version>/` is a candidate,
the newest `num_versions` loadable ones are served, and requests without a version get the newest. A new
version is loaded and warmed up off the request path and only then published; a version that fails to
load is reported (state END with an error, as TF Serving reports it) and never replaces a good one; it is
retried only when its files change. Versions that disappear from disk are unloaded.
"""
import dataclasses
import logging
import os
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from pipeline import serving_dir as layout

log = logging.getLogger("pipeline.serving")

# TF Serving's ModelVersionStatus.State names.
LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"

Fingerprint = Tuple[Tuple[str, int, int], ...]


class NotFoundError(LookupError):
    """No servable for a request: unknown model, unknown or unloaded version (HTTP 404)."""


@dataclasses.dataclass
class VersionStatus:
    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""

    def to_json(self) -> dict:
        """TF Serving's ModelVersionStatus as its REST API prints it."""
        return {"version": str(self.version), "state": self.state,
                "status": {"error_code": self.error_code, "error_message": self.error_message}}


def fingerprint(path: str) -> Fingerprint:
    """(relative path, size, mtime) of every file under `path`: changes while a copy is in progress."""
    entries = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except FileNotFoundError:
                continue
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


class Registry:
    """The served models and versions. `get` is called from request handlers; `poll` from one thread."""

    def __init__(self, serving_dir: str, model_names: Sequence[str] = (), num_versions: int = 2,
                 loader: Optional[Callable] = None):
        if loader is None:
            from pipeline.serving.servable import Servable  # pylint: disable=import-outside-toplevel

            loader = Servable
        self.serving_dir = serving_dir
        self.fixed_model_names = tuple(model_names)
        self.num_versions = num_versions
        self._loader = loader
        self._lock = threading.Lock()
        self._servables: Dict[str, Dict[int, object]] = {}  # replaced, never mutated: safe to read
        self._status: Dict[str, Dict[int, VersionStatus]] = {}
        self._failed: Dict[Tuple[str, int], Fingerprint] = {}
        self._seen: Dict[Tuple[str, int], Fingerprint] = {}  # last poll's fingerprint of unloaded dirs
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # --- Request side -------------------------------------------------------------------------
    def model_names(self) -> List[str]:
        return sorted(self._status)

    def get(self, model_name: str, version: Optional[int] = None):
        """The servable for a request: the newest available version, or the one asked for."""
        versions = self._servables.get(model_name, {})
        if version is None:
            if versions:
                return versions[max(versions)]
            raise NotFoundError(f"Servable not found for request: Latest({model_name}). "
                                + self._why_missing(model_name))
        if version in versions:
            return versions[version]
        raise NotFoundError(f"Servable not found for request: Specific({model_name}, {version}). "
                            + self._why_missing(model_name, version))

    def status(self, model_name: str, version: Optional[int] = None) -> List[VersionStatus]:
        """Version statuses, newest first (TF Serving's GetModelStatus)."""
        with self._lock:
            statuses = dict(self._status.get(model_name, {}))
        if not statuses:
            raise NotFoundError(f"Could not find any versions of model {model_name}. "
                                + self._why_missing(model_name))
        if version is not None:
            if version not in statuses:
                raise NotFoundError(f"Could not find version {version} of model {model_name}. "
                                    + self._why_missing(model_name, version))
            return [statuses[version]]
        return [statuses[v] for v in sorted(statuses, reverse=True)]

    def _why_missing(self, model_name: str, version: Optional[int] = None) -> str:
        statuses = self._status.get(model_name)
        if statuses is None:
            served = ", ".join(self.model_names()) or "none yet"
            return f"Models served from {self.serving_dir}: {served}."
        if version is not None and version in statuses:
            status = statuses[version]
            if status.error_message:
                return f"Version {version} failed to load: {status.error_message}"
            return f"Version {version} is {status.state}."
        available = sorted(v for v, s in statuses.items() if s.state == AVAILABLE)
        if not available:
            return (f"No version of {model_name} is loaded yet: waiting for a loadable numeric version "
                    f"directory under {os.path.join(self.serving_dir, model_name)}.")
        return f"Available versions: {', '.join(map(str, available))}."

    # --- Directory side -----------------------------------------------------------------------
    def _discover_models(self) -> List[str]:
        if self.fixed_model_names:
            return list(self.fixed_model_names)
        if not os.path.isdir(self.serving_dir):
            return []
        return sorted(name for name in os.listdir(self.serving_dir)
                      if not name.startswith(".")
                      and layout.versions(os.path.join(self.serving_dir, name)))

    def poll(self, settle: bool = True) -> None:
        """One scan of the serving directory: load new versions, unload vanished or surplus ones.

        With `settle`, a directory is loaded only once its files look the same as at the previous
        poll, so a version still being copied (a non-atomic push) is not even tried.
        """
        for model_name in self._discover_models():
            with self._lock:
                self._status.setdefault(model_name, {})
                self._servables.setdefault(model_name, {})
            self._poll_model(model_name, settle)

    def _poll_model(self, model_name: str, settle: bool) -> None:
        model_dir = os.path.join(self.serving_dir, model_name)
        on_disk = set(layout.versions(model_dir))
        loaded = set(self._servables[model_name])
        for version in sorted(loaded - on_disk):
            self._unload(model_name, version, "its directory is gone")
        for key in [k for k in list(self._failed) + list(self._seen)
                    if k[0] == model_name and k[1] not in on_disk]:
            self._failed.pop(key, None)
            self._seen.pop(key, None)

        wanted = self._newest([v for v in on_disk if not self._still_broken(model_dir, model_name, v)])
        for version in sorted(set(wanted) - loaded, reverse=True):
            if self._stop.is_set():
                return
            path = os.path.join(model_dir, str(version))
            current = fingerprint(path)
            previous = self._seen.get((model_name, version))
            self._seen[(model_name, version)] = current
            if settle and current != previous:
                log.info("%s version %d found; loading once its files stop changing", model_name, version)
                continue
            self._load(model_name, version, path, current)

        available = self._newest(list(self._servables[model_name]))
        for version in sorted(set(self._servables[model_name]) - set(available)):
            self._unload(model_name, version, f"only the newest {self.num_versions} are served")

    def _newest(self, versions: List[int]) -> List[int]:
        newest_first = sorted(versions, reverse=True)
        return newest_first if self.num_versions <= 0 else newest_first[:self.num_versions]

    def _still_broken(self, model_dir: str, model_name: str, version: int) -> bool:
        failed = self._failed.get((model_name, version))
        return failed is not None and failed == fingerprint(os.path.join(model_dir, str(version)))

    def _set_status(self, model_name: str, status: VersionStatus) -> None:
        with self._lock:
            self._status[model_name] = {**self._status[model_name], status.version: status}

    def _load(self, model_name: str, version: int, path: str, files: Fingerprint) -> None:
        self._set_status(model_name, VersionStatus(version, LOADING))
        started = time.monotonic()
        try:
            servable = self._loader(model_name, version, path)
            servable.warm_up()
        except Exception as e:  # pylint: disable=broad-except  (any load failure is reported, not fatal)
            self._failed[(model_name, version)] = files
            message = f"{type(e).__name__}: {e}".strip()
            code = "NOT_FOUND" if isinstance(e, FileNotFoundError) else "UNKNOWN"
            self._set_status(model_name, VersionStatus(version, END, code, message[:2000]))
            log.error("%s version %d failed to load from %s and is not served (retried when its files "
                      "change): %s", model_name, version, path, message.splitlines()[0][:500])
            return
        self._failed.pop((model_name, version), None)
        self._seen.pop((model_name, version), None)
        with self._lock:
            self._servables[model_name] = {**self._servables[model_name], version: servable}
            self._status[model_name] = {**self._status[model_name],
                                        version: VersionStatus(version, AVAILABLE)}
        log.info("%s version %d is AVAILABLE (loaded and warmed up in %.1f s from %s)",
                 model_name, version, time.monotonic() - started, path)

    def _unload(self, model_name: str, version: int, reason: str) -> None:
        with self._lock:
            self._servables[model_name] = {
                v: s for v, s in self._servables[model_name].items() if v != version}
            self._status[model_name] = {**self._status[model_name], version: VersionStatus(version, END)}
        # In-flight requests keep their reference; the model is freed when they finish.
        log.info("%s version %d unloaded: %s", model_name, version, reason)

    # --- Background polling -------------------------------------------------------------------
    def start_polling(self, seconds: float) -> None:
        def loop():
            while not self._stop.wait(seconds):
                try:
                    self.poll()
                except Exception:  # pylint: disable=broad-except  (keep serving what is loaded)
                    log.exception("Polling %s failed; will retry", self.serving_dir)

        self._thread = threading.Thread(target=loop, name="serving-dir-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 120.0) -> None:
        """Stops polling; waits for a load in progress, since exiting under a running TensorFlow
        call in a daemon thread aborts the process."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

