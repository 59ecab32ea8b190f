"""The run report: one self-contained HTML page per run, `<output-dir>/reports/<run id>.html`.

`contents` gathers what the page shows (from the run summary, ML Metadata and the artifacts),
`figures` draws it, `page` renders the template and writes the file.
"""
