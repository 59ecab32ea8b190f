"""ImportCuratedSchema imports the schema the pipeline was built with, and refuses one edited since."""
import os
import re

import pytest
from tfx.types import standard_artifacts

from components.fingerprints import code_sha256, file_sha256
from components.schema_importer import ImportCuratedSchema, SchemaChangedError
from tests.conftest import TAXI_SPEC


@pytest.fixture
def schema_file(tmp_path):
    path = tmp_path / "schema.pbtxt"
    with open(TAXI_SPEC.schema_path, encoding="utf-8") as f:
        path.write_text(f.read())
    return path


def _component(schema_file):
    """The importer as create_pipeline builds it: with the schema file's fingerprint."""
    return ImportCuratedSchema(schema_file=str(schema_file), schema_sha256=file_sha256(str(schema_file)),
                               code_sha256=code_sha256("components.schema_importer"))


def _run(component, tmp_path):
    """The component's own TFX executor, as the orchestrator calls it; returns the output artifact."""
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "artifact")
    os.makedirs(schema.uri)
    component.executor_spec.executor_class().Do({}, {"schema": [schema]},
                                                 dict(component.exec_properties))
    return schema


def test_imports_the_schema_it_was_built_with(schema_file, tmp_path):
    component = _component(schema_file)
    schema = _run(component, tmp_path)
    with open(os.path.join(schema.uri, "schema.pbtxt"), encoding="utf-8") as f:
        assert f.read() == schema_file.read_text()


def test_a_schema_edited_after_the_pipeline_was_built_stops_the_import(schema_file, tmp_path):
    component = _component(schema_file)
    schema_file.write_text(schema_file.read_text() + "\n# edited\n")
    with pytest.raises(SchemaChangedError,
                       match=re.escape(f"{schema_file} changed after the pipeline was built; "
                                       "run the pipeline again")):
        _run(component, tmp_path)
    assert not os.path.exists(tmp_path / "artifact" / "schema.pbtxt")
