import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from tstcnn.io.locks import LOCK_FILE, folder_lock

# Takes the lock, says so on stdout, then waits until stdin closes (or the process is killed).
HOLDER = textwrap.dedent("""
    import sys
    from tstcnn.io.locks import folder_lock
    with folder_lock(sys.argv[1], sys.argv[2], shared=sys.argv[3] == "shared"):
        print("locked", flush=True)
        sys.stdin.read()
""")


def _start_holder(folder, command: str = "tstcnn prepare", mode: str = "exclusive") -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), command, mode], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_process_is_refused_with_the_holders_pid_and_command(tmp_path):
    holder = _start_holder(tmp_path / "store")
    try:
        with pytest.raises(ValueError) as error, folder_lock(tmp_path / "store", "tstcnn train"):
            pass
        message = str(error.value)
        assert message == (f"{tmp_path / 'store'} is in use by `tstcnn prepare` (pid {holder.pid}); wait for it to "
                           "finish or choose another folder")
    finally:
        holder.stdin.close()
        holder.wait(30)
    assert holder.returncode == 0 and not (tmp_path / "store" / LOCK_FILE).exists()  # released and removed
    with folder_lock(tmp_path / "store", "tstcnn train"):
        pass


def test_the_lock_of_a_killed_process_does_not_block(tmp_path):
    holder = _start_holder(tmp_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    assert holder.returncode == -signal.SIGKILL
    stale = json.loads((tmp_path / LOCK_FILE).read_text())
    assert stale["pid"] == holder.pid  # the dead holder's file is still there
    with folder_lock(tmp_path, "tstcnn prepare") as path:
        assert json.loads(path.read_text()) == {"pid": os.getpid(), "command": "tstcnn prepare"}


def test_two_holders_in_one_process_exclude_each_other_and_release_on_error(tmp_path):
    with pytest.raises(RuntimeError), folder_lock(tmp_path, "first"):
        with pytest.raises(ValueError, match=r"in use by `first` \(pid \d+\)"), folder_lock(tmp_path, "second"):
            pass
        raise RuntimeError("stop")
    with folder_lock(tmp_path, "third"):
        assert (tmp_path / LOCK_FILE).is_file()


def test_shared_holders_exclude_only_exclusive_ones(tmp_path):
    killed = _start_holder(tmp_path, "tstcnn prepare --shard 0/3", "shared")
    killed.send_signal(signal.SIGKILL)  # its line stays in the file; it must not be named
    killed.wait(30)
    shard = _start_holder(tmp_path, "tstcnn prepare --shard 1/3", "shared")
    try:
        with folder_lock(tmp_path, "tstcnn prepare --shard 2/3", shared=True):
            in_use = rf"in use by `tstcnn prepare --shard 1/3` \(pid {shard.pid}\)"
            with pytest.raises(ValueError, match=in_use), folder_lock(tmp_path, "tstcnn prepare --merge"):
                pass
        assert (tmp_path / LOCK_FILE).is_file()  # the other shard still holds it
    finally:
        shard.stdin.close()
        shard.wait(30)
    whole = _start_holder(tmp_path, "tstcnn prepare")
    try:
        in_use = rf"in use by `tstcnn prepare` \(pid {whole.pid}\)"
        with pytest.raises(ValueError, match=in_use), folder_lock(tmp_path, "tstcnn prepare --shard 0/2", shared=True):
            pass
    finally:
        whole.stdin.close()
        whole.wait(30)
    with folder_lock(tmp_path, "tstcnn prepare --merge"):
        pass


def test_a_folder_the_lock_created_goes_when_nothing_was_written(tmp_path):
    empty, used = tmp_path / "new" / "out", tmp_path / "used"
    with pytest.raises(RuntimeError), folder_lock(empty, "tstcnn detect"):
        raise RuntimeError("failed before writing")
    assert not empty.exists() and (tmp_path / "new").is_dir()
    with folder_lock(used, "tstcnn detect"):
        (used / "result.xml").write_text("<video/>")
    assert sorted(p.name for p in used.iterdir()) == ["result.xml"]
    existing = tmp_path / "existing"
    existing.mkdir()
    with folder_lock(existing, "tstcnn detect"):
        pass
    assert existing.is_dir()
