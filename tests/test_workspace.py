from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slm_factory.workspace import Checkpoint, Workspace, write_atomic


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path):
    target = tmp_path / "out" / "a.json"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path: Path):
    workspace = Workspace(tmp_path)
    workspace.write_json("qa_alpaca", [{"id": "1"}])
    try:
        workspace.write_json("qa_alpaca", [{"id": object()}])  # not JSON-serialisable
    except TypeError:
        pass
    assert workspace.read_json("qa_alpaca") == [{"id": "1"}]
    assert [p.name for p in tmp_path.iterdir()] == ["qa_alpaca.json"]


def test_checkpoint_survives_a_torn_last_line(tmp_path: Path):
    checkpoint = Workspace(tmp_path).checkpoint("qa_alpaca")
    assert checkpoint.path.name == "qa_alpaca.partial.jsonl"
    checkpoint.extend([{"id": "a", "v": 1}, {"id": "b", "v": 2}])
    with checkpoint.path.open("ab") as handle:
        handle.write(b'{"id": "c", "v"')  # killed mid-write
    checkpoint.append({"id": "d", "v": 4})
    checkpoint.append({"id": "a", "v": 99})  # a duplicate after a resume keeps the first
    assert [item["id"] for item in checkpoint.read()] == ["a", "b", "d"]
    assert checkpoint.read()[0]["v"] == 1
    assert checkpoint.done_ids() == {"a", "b", "d"}


def test_checkpoint_lines_survive_kill_9(tmp_path: Path):
    """A child appends items and is killed with SIGKILL; every item it reported is on disk."""
    path = tmp_path / "x.partial.jsonl"
    code = (
        "import sys, os, signal\n"
        "from slm_factory.workspace import Checkpoint\n"
        f"c = Checkpoint(__import__('pathlib').Path({str(path)!r}))\n"
        "for i in range(50):\n"
        "    c.append({'id': str(i)})\n"
        "    print(i, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == -9
    reported = result.stdout.split()
    assert Checkpoint(path).done_ids() == set(reported) and len(reported) == 50


def test_state_round_trip(tmp_path: Path):
    workspace = Workspace(tmp_path)
    assert workspace.load_state() == {}
    workspace.save_state({"stages": {"parse": {"items": 3}}})
    assert json.loads((tmp_path / ".state.json").read_text())["stages"]["parse"]["items"] == 3
    os.remove(tmp_path / ".state.json")
    assert workspace.load_state() == {}


def test_atomic_write_gives_a_normal_file_mode(tmp_path: Path):
    import os
    import stat

    target = tmp_path / "report.html"
    write_atomic(target, b"<html></html>")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask  # readable by others where the umask allows


@pytest.mark.parametrize("data", [b"{", b"\xff\xfe not utf-8", b"[1, 2]", b'"text"', b'{"stages": [1]}', b""])
def test_a_damaged_state_file_reads_as_no_state(tmp_path: Path, data: bytes):
    """`status`, `run --resume` and the dashboard read it: a damaged one means nothing is up to date."""
    (tmp_path / ".state.json").write_bytes(data)
    assert Workspace(tmp_path).load_state() == {}
