"""`python -m pipeline demo`: the page predicts in real headless Chromium with the TF.js export, as the
SavedModel does.

The pushed version is conftest's SavedModel (tf.Transform on 300 taxi rows) with the exports that
EdgeExport's own check made beside it (conftest's edge_export, shared with test_edge_export); the page
comes from the real `pipeline demo` server, a subprocess on a free 127.0.0.1 port.
"""
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import numpy as np
import pytest
import tensorflow as tf
import yaml
from click.testing import CliRunner

from components.edge_export import columns_of, saved_model_answers
from components.serving_check import raw_input_spec
from models import missing_values
from pipeline.cli import main
from pipeline.demo import page as demo_page
from tests import report_browser
from tests.conftest import TAXI_SPEC, cli_env, task_spec

pytestmark = pytest.mark.skipif(not os.path.exists(report_browser.CHROMIUM),
                                reason="Chromium is not installed (`make chromium`)")

MODEL_NAME = TAXI_SPEC.label.name
TOLERANCE = 1e-4  # TF.js against the SavedModel, as the parity check before push
UNSEEN = {"payment_type": "Bitcoin", "company": "  Nowhere Cab Co  "}  # in no vocabulary; padded


def push(exported_dir, serving_root, model_name):
    """<serving_root>/<model_name>/1/: EdgeExport's output (the SavedModel with its TFLite and TF.js
    exports beside it), as the Pusher leaves it."""
    shutil.copytree(exported_dir, os.path.join(serving_root, model_name, "1"))
    return serving_root


@contextlib.contextmanager
def demo_server(serving_root, *args):
    """`python -m pipeline demo --port 0`, as a user starts it; its URL once it listens. Ctrl+C
    stops it cleanly."""
    # SIGINT as in a terminal: a suite started in the background (`cmd &` in a script) ignores it,
    # and its children would inherit that.
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "demo", "--serving-dir", serving_root, "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []

    def read():
        for line in process.stdout:
            lines.append(line)
    threading.Thread(target=read, daemon=True).start()
    url = None
    for _ in range(600):  # up to 5 min on a busy machine: the CLI imports TensorFlow first
        url = next((w for line in lines for w in line.split() if w.startswith("http://")), None)
        if url or process.poll() is not None:
            break
        time.sleep(0.5)
    try:
        assert url, "".join(lines) + (process.stderr.read() if process.poll() is not None else "")
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, process.stderr.read()


@pytest.fixture(scope="module")
def serving_dir(tmp_path_factory, saved_model_dir, edge_export):
    exported, _ = edge_export(saved_model_dir)
    return push(exported, str(tmp_path_factory.mktemp("demo_serving")), MODEL_NAME)


@pytest.fixture(scope="module")
def demo_url(serving_dir):
    with demo_server(serving_dir) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=report_browser.CHROMIUM, headless=True,
                                     args=report_browser.CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Visit:
    """A page in a fresh browser context that records every request and console error; requests
    leaving 127.0.0.1 are refused (and recorded)."""

    def __init__(self, browser, base_url):
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.requests, self.errors = [], []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
            base_url) else route.abort())

    def answer(self):
        """The page's prediction once it is shown: the outputs it holds, and the text it shows."""
        self.page.wait_for_selector("#prediction[data-state=done]", timeout=60_000)
        return (json.loads(self.page.get_attribute("#prediction", "data-answer")),
                self.page.inner_text("#prediction"))


@pytest.fixture
def visit(browser, demo_url):
    opened = Visit(browser, demo_url)
    yield opened
    opened.context.close()
    outside = [u for u in opened.requests if not u.startswith(demo_url)]
    assert not outside, f"requests outside 127.0.0.1: {outside}"
    assert not opened.errors, opened.errors


@pytest.fixture(scope="module")
def cases(taxi_rows):
    """Raw rows as a user types them (text per column, "" = left empty): real taxi rows the model's
    tf.Transform never saw (gaps included), one with fare and the hour left empty, one with unseen
    categories, and one with every column empty."""
    rows = [{c: row[c] for c in TAXI_SPEC.serving_columns} for row in taxi_rows[1][7::60][:4]]
    rows[1] = {**rows[1], "fare": "", "trip_start_hour": ""}
    rows[2] = {**rows[2], **UNSEEN}
    rows.append({c: "" for c in TAXI_SPEC.serving_columns})
    return rows


def saved_model_expected(saved_model_dir, rows):
    """The SavedModel's serving_raw on the same raw values: an empty field is the column's marker."""
    model = tf.saved_model.load(saved_model_dir)
    spec = raw_input_spec(model)

    def typed(name, text):
        dtype = spec[name].dtype
        if text == "":
            return missing_values.marker(dtype)
        return text if dtype == tf.string else dtype.as_numpy_dtype(float(text))
    columns = columns_of([{n: typed(n, row[n]) for n in spec} for row in rows], spec)
    return saved_model_answers(model, columns)


@pytest.fixture(scope="module")
def expected(saved_model_dir, cases):
    return saved_model_expected(saved_model_dir, cases)


def assert_same(answer, expected, i):
    """The page's answer for case i is the SavedModel's: numbers within the tolerance (absolute up to
    1, relative above, as the parity check measures), class names equal."""
    assert set(answer) == set(expected)
    for key, want in expected.items():
        if want.dtype == object:
            assert list(answer[key]) == list(want[i]), f"case {i}: {key}"
            continue
        got = np.asarray(answer[key], dtype=np.float64).reshape(-1)
        assert np.all(np.abs(got - want[i]) <= TOLERANCE * np.maximum(1.0, np.abs(want[i]))), \
            f"case {i}: {key} {got} vs the SavedModel's {want[i]}"


def query(row):
    return urllib.parse.urlencode({c: v for c, v in row.items() if v != ""})


# --- In real headless Chromium, from the real server ---------------------------------------------------

def test_the_page_predicts_like_the_saved_model_from_the_query_string(visit, demo_url, cases,
                                                                      expected):
    for i, row in enumerate(cases):
        visit.page.goto(f"{demo_url}?{query(row)}")
        answer, text = visit.answer()
        assert_same(answer, expected, i)
        assert text.startswith(f"{MODEL_NAME}: probability ")
        assert float(text.rsplit(" ", 1)[1]) == pytest.approx(answer["probability"], abs=5e-5)
        # The query string filled the form, so the values shown are the values predicted on.
        assert visit.page.eval_on_selector_all(
            "#features input", "fs => Object.fromEntries(fs.map(f => [f.name, f.value]))") == row
    assert set(visit.requests) >= {demo_url + "static/tf.min.js", demo_url + "model/model.json"}


def test_the_form_predicts_like_the_saved_model_and_puts_the_values_in_a_link(
        visit, browser, demo_url, cases, expected):
    visit.page.goto(demo_url)  # nothing given: every column missing, the last case
    assert_same(visit.answer()[0], expected, len(cases) - 1)
    for i in (1, 2, 0):  # empty fields, unseen categories, a real row
        for column, text in cases[i].items():
            visit.page.fill(f"input[name='{column}']", text)
        visit.page.click("button[type=submit]")
        answer, _ = visit.answer()
        assert_same(answer, expected, i)
        link = visit.page.url
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(link).query) == {
            c: [v] for c, v in cases[i].items() if v != ""}
    # The link alone, in another page, gives the same prediction.
    other = Visit(browser, demo_url)
    other.page.goto(link)
    assert other.answer()[0] == answer
    assert not other.errors
    other.context.close()


def test_the_form_has_a_field_per_raw_column_and_the_trained_vocabularies(visit, demo_url,
                                                                         taxi_rows):
    visit.page.goto(demo_url)
    visit.answer()
    names = visit.page.eval_on_selector_all("#features input", "fs => fs.map(f => f.name)")
    assert names == list(TAXI_SPEC.serving_columns)
    trained_on = taxi_rows[1][:300]  # conftest's saved_model_dir: tf.Transform analysed these rows
    for column in ("payment_type", "company"):
        choices = visit.page.eval_on_selector_all(
            f"#{visit.page.get_attribute(f'input[name={column}]', 'list')} option",
            "os => os.map(o => o.value)")
        counts = collections.Counter(r[column].strip() for r in trained_on if r[column].strip())
        assert sorted(choices) == sorted(counts)  # fewer values than top_k: all of them
        assert choices[0] == counts.most_common(1)[0][0]  # most frequent first


def test_a_value_that_is_not_a_number_is_named_and_unknown_parameters_are_ignored(visit,
                                                                                 demo_url):
    visit.page.goto(f"{demo_url}?fare=twelve&payment_type=Cash&no_such_column=1")
    visit.page.wait_for_selector("#prediction[data-state=invalid]")
    assert visit.page.inner_text("#prediction") == 'fare: "twelve" is not a number'
    assert visit.page.inner_text("#notes") == "Not an input of this model, ignored: no_such_column"
    visit.page.goto(f"{demo_url}?trip_start_hour=8.5")
    visit.page.wait_for_selector("#prediction[data-state=invalid]")
    assert visit.page.inner_text("#prediction") == 'trip_start_hour: "8.5" is not an integer'


@pytest.mark.slow  # a tf.Transform analysis on Beam and a TF.js conversion per task: ~40 s each
@pytest.mark.parametrize("label, shown", [
    ({"column": "payment_type", "task": "multiclass", "classes": ["Cash", "Credit Card", "Unknown"]},
     r"payment_type: (?P<best>[A-Za-z ]+)\n(Cash|Credit Card|Unknown) 0\.\d{4} · .+ · .+"),
    ({"column": "tips", "task": "regression"}, r"tips: (?P<value>-?\d[\d.e+-]*)"),
])
def test_the_page_answers_as_the_models_task_does(label, shown, task_saved_model, edge_export,
                                                  cases, browser, tmp_path):
    """Multiclass: the most likely class first, then every class's probability; regression: the
    value. The spec of another label, written where `--spec` reads it."""
    spec = task_spec(label)
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (spec_dir / "dataset.yaml").write_text(yaml.safe_dump(spec.to_mapping(), sort_keys=False))
    saved_model = task_saved_model(label)
    rows = [{c: row[c] for c in spec.serving_columns} for row in cases]
    want = saved_model_expected(saved_model, rows)
    exported, _ = edge_export(saved_model)
    with demo_server(push(exported, str(tmp_path / "serving"), spec.label.name),
                     "--spec", str(spec_dir)) as url:
        visit = Visit(browser, url)
        for i, row in enumerate(rows):
            visit.page.goto(f"{url}?{query(row)}")
            answer, text = visit.answer()
            assert_same(answer, want, i)
            match = re.fullmatch(shown, text)
            assert match, text
            if "best" in match.groupdict():
                probabilities = want["probabilities"][i]
                assert match["best"] == want["classes"][i][int(np.argmax(probabilities))]
            else:
                assert float(match["value"]) == pytest.approx(want["prediction"][i][0], rel=2e-4,
                                                              abs=2e-4)
        visit.context.close()
        assert not visit.errors and all(u.startswith(url) for u in visit.requests)


# --- What is missing, named with its fix: fast, in-process ---------------------------------------------

def test_no_pushed_version_names_the_directory_and_the_fix(tmp_path):
    with pytest.raises(demo_page.DemoError, match=r"No pushed version of big_tipper in "
                       rf"{tmp_path}/big_tipper: run `python -m pipeline run`"):
        demo_page.newest_export(str(tmp_path), MODEL_NAME)
    result = CliRunner().invoke(main, ["demo", "--serving-dir", str(tmp_path), "--port", "0"])
    assert result.exit_code == 1
    assert "No demo page" in result.output and "No pushed version of big_tipper" in result.output


def test_a_version_without_a_tfjs_export_names_it_and_the_fix(tmp_path, serving_dir):
    shutil.copytree(os.path.join(serving_dir, MODEL_NAME, "1"), tmp_path / MODEL_NAME / "1")
    old = tmp_path / MODEL_NAME / "2"  # the newest: pushed before the portable exports
    shutil.copytree(tmp_path / MODEL_NAME / "1", old, ignore=shutil.ignore_patterns("tfjs"))
    with pytest.raises(demo_page.DemoError, match=rf"The newest pushed version {old} has no TF.js "
                       rf"export \({old}/tfjs/model.json is missing\).*Run `python -m pipeline run`"):
        demo_page.newest_export(str(tmp_path), MODEL_NAME)


def test_the_vocabulary_comes_from_the_pushed_model(tmp_path, serving_dir):
    shutil.copytree(os.path.join(serving_dir, MODEL_NAME, "1"), tmp_path / MODEL_NAME / "7")
    export = demo_page.newest_export(str(tmp_path), MODEL_NAME)
    with open(tmp_path / MODEL_NAME / "7" / "assets" / "payment_type", "w", encoding="utf-8") as f:
        f.write("Cash\nCredit Card\n")
    fields = {f.column: f for f in demo_page.form_fields(TAXI_SPEC, export)}
    assert fields["payment_type"].choices == ("Cash", "Credit Card")
    assert fields["fare"].dtype == "float32" and fields["trip_start_hour"].dtype == "int32"
    os.remove(tmp_path / MODEL_NAME / "7" / "assets" / "company")
    with pytest.raises(demo_page.DemoError, match=r"assets/company is missing: the pushed model has "
                                                  "no vocabulary for company"):
        demo_page.form_fields(TAXI_SPEC, export)
