"""`data.dvc` round-trips through a real DVC remote: a local directory instead of the bucket.

The commands are the ones users run against the GCS remote (`make data DVC_REMOTE=...`:
`dvc remote modify --local gcs url URL`, then `dvc pull`), in throwaway git clones of this
repository, so its own `.dvc/config`, `data.dvc` and `data/` are never touched. One clone
writes a small synthetic ULB file where `data.dvc` says the real one lives, `dvc add`s and
pushes it; a second, fresh clone of the first pulls it, and the pulled bytes must be the
pushed ones. No network: dvc talks to a directory, analytics and update checks are off.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import yaml

from fraud_detection.schema import COLUMN_NAMES
from fraud_detection.schema import TARGET_NAME
from training.data import write_synthetic
from training.data.csv_source import read_transactions_csv

REPO = Path(__file__).resolve().parents[1]
#: Where data.dvc's comment, `make data` and the training docs put the real ULB file.
DATA_FILE = Path("data/creditcard.csv")
ROWS = 400


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (
        f"{' '.join(args)} (in {cwd}) exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def dvc(cwd: Path, env: dict[str, str], *args: str) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd, env)


def git(cwd: Path, env: dict[str, str], *args: str) -> str:
    return run(["git", *args], cwd, env)


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Git and DVC without the user's configs, identity, analytics or update checks."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "DVC_")) and k not in {"CI"}
    }
    home = tmp_path / "home"
    (home / "dvc-global").mkdir(parents=True)
    (home / "dvc-system").mkdir()
    (home / "dvc-global" / "config").write_text("[core]\n    check_update = false\n")
    (home / "gitconfig").write_text("")
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(home / "gitconfig"),
        GIT_AUTHOR_NAME="DVC Test",
        GIT_AUTHOR_EMAIL="dvc-test@example.invalid",
        GIT_COMMITTER_NAME="DVC Test",
        GIT_COMMITTER_EMAIL="dvc-test@example.invalid",
        GIT_TERMINAL_PROMPT="0",
        DVC_NO_ANALYTICS="1",
        DVC_STUDIO_OFFLINE="1",
        DVC_GLOBAL_CONFIG_DIR=str(home / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(home / "dvc-system"),
        DVC_SITE_CACHE_DIR=str(home / "dvc-site-cache"),
    )
    return env


def own_dvc_files() -> dict[str, bytes | None]:
    paths = [REPO / ".dvc/config", REPO / ".dvc/config.local", REPO / "data.dvc"]
    paths += sorted((REPO / "data").rglob("*")) if (REPO / "data").is_dir() else []
    return {str(p): p.read_bytes() if p.is_file() else None for p in paths}


def test_data_dvc_push_then_pull_through_a_local_remote(tmp_path: Path) -> None:
    before = own_dvc_files()
    env = isolated_env(tmp_path)
    remote = tmp_path / "remote"
    remote.mkdir()
    pusher, puller = tmp_path / "pusher", tmp_path / "puller"

    # The pushing side: a clone of this repo, the file where data.dvc tracks it, `dvc add`.
    git(tmp_path, env, "clone", "--quiet", str(REPO), str(pusher))
    tracked = yaml.safe_load((pusher / "data.dvc").read_text())
    assert [out["path"] for out in tracked["outs"]] == [str(DATA_FILE.parent)]
    committed_config = (pusher / ".dvc/config").read_bytes()
    assert b'remote "gcs"' in committed_config, "the committed remote is still named gcs"
    write_synthetic.main(
        [str(pusher / DATA_FILE), "--rows", str(ROWS), "--fraud-rate", "0.02", "--seed", "11"]
    )
    pushed_md5 = md5(pusher / DATA_FILE)
    dvc(pusher, env, "add", str(DATA_FILE.parent))
    added = yaml.safe_load((pusher / "data.dvc").read_text())
    (out,) = added["outs"]
    assert out["path"] == str(DATA_FILE.parent)
    assert out["md5"].endswith(".dir") and out["nfiles"] == 1
    git(pusher, env, "add", "data.dvc")
    git(pusher, env, "commit", "--quiet", "-m", "Track synthetic data")

    # `make data DVC_REMOTE=...`: the gcs remote's url, overridden in .dvc/config.local only.
    dvc(pusher, env, "remote", "modify", "--local", "gcs", "url", str(remote))
    dvc(pusher, env, "push")
    assert (pusher / ".dvc/config").read_bytes() == committed_config
    assert not git(pusher, env, "status", "--porcelain"), "push left the clone dirty"
    # The remote holds the file's real bytes under its md5 (and the directory's manifest).
    stored = remote / "files" / "md5" / pushed_md5[:2] / pushed_md5[2:]
    assert stored.is_file() and md5(stored) == pushed_md5
    dir_md5 = out["md5"].removesuffix(".dir")
    assert (remote / "files" / "md5" / dir_md5[:2] / f"{dir_md5[2:]}.dir").is_file()

    # The pulling side: a fresh clone (no data/, no DVC cache), the same command, `dvc pull`.
    git(tmp_path, env, "clone", "--quiet", str(pusher), str(puller))
    assert not (puller / DATA_FILE.parent).exists()
    assert not (puller / ".dvc" / "cache").exists()
    dvc(puller, env, "remote", "modify", "--local", "gcs", "url", str(remote))
    dvc(puller, env, "pull")
    pulled = puller / DATA_FILE
    assert pulled.is_file(), f"dvc pull did not write {DATA_FILE}"
    assert md5(pulled) == pushed_md5, "the pulled file's bytes differ from the pushed file's"
    assert (puller / ".dvc/config").read_bytes() == committed_config
    cloud_status = dvc(puller, env, "status", "--cloud")
    assert "are in sync" in cloud_status, cloud_status

    # The file training's data=csv reads: the ULB columns, both classes, every row.
    frame = read_transactions_csv(pulled)
    assert tuple(frame.columns) == COLUMN_NAMES
    assert len(frame) == ROWS
    assert set(frame[TARGET_NAME]) == {0, 1}

    assert own_dvc_files() == before, "the test changed this repository's own DVC files"
