"""The README's deploy recipes, run as far as a machine without Docker or Kubernetes allows.

- The Dockerfile: its instructions are executed in order in a scratch root
  (each absolute path the image uses lives under it): ``RUN`` with bash, ``ENV``
  into the environment, ``COPY`` from the repository (the build context),
  ``WORKDIR``; ``FROM`` is checked to be a Python sqlrunner supports, ``USER`` is
  noted (the suite cannot switch users), and ``CMD`` runs against the test
  server. The virtual environment it creates is fresh; its dependencies come from
  this suite's environment through a ``.pth`` file, so no download is needed, while
  sqlrunner itself is built and installed from the copied checkout as ``RUN`` says.
- The Kubernetes manifest: parsed; the init container's command runs in the
  image's working directory with DATABASE_URL from the Secret (the test DSN),
  twice at once, as two pods of a rolling deploy would.
- The CI job: parsed; its ``run`` steps run in order in a checkout, with its
  ``secrets.DATABASE_URL`` the test DSN. The install step is the Dockerfile's
  pip install of the checkout, already done: ``.venv`` is that environment.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("opt", "src", "app")  # the absolute paths the image uses, kept under a scratch root
IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".sqlrunner",
    "__pycache__",
    "*.egg-info",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "build",
    "dist",
)


def recipe(name: str) -> str:
    """The fenced block after ``<!-- recipe: NAME -->`` in the README."""
    text = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- recipe: {name} -->\s*\n```\w*\n(.*?)^```", text, re.M | re.S)
    assert found, f"README.md has no '{name}' recipe"
    return found[1]


def as_url(conninfo: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    p = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v}
    return (
        f"postgresql://{p.get('user', 'postgres')}@/{p.get('dbname', 'postgres')}"
        f"?host={p['host']}&port={p.get('port', '5432')}"
        if p.get("host", "").startswith("/")
        else f"postgresql://{p.get('user', 'postgres')}:{p.get('password', '')}@"
        f"{p['host']}:{p.get('port', '5432')}/{p.get('dbname', 'postgres')}"
    )


@dataclass
class Image:
    """What the Dockerfile left: its files under ``root``, its environment, its CMD."""

    root: Path
    env: dict[str, str]
    workdir: Path
    cmd: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def local(self, text: str) -> str:
        """The image's absolute paths, moved under the scratch root."""
        return re.sub(rf"(?<![\w$:/.])/(?=(?:{'|'.join(ROOTS)})(?:/|\b))", f"{self.root}/", text)

    def venv(self) -> Path:
        return next(p.parent for p in (self.root / "opt").glob("*/pyvenv.cfg"))


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", dockerfile)
    rows = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def give_dependencies(image: Image) -> None:
    """A fresh venv sees this suite's installed packages (not sqlrunner: no editable
    finder runs from a path a .pth adds), so pip need not download them."""
    for cfg in (image.root / "opt").glob("*/pyvenv.cfg"):
        for site in cfg.parent.glob("lib/python*/site-packages"):
            (site / "suite-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    root = tmp_path_factory.mktemp("image")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # `python` is a 3.10+ here
    built = Image(root, env, root)
    for word, rest in instructions(recipe("dockerfile")):
        rest = built.local(rest)
        if word == "FROM":
            version = re.match(r"python:(\d+)\.(\d+)", rest)
            assert version and (int(version[1]), int(version[2])) >= (3, 10), rest
        elif word == "RUN":
            done = subprocess.run(
                ["bash", "-ec", rest],
                cwd=built.workdir,
                env=built.env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"RUN {rest}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            give_dependencies(built)
        elif word == "ENV":
            key, _, value = rest.partition("=")
            built.env[key] = re.sub(
                r"\$\{?(\w+)\}?", lambda m: built.env.get(m[1], ""), value.strip('"')
            )
        elif word == "COPY":
            source, target = shlex.split(rest)
            shutil.copytree(REPO / source, Path(target), ignore=IGNORED, dirs_exist_ok=True)
        elif word == "WORKDIR":
            built.workdir = Path(rest)
            built.workdir.mkdir(parents=True, exist_ok=True)
        elif word == "USER":
            built.notes.append(f"USER {rest}: not applied, the suite runs as itself")
        elif word == "CMD":
            built.cmd = json.loads(rest)  # the exec form: no shell between it and signals
        else:
            pytest.fail(f"the Dockerfile recipe uses {word}, which this test does not run")
    assert built.cmd, "the Dockerfile has no CMD"
    return built


def run(argv: list[str], image: Image, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env={**image.env, **env},
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def applied(dsn: str) -> list[tuple[int, int]]:
    """(version, times applied) from the history: each migration exactly once."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT version, count(*) FROM sqlrunner_ledger_history "
            "WHERE action = 'apply' AND kind = 'forward' AND outcome = 'ok' "
            "GROUP BY version ORDER BY version"
        ).fetchall()
    return [(int(v), int(n)) for v, n in rows]


def forward_versions() -> list[int]:
    return sorted(int(p.name[:4]) for p in (REPO / "sql/forward").glob("*.sql"))


def test_the_dockerfile_builds_and_its_cmd_applies_the_set(image: Image, dsn: str) -> None:
    sqlrunner = shutil.which("sqlrunner", path=image.env["PATH"])
    assert sqlrunner is not None and Path(sqlrunner).is_relative_to(image.venv())
    installed = run(
        [str(image.venv() / "bin/python"), "-c", "import sqlrunner; print(sqlrunner.__file__)"],
        image,
        image.workdir,
    )
    assert Path(installed.stdout.strip()).is_relative_to(image.venv()), (
        installed
    )  # not the checkout
    first = run(image.cmd, image, image.workdir, DATABASE_URL=as_url(dsn))
    assert first.returncode == 0, first.stderr
    events = [json.loads(line) for line in first.stderr.splitlines()]  # --log-format json
    assert {"ts", "event", "message"} <= set(events[0])
    again = run(image.cmd, image, image.workdir, DATABASE_URL=as_url(dsn))
    assert again.returncode == 0, again.stderr
    assert applied(dsn) == [(v, 1) for v in forward_versions()]


def test_the_init_container_command_runs_in_two_pods_at_once(image: Image, dsn: str) -> None:
    manifest = yaml.safe_load(recipe("kubernetes"))
    pod = manifest["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert manifest["kind"] == "Deployment" and manifest["spec"]["replicas"] >= 2
    (variable,) = init["env"]
    assert variable["name"] == "DATABASE_URL" and "secretKeyRef" in variable["valueFrom"]
    results: list[subprocess.CompletedProcess[str]] = []

    def pod_starts() -> None:
        results.append(run(init["command"], image, image.workdir, DATABASE_URL=as_url(dsn)))

    pods = [threading.Thread(target=pod_starts) for _ in range(2)]
    for p in pods:
        p.start()
    for p in pods:
        p.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert applied(dsn) == [(v, 1) for v in forward_versions()]


def test_the_ci_job_gates_on_status_exit_code(image: Image, dsn: str, tmp_path: Path) -> None:
    workflow = yaml.safe_load(recipe("ci"))
    job = workflow["jobs"]["schema-gate"]
    assert workflow["jobs"]["deploy"]["needs"] == "schema-gate"
    steps = [s["run"] for s in job["steps"] if "run" in s]
    assert steps[0] == "python3 -m venv .venv && .venv/bin/pip install ."  # the Dockerfile's
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "sql", checkout / "sql")
    (checkout / ".venv").symlink_to(image.venv())
    secrets = {
        k: v.replace("${{ secrets.DATABASE_URL }}", as_url(dsn)) for k, v in job["env"].items()
    }

    def gate() -> list[int]:
        return [
            run(["bash", "-ec", step], image, checkout, **secrets).returncode for step in steps[1:]
        ]

    assert gate() == [0, 6]  # nothing applied yet: the deploy must not start
    assert run(image.cmd, image, checkout, DATABASE_URL=as_url(dsn)).returncode == 0
    assert gate() == [0, 0]
    applied_file = sorted((checkout / "sql/forward").glob("*.sql"))[0]
    applied_file.write_text(applied_file.read_text() + "\n-- edited after it was applied\n")
    assert gate()[-1] == 1  # drift stops the deploy too
