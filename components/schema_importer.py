"""Imports the curated schema file as a Schema artifact, keyed on its content.

TFX's ImportSchemaGen takes only the file path as a parameter, so once cached it keeps serving the old
schema after the file is edited. This component also takes the file's SHA-256: an edit is a cache miss.
"""
import os

from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import Schema
from tfx.utils import io_utils

from components.fingerprints import PROJECT_ROOT, file_sha256


class SchemaChangedError(RuntimeError):
    """The schema file changed between building the pipeline and running it."""


@component
def ImportCuratedSchema(schema_file: Parameter[str], schema_sha256: Parameter[str],
                        code_sha256: Parameter[str], schema: OutputArtifact[Schema]) -> None:
    """Copies `schema_file` into the Schema artifact after checking it still has `schema_sha256`.

    A relative `schema_file` is relative to the project root wherever the component runs (pipelines
    compiled for a container image name the schema that way)."""
    del code_sha256  # only keys TFX's cache on this code (components/fingerprints.py)
    schema_file = os.path.join(PROJECT_ROOT, schema_file)  # no-op for an absolute path
    if file_sha256(schema_file) != schema_sha256:
        raise SchemaChangedError(
            f"{schema_file} changed after the pipeline was built; run the pipeline again.")
    io_utils.copy_file(schema_file, os.path.join(schema.uri, "schema.pbtxt"))
