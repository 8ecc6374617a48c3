"""One request path: a direct command and the same work queued for the agent take the same
options and mean the same job parameters, which the catalog records exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import jobs
from engine.errors import UsageError
from lifeboat import arguments
from lifeboat.cli import build_parser

RESTORE = ["--pgdata", "/srv/restored", "--target-time", "2026-12-01 10:00:00+00",
           "--target-action", "pause", "--target-exclusive", "--tablespace-map", "16390=/srv/ts",
           "--standby", "--timeout", "10m", "--port", "5499", "--jobs", "3", "--archive-mode", "off"]


@pytest.mark.parametrize(("kind", "options"), [
    ("restore", RESTORE),
    ("backup", ["--type", "incr", "--checksum", "--no-expire", "--jobs", "2"]),
    ("verify", ["--backup", "20261201-000000F", "--since-last", "--jobs", "4"]),
    ("expire", ["--dry-run"]),
    ("drill", ["--kind", "partial"]),
])
def test_direct_and_enqueued_commands_mean_the_same_parameters(kind: str, options: list[str]) -> None:
    parser = build_parser()
    direct = arguments.params_from(kind, parser.parse_args([kind, *options]))
    queued = arguments.params_from(kind, parser.parse_args(["enqueue", kind, *options]))
    assert direct == queued
    assert jobs.validate_params(kind, direct) == jobs.validate_params(kind, queued)


def test_every_restore_option_reaches_the_restore_and_the_record() -> None:
    params = arguments.params_from("restore", build_parser().parse_args(["restore", *RESTORE]))
    recorded = jobs.validate_params("restore", params)
    assert recorded["target_action"] == "pause" and recorded["target_exclusive"] is True
    assert recorded["standby"] is True and recorded["timeout"] == 600.0
    options = jobs.restore_options(jobs.RestoreParams.model_validate(recorded))
    assert options.target.kind == "time" and options.target.action == "pause"
    assert options.tablespace_map == {16390: Path("/srv/ts")}
    assert (options.standby, options.timeout, options.port, options.jobs, options.archive_mode) == \
        (True, 600.0, 5499, 3, "off")


def test_a_bad_target_is_refused_when_asked_not_when_run() -> None:
    with pytest.raises(UsageError, match="not a time"):
        jobs.validate_params("restore", {"pgdata": "/srv/x", "target": "time", "target_value": "soon"})
    with pytest.raises(UsageError, match="must be an absolute path"):
        jobs.validate_params("restore", {"pgdata": "/srv/x", "tablespace_map": {"1": "rel/dir"}})
