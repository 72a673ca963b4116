"""docker/Dockerfile against the Makefile, the README and pyproject.

The image is `make install` and its command is `make demo`: these tests read the Dockerfile, the
Makefile and .dockerignore as text (no Docker engine, no network) and check that the two cannot
drift apart: the targets it runs exist, the main job is the README's, what `make install` reads
is in the image before it runs, the host's venv cannot replace the image's, the Python is the
one the pins are for, torch comes from the CPU index.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# ---------------------------------------------------------------------------------------- parsers


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]`` in order, as Docker reads them: comment lines dropped
    (also inside a continued instruction), a trailing backslash joins the next line."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), " ".join(args.split())))
    assert not pending, f"the Dockerfile ends inside a continued instruction: {pending!r}"
    return out


def make_invocations(command: str) -> list[list[str]]:
    """The targets of each ``make`` in a shell command (variables and options left out)."""
    out = []
    for part in re.split(r"&&|\|\||;|\|", command):
        words = shlex.split(part)
        if words and words[0] == "make":
            out.append([w for w in words[1:] if not w.startswith("-") and "=" not in w])
    return out


def command_words(args: str) -> str:
    """The command of a RUN/CMD/ENTRYPOINT as one shell string (exec form or shell form)."""
    if args.startswith("["):
        return shlex.join(json.loads(args))
    return args


def parse_makefile(text: str, overrides: dict[str, str] | None = None):
    """``(variables, rules)``: ``rules[target] = (prerequisites, recipe lines)``, variables
    expanded (``overrides`` first, e.g. ``ROOT`` -> ``.``)."""
    lines, pending = [], ""
    for raw in text.splitlines():
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    assign = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*(:=|\?=|\+=|=)\s*(.*)$")
    variables: dict[str, str] = {}
    raw_rules: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] = []
    for line in lines:
        if line.startswith("\t"):
            for target in current:
                raw_rules[target][1].append(line.strip())
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if m := assign.match(line):
            variables.setdefault(m.group(1), m.group(3).strip())
            current = []
            continue
        if ":" in line:
            left, _, right = line.partition(":")
            current = [t for t in left.split() if not t.startswith(".")]
            for target in current:
                raw_rules.setdefault(target, ([], []))[0].extend(
                    w for w in right.split() if w != "|")
    variables.update(overrides or {})

    def expand(value: str, depth: int = 0) -> str:
        assert depth < 20, f"recursive Makefile variable in {value!r}"
        return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                      lambda m: expand(variables.get(m.group(1), m.group(0)), depth + 1), value)

    rules = {expand(t): ([expand(p) for p in pre], [expand(r) for r in recipe])
             for t, (pre, recipe) in raw_rules.items()}
    return {k: expand(v) for k, v in variables.items()}, rules


def file_prerequisites(rules, target: str) -> set[str]:
    """The files ``target`` depends on, through the rules it depends on."""
    out: set[str] = set()
    for pre in rules[target][0]:
        if pre in rules:
            out |= file_prerequisites(rules, pre)
        else:
            out.add(pre)
    return out


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip().strip("/") for line in lines
            if line.strip() and not line.lstrip().startswith(("#", "!"))]


def ignored(path: str, patterns: list[str]) -> bool:
    path = path.strip("/").removeprefix("./")
    parts = Path(path).parts
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(p, pattern[3:]) for p in parts):
                return True
        elif any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern)
                 for i in range(1, len(parts) + 1)):
            return True
    return False


def covered(path: str, sources: list[str]) -> bool:
    """Whether a COPY of ``sources`` (paths in the context) brings ``path``."""
    path = path.removeprefix("./").strip("/")
    for src in sources:
        src = src.removeprefix("./").strip("/")
        if src in ("", ".") or path == src or path.startswith(src + "/"):
            return True
    return False


# --------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def docker():
    return dockerfile_instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def makefile():
    return parse_makefile((ROOT / "Makefile").read_text(), {"ROOT": ".", "CURDIR": "."})


def copies(docker) -> list[tuple[int, list[str]]]:
    """``[(index, sources)]`` of every COPY/ADD (flags such as ``--chown`` dropped)."""
    out = []
    for i, (word, args) in enumerate(docker):
        if word in ("COPY", "ADD"):
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            assert len(words) >= 2, f"{word} {args!r}: expected sources and a destination"
            out.append((i, words[:-1]))
    return out


def runs_of(docker, target: str) -> list[int]:
    """Indexes of the RUN instructions that run ``make <target>``."""
    return [i for i, (word, args) in enumerate(docker) if word == "RUN"
            and any(target in targets for targets in make_invocations(args))]


def env_of(docker) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in docker:
        if word == "ENV":
            words = shlex.split(args)
            if "=" not in words[0]:  # legacy ``ENV KEY value``
                env[words[0]] = " ".join(words[1:])
            else:
                env.update(w.split("=", 1) for w in words)
    return env


# ------------------------------------------------------------------------------------------ tests


def test_the_parsers_on_small_inputs():
    text = ("FROM a\n# c \\\nRUN x \\\n  # inside\n  && make -j2 install V=1 ; make test\n"
            'CMD ["make", "demo"]\n')
    docker = dockerfile_instructions(text)
    assert docker == [("FROM", "a"), ("RUN", "x && make -j2 install V=1 ; make test"),
                      ("CMD", '["make", "demo"]')]
    assert make_invocations(docker[1][1]) == [["install"], ["test"]]
    assert make_invocations(command_words(docker[2][1])) == [["demo"]]
    variables, rules = parse_makefile(
        "V := .v\nS := $(V)/.s\n.PHONY: a\na: $(S)\n$(S): p.toml \\\n  c.txt\n\techo $(V)\n")
    assert rules == {"a": ([".v/.s"], []), ".v/.s": (["p.toml", "c.txt"], ["echo .v"])}
    assert file_prerequisites(rules, "a") == {"p.toml", "c.txt"}
    assert ignored("src/x/__pycache__/m.pyc", ["**/__pycache__"])
    assert ignored(".venv/bin", [".venv"]) and not ignored("tests/data/x", ["data"])
    assert covered("src/reloop/cli/__init__.py", ["src"]) and not covered("srcx", ["src"])


def test_every_make_target_the_image_runs_or_documents_is_a_makefile_target(docker, makefile):
    _, rules = makefile
    commands = [command_words(args) for word, args in docker
                if word in ("RUN", "CMD", "ENTRYPOINT")]
    invoked = {t for c in commands for targets in make_invocations(c) for t in targets}
    assert {"install", "demo"} <= invoked
    # the header documents commands too (``docker run --rm -it reloop make test``)
    header = [line.lstrip("# ") for line in DOCKERFILE.read_text().splitlines()
              if line.startswith("#")]
    documented = {t for line in header for t in re.findall(r"\breloop make ([a-z][\w-]*)", line)}
    assert "test" in documented
    unknown = sorted((invoked | documented) - set(rules))
    assert not unknown, f"the Dockerfile runs make targets the Makefile lacks: {unknown}"


def test_the_image_command_is_the_readme_main_job(docker):
    readme = (ROOT / "README.md").read_text()
    main = re.findall(r"^\| `make ([\w-]+)` \|[^\n]*\bmain job\b", readme, flags=re.M)
    assert main == ["demo"], f"README names {main} as the main job"
    cmds = [args for word, args in docker if word == "CMD"]
    assert len(cmds) == 1 and not any(word == "ENTRYPOINT" for word, _ in docker)
    assert json.loads(cmds[0]) == ["make", main[0]]


def test_every_copy_source_exists_and_is_in_the_build_context(docker):
    patterns = dockerignore_patterns()
    sources = [s for _, srcs in copies(docker) for s in srcs]
    assert sources, "the Dockerfile copies nothing"
    for src in sources:
        assert (ROOT / src).exists(), f"COPY source {src!r} is not in the repository"
        if src not in (".", "./"):
            assert not ignored(src, patterns), f"COPY source {src!r} is excluded by .dockerignore"


def test_what_make_install_reads_is_copied_before_it_runs(docker, makefile):
    variables, rules = makefile
    installs = runs_of(docker, "install")
    assert installs, "the Dockerfile never runs `make install`"
    before = [s for i, srcs in copies(docker) if i < installs[0] for s in srcs]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = file_prerequisites(rules, "install")
    assert {"pyproject.toml", "constraints.txt"} <= needed  # what the stamp depends on
    needed |= {"Makefile", pyproject["project"]["readme"],
               *pyproject["tool"]["setuptools"]["packages"]["find"]["where"]}
    missing = sorted(p for p in needed if not covered(p, before))
    assert not missing, f"copied only after the first `make install`: {missing}"
    # ... and the last install runs after the last copy, so `make demo` does not reinstall
    assert installs[-1] > max(i for i, _ in copies(docker))
    # the whole checkout is in the image for `make demo` and `make test` (dags/, params.yaml,
    # dvc.yaml, tests/, ...)
    everything = [s for _, srcs in copies(docker) for s in srcs]
    for path in ("dags", "params.yaml", "dvc.yaml", ".dvc", "tests"):
        assert covered(path, everything), f"{path} is not copied into the image"


def test_dockerignore_keeps_the_hosts_venv_and_airflow_home_out(makefile):
    variables, _ = makefile
    venv = variables["VENV"]
    home = re.search(r"AIRFLOW_HOME=(\S+)", variables["AIRFLOW_ENV"]).group(1)
    assert (venv, home) == (".venv", "./.airflow")
    patterns = dockerignore_patterns()
    for path in (venv, home, "build", ".git", "src/reloop/__pycache__"):
        assert ignored(path, patterns), f".dockerignore does not exclude {path}"
    for path in ("src", "dags", "tests/data/test_replay.py", "params.yaml", ".dvc/config"):
        assert not ignored(path, patterns), f".dockerignore excludes {path}, which is needed"


def test_the_base_python_is_the_one_the_pins_are_for(docker):
    base = next(args for word, args in docker if word == "FROM")
    m = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?-slim(?:-\w+)?(?:@sha256:[0-9a-f]+)?", base)
    assert m, f"FROM {base!r}: expected an official python:X.Y-slim image"
    version = m.group(1)
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert version in SpecifierSet(requires), f"python {version} is outside {requires}"
    # constraints.txt is locked with the README's Python (`make lock`): the same one here
    readme = re.search(r"with Python (\d+\.\d+) and `make`", (ROOT / "README.md").read_text())
    assert readme and version == readme.group(1) == "3.11"


def test_torch_comes_from_the_cpu_index(docker):
    env = env_of(docker)
    assert env["PIP_EXTRA_INDEX_URL"] == CPU_INDEX
    # the index is set before `make install` runs (pip reads it from the environment)
    env_at = min(i for i, (word, args) in enumerate(docker)
                 if word == "ENV" and "PIP_EXTRA_INDEX_URL" in args)
    assert env_at < runs_of(docker, "install")[0]
    # no RUN installs with pip itself, past the Makefile (and its constraints)
    assert not [a for w, a in docker if w == "RUN" and re.search(r"\bpip\b.*\binstall\b", a)]
    # constraints.txt pins a public version, which the index's X.Y.Z+cpu satisfies
    pins = re.findall(r"^torch==(\S+)$", (ROOT / "constraints.txt").read_text(), flags=re.M)
    assert len(pins) == 1 and re.fullmatch(r"\d+\.\d+\.\d+", pins[0]), pins
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"torch=={pins[0]}" in deps


def test_the_image_has_the_tools_the_recipes_call_and_runs_as_a_user(docker, makefile):
    _, rules = makefile
    apt = " ".join(args for word, args in docker if word == "RUN" and "apt-get install" in args)
    packages = set(shlex.split(apt.split("apt-get install", 1)[1].split("&&")[0])) if apt else set()
    needed = {"git", "make"}  # DVC and the archive; the image runs the Makefile
    # dash, make's /bin/sh in Debian, has no `time`: a recipe that times (`make demo-live`)
    # needs /usr/bin/time
    recipes = [line.lstrip("@-+") for _, recipe in rules.values() for line in recipe]
    if any(re.search(r"(^|&&|;)\s*time\s", line) for line in recipes):
        needed.add("time")
    assert needed <= packages, f"apt-get installs {sorted(packages)}, needs {sorted(needed)}"
    users = [(i, args) for i, (word, args) in enumerate(docker) if word == "USER"]
    assert users and users[-1][1] not in ("root", "0")
    assert users[-1][0] < runs_of(docker, "install")[0]  # the venv belongs to that user
    workdir = [args for word, args in docker if word == "WORKDIR"][-1]
    # the paths the header gives (results, volume) are under the image's working directory
    text = DOCKERFILE.read_text()
    assert "docker build -f docker/Dockerfile -t reloop ." in text
    paths = set(re.findall(r"(/opt/\S*?)(?=[\s:'\"]|$)", text))
    assert paths and all(p == workdir or p.startswith(workdir + "/") for p in paths), paths
