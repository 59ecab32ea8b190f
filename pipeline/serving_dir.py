"""The serving directory in TF Serving's `<model>/<version>/` layout: list versions, roll back."""
import os
from typing import List, Tuple

ROLLED_BACK_DIR = ".rolled_back"


class RollbackError(RuntimeError):
    """There is nothing to roll back to."""


def versions(model_dir: str) -> List[int]:
    """Version numbers present under `model_dir`, oldest first."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(name) for name in os.listdir(model_dir)
                  if name.isdigit() and os.path.isdir(os.path.join(model_dir, name)))


def rollback(serving_dir: str, model_name: str) -> Tuple[str, str]:
    """Moves the newest version aside so the previous one is served again; returns (moved, serving).

    TF Serving serves the highest version, and every version here was blessed when it was pushed, so
    the previous version is the previous blessed model. The move is one rename on one filesystem:
    a reader sees either the old newest version or the previous one, never a partial directory.
    """
    model_dir = os.path.join(serving_dir, model_name)
    present = versions(model_dir)
    if len(present) < 2:
        raise RollbackError(
            f"{model_dir} has {len(present)} version(s): there is no previous version to roll back to.")
    newest, previous = present[-1], present[-2]
    aside = os.path.join(serving_dir, ROLLED_BACK_DIR, model_name)
    os.makedirs(aside, exist_ok=True)
    moved = os.path.join(aside, str(newest))
    os.rename(os.path.join(model_dir, str(newest)), moved)
    return moved, os.path.join(model_dir, str(previous))
