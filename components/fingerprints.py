"""Content fingerprints that make TFX's cache see edits it would otherwise miss.

TFX keys a component's cache on its inputs, its parameters and its executor spec; the spec names the
executor class (and Transform's and Trainer's functions) by module path, never by content, and
ImportSchemaGen names the schema by file path. An edited file would silently reuse the old outputs.
Passing these fingerprints as parameters makes an edit a cache miss, and only for the components that
run the edited file.
"""
import ast
import hashlib
import os
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

# Where the project's packages are: the source tree, or site-packages when installed (the image).
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The packages setup.py installs. What else a module imports (TFX, TensorFlow, ...) is pinned by
# the lock (requirements-3.X.lock), not fingerprinted.
PROJECT_PACKAGES = frozenset({"components", "models", "pipeline"})


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tree_sha256(directory: str) -> str:
    """One hash over a directory's files (relative paths and contents): a TF Hub module the spec names
    by path (models/kinds.Text), so replacing the module in place re-runs the Trainer."""
    digest = hashlib.sha256()
    for parent, dirs, files in sorted(os.walk(directory)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(parent, name)
            digest.update(os.path.relpath(path, directory).replace(os.sep, "/").encode() + b"\0")
            digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def code_sha256(*modules: str, root: Optional[str] = None) -> str:
    """One hash over the project files that importing `modules` runs, by relative path and content.

    `root` (default PROJECT_ROOT) is the directory holding the project's packages.
    """
    digest = hashlib.sha256()
    for path, source in sorted(module_sources(modules, root or PROJECT_ROOT).items()):
        digest.update(path.encode() + b"\0")
        digest.update(hashlib.sha256(source).digest())
    return digest.hexdigest()


def module_sources(modules: Iterable[str], root: str) -> Dict[str, bytes]:
    """Relative path (`/`-separated) -> content of each project file that importing `modules` runs.

    That is each module, the `__init__.py` of its packages and, transitively, every project module
    they import, at module level or inside a function (a deferred import may run too).
    """
    pending = list(modules)
    missing = [m for m in pending if _module_path(m, root) is None]
    if missing:
        raise ValueError(f"No project module {', '.join(missing)} under {root} (packages: "
                         f"{', '.join(sorted(PROJECT_PACKAGES))}); name modules by dotted path.")
    sources, seen = {}, set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_path(name, root)
        if path is None:  # another library's module, or a name inside a module (`from m import f`)
            continue
        with open(os.path.join(root, path), "rb") as f:
            sources[path] = f.read()
        pending.append(name.rpartition(".")[0])  # importing a.b runs a/__init__.py first
        pending += _imported_names(sources[path], name, path.endswith("/__init__.py"))
    return sources


def _module_path(name: str, root: str) -> Optional[str]:
    parts = name.split(".")
    if parts[0] not in PROJECT_PACKAGES:
        return None
    for candidate in ("/".join(parts) + ".py", "/".join(parts + ["__init__.py"])):
        if os.path.isfile(os.path.join(root, candidate)):
            return candidate
    return None


def _imported_names(source: bytes, module: str, is_package: bool) -> List[str]:
    """Every dotted name an import in `source` may load: `from a import b` gives a and a.b."""
    names = []
    for level, base, imported in _imports(source):
        if level:  # relative: from the module's own package, one package up per extra dot
            package = module if is_package else module.rpartition(".")[0]
            anchor = package.rsplit(".", level - 1)[0] if level > 1 else package
            base = f"{anchor}.{base}" if base else anchor
        names.append(base)
        names += [f"{base}.{name}" for name in imported if name != "*"]
    return names


# Parsed imports by content hash: one parse per file per process, however many components import it.
_IMPORTS_BY_CONTENT: Dict[bytes, List[Tuple[int, str, List[str]]]] = {}


def _imports(source: bytes) -> List[Tuple[int, str, List[str]]]:
    """(level, module, names) per import: `from ..a import b` is (2, a, [b]), `import a` (0, a, [])."""
    key = hashlib.sha256(source).digest()
    if key not in _IMPORTS_BY_CONTENT:
        imports = []
        for node in _import_statements(ast.parse(source).body):
            if isinstance(node, ast.Import):
                imports += [(0, alias.name, []) for alias in node.names]
            else:
                imports.append((node.level, node.module or "", [a.name for a in node.names]))
        _IMPORTS_BY_CONTENT[key] = imports
    return _IMPORTS_BY_CONTENT[key]


def _import_statements(statements) -> Iterator[ast.stmt]:
    """The import statements among `statements` and in their blocks (def, class, if, try, ...).

    Statements only: visiting every expression too (ast.walk) takes four times as long as parsing.
    """
    for node in statements:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for block in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _import_statements(getattr(node, block, ()))
