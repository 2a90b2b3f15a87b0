"""The sync benchmark's reading of the PouchDB harness's result files."""

from __future__ import annotations

import json
from pathlib import Path

from bench.sync import pouchdb_medians


def _run(**figures: object) -> dict[str, object]:
    return {"server": {}, "client": {}, "noise": {}, **figures}


def test_pouchdb_medians_pool_runs_of_every_file(tmp_path: Path) -> None:
    first = {
        "meta": {"label": "one"},
        "scenarios": [
            {"name": "S1 bulk pull, N=10000", "runs": [_run(docs_per_s=1000.0), _run(docs_per_s=3000.0)]},
            {"name": "S2 attachments pull, 500 x 16 KiB", "runs": [_run(MB_per_s=4.0)]},
            {"name": "S3 edit latency, 200 edits", "runs": [_run(e2e_samples=[10.0, 30.0, 20.0])]},
            {"name": "S4 conflict convergence, 10 rounds/run", "runs": [_run(details=[{"ms": 40.0}, {"ms": 50.0}])]},
        ],
    }
    second = {
        "meta": {"label": "two"},
        "scenarios": [
            {"name": "S1 bulk pull, N=10000", "runs": [_run(docs_per_s=2000.0)]},
            {"name": "S2 attachments pull, 500 x 16 KiB", "runs": [_run(MB_per_s=6.0), _run(MB_per_s=8.0)]},
            {"name": "S3 edit latency, 200 edits", "runs": [_run(e2e_samples=[40.0, 50.0])]},
        ],
    }
    files = []
    for name, content in (("one.json", first), ("two.json", second)):
        files.append(tmp_path / name)
        files[-1].write_text(json.dumps(content))
    assert pouchdb_medians(files) == {
        "s1-10000 docs/s": 2000.0,
        "s2 MB/s": 6.0,
        "s3 e2e median ms": 30.0,
        "s3 e2e p95 ms": 50.0,
        "s4 median ms": 45.0,
    }
