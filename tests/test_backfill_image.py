"""The backfill's Dataproc Serverless image, built by ``make backfill-image`` and held to Google's
custom-container rules (https://cloud.google.com/dataproc-serverless/docs/guides/custom-containers):
no Spark in the image, ``procps`` and ``tini``, a ``spark`` user with UID and GID 1099, and
``PYSPARK_PYTHON`` naming the Python that has the job's packages.

Marked ``container`` (``make container-test``; ``docker`` started as ``tests/test_container.py``
starts it). The image is built by the real Makefile target from the test's trained store, on
``BASE_IMAGE`` from the environment (else ``make base-image``'s Debian base). Dataproc mounts
its own Spark and Java into the container; here this machine's pyspark (pip's, with its jars)
and JDK are mounted the same way, read-only, and ``spark-submit`` runs the batch's main file
(``backfill/dataproc_main.py``) as the ``spark`` user. What only GCP can check (the push, the
batch, the runtime's own Spark 4.0 and Java 21) is listed in docs/backfill.md (section 8).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.scorer import OnnxScorer
from tests.conftest import REPO
from tests.test_container import docker
from tests.test_container import start_dockerd
from training.data import generate_transactions

pytestmark = pytest.mark.container

TAG = "fraud-backfill:test"
SPARK_UID = 1099  # Google's rule: the `spark` user and group, UID and GID 1099
MODELS = {"mlp": "fraud-mlp", "distilbert": "fraud-distilbert"}
MOUNTED = "/opt/mounted-spark"  # where this machine's pyspark and py4j go in the container


@pytest.fixture(scope="module")
def image(trained_store: Path) -> str:
    """``make backfill-image`` with both models of the trained store, as a user runs it."""
    reason = start_dockerd()
    if reason is not None:
        pytest.skip(reason)
    env = {
        **os.environ,
        "BENTOML_HOME": str(trained_store),
        "BACKFILL_IMAGE": TAG,
        "MODEL": "mlp",
        "CHALLENGER": "distilbert",
    }
    built = subprocess.run(
        ["make", "backfill-image"], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800
    )
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    return TAG


def run_in(image: str, *command: str, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`command` in a fresh container of `image`, as the image's own user unless `args` say."""
    return docker("run", "--rm", *args, image, *command, check=False, timeout=300)


def latest_version(store: Path, name: str) -> str:
    return (store / "models" / name / "latest").read_text().strip()


# --- Google's rules ---------------------------------------------------------------------------


def test_the_spark_user_is_1099_and_runs_the_image(image: str) -> None:
    spark = run_in(image, "id", "spark")
    assert spark.stdout.strip() == "uid=1099(spark) gid=1099(spark) groups=1099(spark)"
    default = run_in(image, "sh", "-c", 'id -un; id -u; id -g; echo "$HOME"; test -O "$HOME"')
    assert default.returncode == 0, default.stderr
    assert default.stdout.split() == ["spark", str(SPARK_UID), str(SPARK_UID), "/home/spark"]


def test_tini_and_procps_are_installed(image: str) -> None:
    # tini as Spark's container images call it, reaping ps's child: both work as `spark`.
    done = run_in(image, "/usr/bin/tini", "-s", "--", "ps", "-o", "user=,comm=", "-u", "spark")
    assert done.returncode == 0, done.stderr
    assert "ps" in done.stdout.split()
    installed = run_in(image, "sh", "-c", "dpkg -s procps tini | grep -c '^Status: install ok'")
    assert installed.stdout.strip() == "2"


def test_no_spark_and_no_java_in_the_image(image: str) -> None:
    """Dataproc mounts Spark (and the JVM it runs on): the image brings neither."""
    imported = run_in(image, "/opt/venv/bin/python", "-c", "import pyspark")
    assert imported.returncode != 0 and "No module named 'pyspark'" in imported.stderr
    on_path = run_in(
        image, "sh", "-c", "for c in spark-submit spark-class pyspark java; do command -v $c; done"
    )
    assert on_path.stdout.strip() == "", on_path.stdout
    jars = run_in(image, "sh", "-c", "find / -xdev -name 'spark-core*.jar' 2>/dev/null")
    assert jars.stdout.strip() == ""


def test_the_job_python_has_the_project_and_serving_packages(image: str) -> None:
    env = run_in(image, "sh", "-c", 'echo "$PYSPARK_PYTHON"; echo "$PATH"; echo "$BENTOML_HOME"')
    pyspark_python, path, bentoml_home = env.stdout.split()
    assert pyspark_python == "/opt/venv/bin/python"
    assert path.split(":")[0] == "/opt/venv/bin"
    assert bentoml_home == "/opt/models"
    versions = run_in(
        image,
        "/opt/venv/bin/python",
        "-c",
        "import json, backfill, fraud_detection, numpy, onnxruntime, pandas, pyarrow; "
        "packages = (numpy, onnxruntime, pandas, pyarrow); "
        "print(json.dumps({m.__name__: m.__version__ for m in packages}))",
    )
    assert versions.returncode == 0, versions.stderr
    # Pinned to the versions these tests ran with (constraints.txt from this venv).
    host = {name: importlib.import_module(name).__version__ for name in json.loads(versions.stdout)}
    assert json.loads(versions.stdout) == host
    # The venv is root's: the job cannot change its own code.
    writable = run_in(image, "sh", "-c", "test -w /opt/venv/lib/python3.11/site-packages")
    assert writable.returncode != 0


def test_the_baked_store_holds_the_verified_models(image: str, trained_store: Path) -> None:
    listed = run_in(image, "bentoml", "models", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    tags = sorted(m["tag"] for m in json.loads(listed.stdout))
    expected = sorted(f"{name}:{latest_version(trained_store, name)}" for name in MODELS.values())
    assert tags == expected
    # As the driver reads them: by kind, checksums verified, from a store `spark` cannot write.
    checked = run_in(
        image,
        "python",
        "-c",
        "from fraud_detection.catalog import resolve_model; "
        "from fraud_detection.stored_models import stored_model; "
        "print(*(stored_model(resolve_model(k)[1]).stored.tag for k in ('mlp', 'distilbert')))",
    )
    assert checked.returncode == 0, checked.stderr
    assert sorted(checked.stdout.split()) == expected
    assert run_in(image, "sh", "-c", "test -w /opt/models/models").returncode != 0


# --- A Spark job through the image, Spark and Java mounted as Dataproc mounts them -----------


def spark_mounts() -> list[str]:
    """`docker run` arguments that mount this machine's pyspark, py4j and JDK, read-only."""
    found = {name: importlib.util.find_spec(name) for name in ("pyspark", "py4j")}
    if any(spec is None or spec.origin is None for spec in found.values()):
        pytest.skip("no pyspark in this environment (pip install pyspark)")
    java = os.environ.get("JAVA_HOME") or (
        str(Path(os.path.realpath(shutil.which("java"))).parents[1]) if shutil.which("java") else ""
    )
    if not java or not Path(java, "bin", "java").exists():
        pytest.skip("no JDK here for Spark (JAVA_HOME or java on PATH)")
    args = []
    for name, spec in found.items():
        args += ["-v", f"{Path(spec.origin).parent}:{MOUNTED}/{name}:ro"]
    # Debian's JDK links its conf/ to /etc/java-*: mount what the links point into, too.
    roots = {java}
    for link in Path(java).rglob("*"):
        if link.is_symlink() and os.readlink(link).startswith("/etc/java"):
            roots.add(str(Path(*Path(os.readlink(link)).parts[:3])))
    for root in sorted(roots):
        args += ["-v", f"{root}:{root}:ro"]
    return [
        *args,
        "-e",
        f"JAVA_HOME={java}",
        "-e",
        f"SPARK_HOME={MOUNTED}/pyspark",
        "-e",
        f"PYTHONPATH={MOUNTED}",
    ]


def test_spark_submit_runs_the_batch_main_file_in_the_image(
    image: str, trained_store: Path, tmp_path: Path
) -> None:
    """``spark-submit dataproc_main.py`` as Dataproc runs it: the `spark` user, the image's
    PYSPARK_PYTHON and model store, the master from spark-submit; scores as the host scores."""
    mounts = spark_mounts()
    frame = generate_transactions(2000, fraud_rate=0.01, seed=7)
    frame.insert(0, "transaction_id", [f"tx-{i:05d}" for i in range(len(frame))])
    (tmp_path / "in").mkdir()
    frame.to_parquet(tmp_path / "in" / "part-0.parquet", index=False)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)  # the container writes as uid 1099
    done = docker(
        "run",
        "--rm",
        *mounts,
        "-v",
        f"{tmp_path / 'in'}:/data/in:ro",
        "-v",
        f"{out}:/data/out",
        "-v",
        f"{REPO / 'backfill' / 'dataproc_main.py'}:/job/dataproc_main.py:ro",
        image,
        "/usr/bin/tini",
        "-s",
        "--",
        f"{MOUNTED}/pyspark/bin/spark-submit",
        "--master",
        "local[2]",
        "/job/dataproc_main.py",
        "--input",
        "/data/in",
        "--output",
        "/data/out/backfill",
        "--model",
        "mlp",
        "--challenger",
        "distilbert",
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = json.loads((out / "backfill" / "summary.json").read_text())
    assert summary["master"] == "local[2]"  # spark-submit's, as on Dataproc: not the CLI's
    assert summary["scored_rows"] == len(frame) and summary["rejected_rows"] == 0
    owners = {p.stat().st_uid for p in (out / "backfill").rglob("*.parquet")}
    assert owners == {SPARK_UID}

    # Every row's scores, as the host's ONNX Runtime gives them.
    scores = pd.read_parquet(out / "backfill" / "scores").set_index("transaction_id")
    scores = scores.loc[frame["transaction_id"]]
    features = frame[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    for kind, column in (("mlp", "fraud_probability"), ("distilbert", "challenger_probability")):
        version = latest_version(trained_store, MODELS[kind])
        scorer = OnnxScorer.from_directory(trained_store / "models" / MODELS[kind] / version)
        expected = scorer.predict_proba(features)
        assert np.abs(scores[column].to_numpy() - expected).max() <= 1e-6, kind
    assert set(scores["model_version"]) == {latest_version(trained_store, "fraud-mlp")}


# --- make backfill-dataproc, with gcloud and the registry stubbed ------------------------------


def stubbed_submit(
    tmp_path: Path, image: str, hide_ca: bool
) -> tuple[subprocess.CompletedProcess, Path]:
    """`make backfill-dataproc` with `gcloud` and `docker push` recorded, not run (the rest of
    docker is real). `hide_ca` drops PIP_CERT from what `docker image inspect` prints."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.jsonl"
    recorder = tmp_path / "record.py"
    recorder.write_text(
        "import json, sys\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[2:]) + '\\n')\n"
    )
    record = f'"{sys.executable}" "{recorder}" "{calls}"'
    real_docker = shutil.which("docker")
    scripts = {
        "gcloud": f'#!/bin/sh\nexec {record} gcloud "$@"\n',
        "docker": (
            "#!/bin/sh\n"
            f'if [ "$1" = push ]; then exec {record} docker "$@"; fi\n'
            f'if [ "$1 $2" = "image inspect" ] && [ -n "{"1" if hide_ca else ""}" ]; then\n'
            f'  "{real_docker}" "$@" | grep -v "^PIP_CERT="; exit 0; fi\n'
            f'exec "{real_docker}" "$@"\n'
        ),
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IEXEC)
    done = subprocess.run(
        [
            "make",
            "backfill-dataproc",
            f"BACKFILL_IMAGE={image}",
            "GCP_PROJECT=proj",
            "INPUT=gs://bucket/in/*.parquet",
            "OUTPUT=gs://bucket/out",
            "CHALLENGER=distilbert",
            "DATE_COLUMN=day",
        ],
        cwd=REPO,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, calls


def carries_ca(image: str) -> bool:
    env = docker("image", "inspect", image, "--format", "{{json .Config.Env}}").stdout
    return any(e.startswith("PIP_CERT=") for e in json.loads(env))


def test_dataproc_refuses_an_image_with_this_machines_ca(image: str, tmp_path: Path) -> None:
    if not carries_ca(image):
        pytest.skip("the base image carries no CA bundle (BASE_IMAGE_CA_BUNDLE unset)")
    done, calls = stubbed_submit(tmp_path, image, hide_ca=False)
    assert done.returncode != 0 and "CA bundle" in done.stdout + done.stderr
    assert not calls.exists()  # nothing pushed, nothing submitted


def test_dataproc_pushes_the_image_and_submits_the_main_file(image: str, tmp_path: Path) -> None:
    done, calls = stubbed_submit(tmp_path, image, hide_ca=True)
    image_id = docker("image", "inspect", image, "--format", "{{.Id}}").stdout.strip()
    remote = "us-central1-docker.pkg.dev/proj/fraud/fraud-backfill"
    pinned = f"{remote}:{image_id.removeprefix('sha256:')[:12]}"
    docker("rmi", pinned, f"{remote}:latest", check=False)  # the tags `make` gave the image
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    assert recorded[:2] == [["docker", "push", pinned], ["docker", "push", f"{remote}:latest"]]
    gcloud = recorded[2]
    split = gcloud.index("--")
    assert gcloud[:split] == [
        "gcloud",
        "dataproc",
        "batches",
        "submit",
        "pyspark",
        "backfill/dataproc_main.py",
        "--region=us-central1",
        "--version=3.0",
        f"--container-image={pinned}",
        "--deps-bucket=gs://proj-dataproc-deps",
        "--labels=app=fraud-backfill",
        "--service-account=fraud-backfill@proj.iam.gserviceaccount.com",
    ]
    assert (REPO / "backfill" / "dataproc_main.py").is_file()
    # The job's arguments are ones the CLI takes.
    from backfill.__main__ import parse

    job = parse(gcloud[split + 1 :])
    assert (job.input, job.output) == ("gs://bucket/in/*.parquet", "gs://bucket/out")
    assert (job.model, job.challenger, job.date_column, job.master) == (
        "mlp",
        "distilbert",
        "day",
        None,
    )
