"""The project lock: a second window learns who edits the project; a taken-over window knows."""

from __future__ import annotations

import json
import subprocess
import sys

from stoneseg_core.io.project_lock import LOCK_FILE, ProjectLock, read_owner


def test_a_second_window_finds_the_first_and_may_take_over(tmp_path):
    first, second = ProjectLock(tmp_path), ProjectLock(tmp_path)
    assert first.acquire() is None and first.held
    assert (tmp_path / LOCK_FILE).is_file()
    owner = second.acquire()  # the first window is alive: the second is told who
    assert owner is not None and owner.token == first.me.token and not second.held
    assert "another StoneSeg window (process" in owner.describe()
    assert first.still_ours() and first.taken_by() is None

    second.take_over()  # the user chose "take over"
    assert second.held and second.still_ours()
    assert not first.still_ours() and first.taken_by().token == second.me.token
    first.release()  # the first window closes: the second's lock stays
    assert read_owner(tmp_path / LOCK_FILE).token == second.me.token
    second.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_left_by_a_dead_process_is_taken(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = ProjectLock(tmp_path)
    data = dict(stale.me.__dict__, pid=int(dead.stdout))  # that process has ended
    (tmp_path / LOCK_FILE).write_text(json.dumps(data))
    mine = ProjectLock(tmp_path)
    assert mine.acquire() is None and mine.held and mine.still_ours()


def test_no_lock_on_a_folder_that_takes_none(tmp_path):
    (tmp_path / "a_file").write_text("")
    lock = ProjectLock(tmp_path / "a_file" / "data")  # no folder can be made there
    assert lock.acquire() is None and not lock.held and lock.still_ours()
    (tmp_path / LOCK_FILE).write_text("not json")  # damaged: ignored, replaced
    other = ProjectLock(tmp_path)
    assert other.acquire() is None and other.held
