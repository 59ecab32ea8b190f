"""setup.py declares every distribution the packages import, pinned at the locks' version; one lock per
supported Python, alike except where a pin says why; the Makefile's choice of interpreter."""
import ast
import importlib.metadata
import os
import re
import subprocess
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


def _supported_pythons(path=os.path.join(PROJECT_ROOT, "Makefile")):
    """The Makefile's SUPPORTED_PYTHONS: each has its own requirements-<version>.lock."""
    with open(path, encoding="utf-8") as f:
        (line,) = [line for line in f if line.startswith("SUPPORTED_PYTHONS :=")]
    return line.split(":=")[1].split()


def _lock_path(python):
    return os.path.join(PROJECT_ROOT, f"requirements-{python}.lock")


def _lock_versions(python):
    with open(_lock_path(python), encoding="utf-8") as f:
        return {canonicalize_name(m[1]): m[2] for m in
                (re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", line) for line in f) if m}


def _requirements_in(path=os.path.join(PROJECT_ROOT, "requirements.in")):
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def _applies(requirement, python):
    """Whether a requirement (its python_version marker, if any) applies on Python `python`."""
    return requirement.marker is None or requirement.marker.evaluate({"python_version": python})


def imported_modules(packages=PACKAGES):
    """module -> the files importing it: third-party imports anywhere in the packages (including
    function-level ones), as top-level names, or `google.<name>` for Google's namespace package."""
    found = {}
    for package in packages:
        for directory, subdirectories, files in os.walk(os.path.join(PROJECT_ROOT, package)):
            # Python packages only: components/tfjs/ runs in the TF.js converter's own venv
            # (components/tfjs/requirements.lock) and holds node_modules/.
            subdirectories[:] = [d for d in subdirectories
                                 if os.path.isfile(os.path.join(directory, d, "__init__.py"))]
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


def test_every_pin_matches_the_locks():
    """setup.py's and requirements.in's pins, each on the Pythons its marker names, are what the
    locks hold (a pin changed without `make lock` fails here)."""
    pins = _declared(_setup_kwargs()) + _requirements_in()
    for python in _supported_pythons():
        lock = _lock_versions(python)
        applied = set()
        for line in pins:
            requirement = Requirement(line)
            if not _applies(requirement, python):
                continue
            applied.add(canonicalize_name(requirement.name))
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{line}: pin it exactly (the locks have every version)"
            assert lock.get(canonicalize_name(requirement.name)) == spec.version, (
                f"{line} on Python {python}: requirements-{python}.lock has "
                f"{lock.get(canonicalize_name(requirement.name))}")
        # A marker must not leave a package unpinned on one of the Pythons.
        every = {canonicalize_name(Requirement(line).name) for line in pins}
        assert applied == every, f"no pin applies on Python {python}: {sorted(every - applied)}"


def test_each_lock_was_made_on_its_python():
    for python in _supported_pythons():
        with open(_lock_path(python), encoding="utf-8") as f:
            header = f.readline()
        assert re.match(rf"# Generated by `make lock` .* on Python {re.escape(python)}\.\d+;", header), (
            f"requirements-{python}.lock: {header!r}")


def test_the_locks_differ_only_where_a_pin_or_a_marker_says():
    """Same version of every package both locks hold, unless a python_version-marked pin sets it;
    a package in one lock only must come from a dependency marked for that Python (e.g. pytest's
    `exceptiongroup; python_version < "3.11"`), as installed packages declare it."""
    pythons = _supported_pythons()
    assert len(pythons) == 2, pythons
    a, b = (_lock_versions(python) for python in pythons)
    marked = {canonicalize_name(Requirement(line).name)
              for line in _declared(_setup_kwargs()) + _requirements_in()
              if "python_version" in str(Requirement(line).marker or "")}
    differ = {name: (a[name], b[name]) for name in a.keys() & b.keys() if a[name] != b[name]}
    assert not set(differ) - marked, (
        f"versions differ between the {pythons} locks without a marked pin: "
        f"{ {n: v for n, v in differ.items() if n not in marked} }")
    only_one = a.keys() ^ b.keys()
    marked_dependencies = {
        canonicalize_name(requirement.name)
        for dist in importlib.metadata.distributions() for line in dist.requires or ()
        for requirement in [Requirement(line)]
        if "python_version" in str(requirement.marker or "") or "python_full_version" in str(
            requirement.marker or "")}
    assert only_one <= marked_dependencies, (
        f"in one lock only, and no installed package asks for them per Python version: "
        f"{sorted(only_one - marked_dependencies)}")


def _make(*args, os_release=None):
    # Not what an enclosing `make test PYTHON=...` exports to its recipes.
    env = {k: v for k, v in os.environ.items() if k not in {
        "PYTHON", "PYTHON_CANDIDATES", "VENV", "OS_RELEASE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    if os_release:
        args += (f"OS_RELEASE={os_release}",)
    return subprocess.run(["make", "--no-print-directory", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_make_without_a_supported_python_names_the_one_to_install_and_how(tmp_path):
    commands = {
        'ID=ubuntu\nVERSION_ID="24.04"': "sudo add-apt-repository -y ppa:deadsnakes/ppa && "
                                          "sudo apt install -y python3.11-venv",
        'ID=debian\nVERSION_ID="12"': "sudo apt install python3.11-venv",
        "ID=fedora": "pyenv install 3.11",
        # Its own python3 is 3.10, without venv.
        'ID=ubuntu\nVERSION_ID="22.04"': "sudo apt install python3.10-venv"}
    for os_release, command in commands.items():
        path = tmp_path / "os-release"
        path.write_text(os_release + "\n")
        result = _make("install", "PYTHON_CANDIDATES=python3.98 python3.99", os_release=path)
        assert result.returncode != 0
        assert "Python 3.10 or 3.11 with venv is needed" in result.stdout, result.stdout
        assert "found: none of python3.98 python3.99" in result.stdout
        want = "3.10" if "22.04" in os_release else "3.11"
        assert f"Install Python {want}: {command}\n" in result.stdout, (os_release, result.stdout)
    # An interpreter named with PYTHON= that does not run is refused the same way.
    result = _make("install", "PYTHON=/nonexistent/python3.11", os_release=path)
    assert result.returncode != 0
    assert "found: /nonexistent/python3.11 is not runnable" in result.stdout, result.stdout


def test_make_installs_the_first_supported_python_into_its_own_venv_from_its_lock():
    """What `make install` would run (-n) when only this interpreter is found."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = os.path.join(sys.base_prefix, "bin", f"python{python}")
    result = _make("-n", "-W", "setup.py", "install", f"PYTHON_CANDIDATES=python3.99 {base}")
    assert result.returncode == 0, result.stdout + result.stderr
    venv = ".venv" if python == "3.10" else f".venv-{python}"  # 3.10 keeps the original name
    assert f"{base} -m venv {venv}\n" in result.stdout, result.stdout
    lock = f"requirements-{python}.lock"
    # tfx and ml-pipelines-sdk alone past their Requires-Python, then everything from the same lock.
    assert re.search(rf"{venv}/bin/python -m pip .* install --no-deps --ignore-requires-python "
                     rf"-c {lock} tfx ml-pipelines-sdk\n", result.stdout), result.stdout
    assert re.search(rf"{venv}/bin/python -m pip .* install -c {lock} -e '\.\[test\]'\n",
                     result.stdout), result.stdout
    assert result.stdout.count("--ignore-requires-python") == 1
