"""The demo page's server: on 127.0.0.1, the page, its two scripts and the TF.js model, nothing else.

@tensorflow/tfjs comes from components/tfjs/node_modules (package-lock.json; `make tfjs`), the model
from the pushed version's tfjs/ directory. The page makes no request anywhere else.
"""
import http.server
import os
from typing import Dict

from components import edge_formats
from models.spec import DatasetSpec
from pipeline.demo import page
from pipeline.demo.page import DemoError

HOST = "127.0.0.1"
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
TFJS_SCRIPT = os.path.join(edge_formats.TFJS_TOOLS, "node_modules", "@tensorflow", "tfjs", "dist",
                           "tf.min.js")
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".json": "application/json", ".bin": "application/octet-stream"}


def routes(export: page.Export) -> Dict[str, str]:
    """URL path -> file: the scripts and every file of the TF.js export (model.json, weight shards)."""
    if not os.path.isfile(TFJS_SCRIPT):
        raise DemoError(f"{TFJS_SCRIPT} is missing: run `{edge_formats.TFJS_SETUP}` (npm ci of "
                        "components/tfjs/package-lock.json installs @tensorflow/tfjs).")
    files = {"/static/tf.min.js": TFJS_SCRIPT, "/static/demo.js": os.path.join(STATIC_DIR, "demo.js")}
    files.update({f"/model/{name}": os.path.join(export.tfjs_dir, name)
                  for name in sorted(os.listdir(export.tfjs_dir))})
    return files


class DemoServer(http.server.ThreadingHTTPServer):
    """Serves one rendered page at / (whatever its query string) and a fixed set of files."""
    daemon_threads = True

    def __init__(self, port: int, html: str, files: Dict[str, str], export: page.Export):
        self.html, self.files, self.export = html.encode("utf-8"), files, export
        super().__init__((HOST, port), _Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: DemoServer

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        if path == "/":
            body, content_type = self.server.html, _CONTENT_TYPES[".html"]
        elif path in self.server.files:
            with open(self.server.files[path], "rb") as f:
                body = f.read()
            content_type = _CONTENT_TYPES.get(os.path.splitext(path)[1], "application/octet-stream")
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        pass  # quiet: the page's requests are its own files


def start(spec: DatasetSpec, serving_dir: str, model_name: str, port: int) -> DemoServer:
    """A server for the newest pushed version's page, listening (serve_forever() answers requests)."""
    export = page.newest_export(serving_dir, model_name)
    html = page.render(spec, model_name, export, page.form_fields(spec, export))
    return DemoServer(port, html, routes(export), export)
