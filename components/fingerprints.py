"""Content fingerprints that make TFX's cache see edits it would otherwise miss.

TFX keys a component's cache on its inputs and parameters. Transform and Trainer name their code by
module path (`models.preprocessing.preprocessing_fn`), and ImportSchemaGen names the schema by file path,
so editing the code or the schema would silently reuse the old outputs. Passing these fingerprints as
parameters makes an edit a cache miss, and only for the components it affects.
"""
import hashlib
import os


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def package_sha256(package_dir: str) -> str:
    """One hash over every .py file in a package, by relative path and content."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, package_dir).encode())
            digest.update(file_sha256(path).encode())
    return digest.hexdigest()
