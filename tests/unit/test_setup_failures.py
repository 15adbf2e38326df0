"""`linkup-sync setup` meets an ordinary failure (AWS credentials expired, a LibreLink Up error): the person
gets the cause and what to do, exit 2, never a traceback (issue 23: a parent in CloudShell)."""

from __future__ import annotations

import io
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import NoCredentialsError

from linkup_sync.errors import LinkUpMaintenance
from linkup_sync_cli import setup_command

ROOT = Path(__file__).resolve().parents[2]


def _run(env: dict[str, str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    args = Namespace(checkout=str(ROOT), yes=True, sam="sam")
    code = setup_command.run_setup(args, env, lambda: 0.0, out, err, runner=lambda *a, **k: (0, ""))
    return code, err.getvalue()


@pytest.mark.parametrize("failure", [NoCredentialsError(), LinkUpMaintenance()], ids=["aws-credentials", "librelinkup"])
def test_an_ordinary_failure_is_said_in_words_not_a_traceback(
    failure: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stack_outputs(stack: str, region: str) -> Any:
        raise failure

    monkeypatch.setattr(setup_command, "stack_outputs", stack_outputs)
    code, err = _run({"STACK_NAME": "linkup-sync", "AWS_REGION": "eu-central-1"})
    assert code == 2
    assert "setup: stopped:" in err and "Run `make setup` again" in err
    assert "Traceback" not in err
