"""setup.py declares every distribution the packages import, pinned at requirements.lock's version."""
import ast
import importlib.metadata
import os
import re
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipeline.config import PROJECT_ROOT

PACKAGES = ("pipeline", "models", "components")


def _setup_kwargs(path=os.path.join(PROJECT_ROOT, "setup.py")):
    """The literal keyword arguments of the setup() call, read without running setup.py."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    (call,) = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
               and getattr(node.func, "id", None) == "setup"]
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords
            if k.arg in ("install_requires", "extras_require")}


def _lock_versions(path=os.path.join(PROJECT_ROOT, "requirements.lock")):
    with open(path, encoding="utf-8") as f:
        return {canonicalize_name(m[1]): m[2] for m in
                (re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", line) for line in f) if m}


def imported_modules(packages=PACKAGES):
    """module -> the files importing it: third-party imports anywhere in the packages (including
    function-level ones), as top-level names, or `google.<name>` for Google's namespace package."""
    found = {}
    for package in packages:
        for directory, _, files in os.walk(os.path.join(PROJECT_ROOT, package)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(directory, name)
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read(), path)
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        modules = [alias.name for alias in node.names]
                    elif isinstance(node, ast.ImportFrom) and node.level == 0:
                        modules = [node.module]
                    else:
                        continue
                    for module in modules:
                        parts = module.split(".")
                        if parts[0] in sys.stdlib_module_names or parts[0] in PACKAGES:
                            continue
                        key = ".".join(parts[:2]) if parts[0] == "google" else parts[0]
                        found.setdefault(key, set()).add(os.path.relpath(path, PROJECT_ROOT))
    return found


def _installed_owners(modules):
    """module (as imported_modules names it) -> the installed distributions whose files provide it
    (from their RECORD: Python 3.10's packages_distributions() misses packages without a
    top_level.txt)."""
    owners = {}
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or ():
            parts = file.parts
            top = parts[0][:-3] if parts[0].endswith(".py") else parts[0]
            key = f"google.{parts[1]}" if top == "google" and len(parts) > 2 else top
            if key in modules:
                owners.setdefault(key, set()).add(name)
    return owners


def _declared(kwargs):
    """Every distribution setup.py names: install_requires and the extras (code that runs only
    with an extra, e.g. the Airflow settings, may import what that extra installs)."""
    requirements = list(kwargs["install_requires"])
    for extra in kwargs["extras_require"].values():
        requirements += extra
    return requirements


def test_every_imported_distribution_is_declared():
    declared = {canonicalize_name(Requirement(r).name) for r in _declared(_setup_kwargs())}
    modules = imported_modules()
    owners = _installed_owners(modules)
    undeclared = {}
    for module, files in sorted(modules.items()):
        assert module in owners, f"no installed distribution provides {module} ({sorted(files)})"
        if not owners[module] & declared:
            undeclared[module] = (sorted(owners[module]), sorted(files))
    assert not undeclared, ("imported but not in setup.py (module: its "
                            f"distributions, importing files): {undeclared}")


def test_the_scan_finds_direct_imports():
    """The imports the check above must see: module-level, from-imports, namespace packages."""
    modules = imported_modules()
    assert {"tfx", "tensorflow", "requests", "prometheus_client", "objsize", "grpc",
            "google.protobuf"} <= set(modules)
    assert "components/serving_runtime.py" in modules["requests"]
    assert not {"os", "pipeline", "models", "components"} & set(modules)


def test_every_pin_matches_the_lock():
    lock = _lock_versions()
    for line in _declared(_setup_kwargs()):
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{line}: pin it exactly (requirements.lock has every version)"
        assert lock.get(canonicalize_name(requirement.name)) == spec.version, (
            f"setup.py pins {line}, requirements.lock has "
            f"{lock.get(canonicalize_name(requirement.name))}")
