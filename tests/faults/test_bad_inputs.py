"""Bad inputs: each is refused with exit 2 and an error naming the file, parameter or date;
nothing is lost or half-written; production does not move; and once the input is fixed, a plain
rerun reproduces the clean workspace byte for byte.

Each row of :data:`CASES` is (name, command, expected error, setup, ...); see :class:`Bad`.
``{case}`` in a command is the case's scratch directory, outside the workspace.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

from tests.faults.workspace import REPLAY_DAY, leftovers, raw_digest
from tests.support.campaign import Workspace, diff, reloop
from tests.support.params import DAY1, DAY2, DAY3

IMP2 = f"logs/impressions/date={DAY2}"
FB2 = f"logs/feedback/date={DAY2}"
PART2 = f"{IMP2}/part-sim-{DAY2}.parquet"
JOINED1 = f"joined/date={DAY1}/train.parquet"
QUARANTINE = r"^(quarantine/|reports/validation/)"  # what a failed validation records


@dataclass(frozen=True)
class Bad:
    """One bad input.

    ``setup`` makes the input bad (in the workspace or in ``{case}``); the rerun first undoes
    every change ``setup`` made in the workspace (from the snapshot), then runs ``rerun``
    (default: the same command). ``writes`` is a regex of the paths the refused command may
    write (a failed validation's records); ``absent`` lists paths it must not create. The rerun
    must reproduce the snapshot ``expect`` (default: the one the case started from), plus the
    paths matching ``rerun_writes`` (``reloop report``'s pictures and site).
    """

    name: str
    args: tuple[str, ...]
    message: str
    setup: Callable[[Workspace], None] | None = None
    rerun: tuple[str, ...] | None = None
    writes: str | None = None
    absent: tuple[str, ...] = ()
    start: str = "clean"
    expect: str | None = None
    rerun_writes: str | None = None
    marks: tuple = field(default_factory=tuple)


#: what a successful ``reloop report`` writes: its pictures and the workspace's report site
REPORT_OUTPUTS = r"^reports/(index\.html|plots/[a-z_]+\.png)$"

# ---------------------------------------------------------------------------- setups


def edit(old: str, new: str, path: str = "params.yaml") -> Callable[[Workspace], None]:
    def setup(w: Workspace) -> None:
        text = (w.root / path).read_text()
        assert old in text, f"{old!r} not in {path}"
        (w.root / path).write_text(text.replace(old, new, 1))
    return setup


def append(text: str, path: str = "params.yaml") -> Callable[[Workspace], None]:
    def setup(w: Workspace) -> None:
        with (w.root / path).open("a") as fh:
            fh.write(text)
    return setup


def replace_file(path: str, content: str) -> Callable[[Workspace], None]:
    return lambda w: (w.root / path).write_text(content)


def params_copy(name: str, old: str, new: str) -> Callable[[Workspace], None]:
    """``{case}/NAME``: the workspace's params with one change (its paths still relative)."""
    def setup(w: Workspace) -> None:
        text = (w.root / "params.yaml").read_text()
        assert old in text, f"{old!r} not in params.yaml"
        (w.case / name).write_text(text.replace(old, new, 1))
    return setup


def truncate(path: str) -> Callable[[Workspace], None]:
    def setup(w: Workspace) -> None:
        p = w.root / path
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    return setup


def flip_byte(path: str, at: int = -64) -> Callable[[Workspace], None]:
    def setup(w: Workspace) -> None:
        p = w.root / path
        data = bytearray(p.read_bytes())
        data[at] ^= 0xFF
        p.write_bytes(bytes(data))
    return setup


def version(w: Workspace, which: int) -> str:
    """The model id of the ``which``-th promotion in the workspace's registry history."""
    history = json.loads((w.root / "registry" / "production.json").read_text())["history"]
    return history[which]["model_id"]


def in_version(which: int, rel: str, corrupt: Callable[[str], Callable]) -> Callable:
    return lambda w: corrupt(f"registry/versions/{version(w, which)}/{rel}")(w)


def extra_part(partition: str, change: Callable[[pl.DataFrame], pl.DataFrame],
               name: str = "part-extra.parquet", seal: bool = True) -> Callable[[Workspace], None]:
    """Drop a second part file into a raw partition: rows of the first one, changed. ``seal``:
    its producer seals the day again (the bad rows are then what the day declares complete);
    otherwise the part appears after the seal."""
    def setup(w: Workspace) -> None:
        from reloop.data.logs.seal import seal_day

        first = sorted((w.root / partition).glob("part-*.parquet"))[-1]
        change(pl.read_parquet(first)).write_parquet(w.root / partition / name)
        if seal:
            day = partition.rsplit("date=", 1)[1]
            seal_day(w.root / "logs", day, 60, oracle_root=w.root / "oracle", reseal=True)
    return setup


def edit_seal(day: str, change: Callable[[dict], None]) -> Callable[[Workspace], None]:
    """Change day ``day``'s seal (``logs/_seals/date=D.json``); the raw parts stay as they are."""
    def setup(w: Workspace) -> None:
        path = w.root / "logs" / "_seals" / f"date={day}.json"
        seal = json.loads(path.read_text())
        change(seal)
        path.write_text(json.dumps(seal, indent=2, sort_keys=True) + "\n")
    return setup


def _recount(seal: dict) -> None:
    seal["files"][PART2.removeprefix("logs/")]["rows"] += 1


def fresh_ids(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(request_id=pl.lit("bad-") + pl.col("request_id"))


def table(name: str, change: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable:
    """``{case}/NAME``: DAY1's joined table, changed."""
    return lambda w: change(pl.read_parquet(w.root / JOINED1)).write_parquet(w.case / name)


def three_rows(df: pl.DataFrame) -> pl.DataFrame:
    return pl.concat([df.filter(pl.col("y") == 0).head(1), df.filter(pl.col("y") == 1).head(2)])


def evil_version(w: Workspace) -> None:
    """A directory outside the registry that looks like a version."""
    evil = w.case / "evil"
    (evil / "model").mkdir(parents=True)
    (evil / "version.json").write_text(json.dumps({"model_id": "evil", "period": DAY1}))


def rollback_to(which: int) -> Callable[[Workspace], tuple[str, ...]]:
    return lambda w: ("registry", "rollback", "--to", version(w, which))


WEEKLY = params_copy("weekly.yaml", "period_days: 1", "period_days: 7")
OTHER_FEATURES = params_copy("other.yaml", "buckets: 1024", "buckets: 2048")
NO_WARM_START = params_copy("cold.yaml", "warm_start: true", "warm_start: false")
PROMOTE = ("stage", "promote", "--date", DAY2)
INGEST3 = ("stage", "ingest", "--date", DAY3)
TRAIN_OK = ("train", "--data", JOINED1, "--out", "cli-models/day1", "--overwrite")
CONVERT = ("replay", "convert", "movielens-100k", "--source", "raw/ml-100k", "--params",
           "replay.yaml")
NOT_A_VERSION = r"is not in the registry: a version id is exactly 16 lowercase hexadecimal"

CASES = [
    # ---- params.yaml: each error names the file and the parameter
    Bad("params-malformed-yaml", PROMOTE,
        r"params\.yaml: not valid YAML at line \d+, column \d+: expected ',' or ']'",
        edit("alpha: 0.5", "alpha: [0.5")),
    Bad("params-duplicate-key", PROMOTE,
        r"params\.yaml: duplicate key 'alpha' in section 'train' \(lines (\d+) and (?!\1)\d+\)",
        edit("alpha: 0.5", "alpha: 0.5\n  alpha: 0.9")),
    Bad("params-duplicate-section", INGEST3,
        r"params\.yaml: duplicate key 'promote' at the top level \(lines \d+ and \d+\)",
        append("promote:\n  min_auc_gain: 0.5\n")),
    Bad("params-unknown-key", PROMOTE, r"invalid configuration in params\.yaml:\n  "
        r"train\.alpah: unknown parameter", edit("alpha: 0.5", "alpah: 0.5")),
    Bad("params-out-of-range", PROMOTE,
        r"train\.alpha=1\.5: Input should be less than or equal to 1",
        edit("alpha: 0.5", "alpha: 1.5")),
    Bad("params-wrong-type", ("stage", "memory", "--date", DAY2),
        r"train\.batch_size='big': Input should be a valid integer",
        edit("batch_size: 256", "batch_size: big")),
    Bad("params-unknown-backbone", PROMOTE,
        r"model\.backbone='dcnx': .*backbone='dcnx' is not supported; expected one of \[",
        edit("backbone: deepfm", "backbone: dcnx")),
    Bad("params-negative-lock-timeout", INGEST3,
        r"pipeline\.lock_timeout_s=-1(\.0)?: Input should be greater than or equal to 0",
        edit("lock_timeout_s: 3600.0", "lock_timeout_s: -1")),
    Bad("params-not-a-mapping", ("registry", "show"),
        r"params\.yaml: expected a mapping at the top level, got list",
        replace_file("params.yaml", "- features\n- train\n")),
    Bad("params-empty", ("registry", "show"), r"params\.yaml:\n  features: required parameter "
        r"is missing", replace_file("params.yaml", "")),
    Bad("params-missing-file", ("stage", "promote", "--date", DAY2, "--params", "nope.yaml"),
        r"params file 'nope\.yaml' does not exist", rerun=PROMOTE),
    # ---- dates and ranges: named, refused before anything is written
    Bad("date-invalid", ("stage", "promote", "--date", "2026-13-01"),
        r"--date='2026-13-01' is not a valid ISO date \(YYYY-MM-DD\)", rerun=PROMOTE),
    Bad("range-reversed", ("validate", "--date", DAY2, "--end", DAY1),
        rf"--end {DAY1} is before --date {DAY2}",
        rerun=("validate", "--date", DAY1, "--end", DAY2)),
    Bad("range-reversed-join", ("join", "--date", DAY2, "--end", DAY1),
        rf"--end {DAY1} is before --date {DAY2}", rerun=("join", "--date", DAY1, "--end", DAY2)),
    Bad("range-reversed-report", ("report", "--start", DAY2, "--end", DAY1),
        rf"--end {DAY1} is before --start {DAY2}", rerun=("report", "--start", DAY1, "--end",
                                                         DAY2), rerun_writes=REPORT_OUTPUTS),
    # a range that never ran (another workspace's params, a typo in a date) used to print a
    # table of dashes and succeed
    Bad("report-range-never-run", ("report", "--start", "2026-01-20", "--end", "2026-01-21"),
        r"no period from 2026-01-20 to 2026-01-21 has run in this workspace \(nothing under "
        r".*evaluation or .*decisions\)", rerun=("report", "--start", DAY1, "--end", DAY2),
        rerun_writes=REPORT_OUTPUTS),
    Bad("weekly-not-a-monday", ("report", "--start", DAY3, "--end", DAY3, "--params",
                                "{case}/weekly.yaml"),
        rf"--start {DAY3} is a Wednesday; periods of logs\.period_days=7 start on Mondays .*use "
        rf"{DAY1}", WEEKLY, rerun=("report", "--start", DAY1, "--end", DAY1, "--params",
                                   "{case}/weekly.yaml"), rerun_writes=REPORT_OUTPUTS),
    Bad("weekly-stage-not-a-monday", ("stage", "ingest", "--date", DAY3, "--params",
                                      "{case}/weekly.yaml"),
        rf"period start {DAY3} is a Wednesday.*use {DAY1}, the Monday on or before it", WEEKLY,
        rerun=INGEST3, absent=("logs/impressions/date=2026-01-08",)),
    Bad("date-before-simulator-start", ("stage", "ingest", "--date", "2026-01-04"),
        r"date 2026-01-04 is before simulator\.start=2026-01-05", rerun=INGEST3,
        absent=("logs/impressions/date=2026-01-04",)),
    Bad("date-beyond-horizon", ("stage", "ingest", "--date", "2099-12-31"),
        r"date 2099-12-31 is beyond the built-in world's horizon: its last day is 2036-01-03 "
        r"\(simulator\.start=2026-01-05 \+ simulator\.horizon_days=3650\)", rerun=INGEST3),
    Bad("date-beyond-any-log", ("stage", "ingest", "--date", "9999-12-31"),
        r"--date=9999-12-31 is outside the dates reloop handles \(1900-01-01 \.\. 8999-12-31\)",
        rerun=INGEST3),
    Bad("date-compact", ("run", "--date", "20260107"),
        r"--date='20260107' is not a valid ISO date \(YYYY-MM-DD\)", rerun=INGEST3),
    Bad("run-beyond-horizon", ("run", "--date", "2036-01-04"),
        r"date 2036-01-04 is beyond the built-in world's horizon", rerun=INGEST3),
    Bad("partition-missing", ("join", "--date", "2026-01-09"),
        r"partition impressions/date=2026-01-09 is missing under logs",
        rerun=("stage", "join", "--date", DAY2), absent=("joined/date=2026-01-09",)),
    Bad("previous-period-not-decided", ("stage", "ingest", "--date", "2026-01-08"),
        rf"the previous period {DAY3} has started but has no decision yet \(decisions/date="
        rf"{DAY3}/decision\.json\)", rerun=INGEST3,
        absent=("logs/impressions/date=2026-01-08", "logs/feedback/date=2026-01-09")),
    Bad("stage-unknown", ("stage", "nosuch", "--date", DAY2),
        r"stage='nosuch' is not a stage; expected one of \['ingest', ", rerun=PROMOTE),
    # ---- raw logs: corrupt, wrong schema, bad values (validate quarantines; join refuses)
    Bad("part-truncated-validate", ("stage", "validate", "--date", DAY2),
        rf"impressions/date={DAY2} .*\n.*readable parquet: observed {PART2} is not a readable "
        r"parquet file \(truncated or corrupt\)", truncate(PART2), writes=QUARANTINE),
    Bad("part-truncated-join", ("stage", "join", "--date", DAY2),
        rf"{PART2} is not a readable parquet file \(truncated or corrupt\)", truncate(PART2)),
    Bad("part-garbage", ("stage", "validate", "--date", DAY2),
        rf"{FB2}/part-junk\.parquet was added after sealing: the seal logs/_seals/date={DAY2}"
        r"\.json does not list it",
        lambda w: (w.root / FB2 / "part-junk.parquet").write_bytes(b"PAR1 junk PAR1")),
    # ---- seals: a day's producer declares it complete; readers hold it to that
    Bad("part-added-after-seal", ("stage", "join", "--date", DAY2),
        rf"{IMP2}/part-extra\.parquet was added after sealing: the seal logs/_seals/date={DAY2}"
        r"\.json does not list it",
        extra_part(IMP2, lambda d: fresh_ids(d.head(5)), seal=False)),
    Bad("seal-names-a-missing-part", ("stage", "join", "--date", DAY2),
        rf"{IMP2}/part-gone\.parquet is listed by the seal logs/_seals/date={DAY2}\.json but is "
        "missing", edit_seal(DAY2, lambda s: s["files"].update(
            {IMP2.removeprefix("logs/") + "/part-gone.parquet": {"rows": 3}}))),
    Bad("seal-row-count-differs", ("stage", "validate", "--date", DAY2),
        rf"{PART2} has (\d+) rows but the seal logs/_seals/date={DAY2}\.json lists \d+",
        edit_seal(DAY2, _recount)),
    Bad("day-never-sealed", ("stage", "join", "--date", DAY2),
        rf"day {DAY2} is not sealed: logs/_seals/date={DAY2}\.json does not exist\. It covers "
        rf"impressions/date={DAY2}, feedback/date={DAY2} and feedback/date={DAY3} .*Seal it with "
        rf"`reloop logs seal --date {DAY2}`",
        lambda w: (w.root / "logs" / "_seals" / f"date={DAY2}.json").unlink()),
    Bad("part-wrong-schema", ("stage", "validate", "--date", DAY2),
        rf"column 'score' is Float64 in .*part-sim.* but String in .*{IMP2}/part-extra\.parquet, "
        r"types that cannot be read together",
        extra_part(IMP2, lambda d: fresh_ids(d.head(5)).with_columns(score=pl.lit("high"))),
        writes=QUARANTINE),
    Bad("part-extra-column", ("stage", "validate", "--date", DAY2),
        rf"part-sim-.* has other columns than .*{IMP2}/part-extra\.parquet \(missing "
        r"\['extra'\], extra \[\]\)",
        extra_part(IMP2, lambda d: fresh_ids(d.head(5)).with_columns(extra=pl.lit(1))),
        writes=QUARANTINE),
    Bad("score-nan", ("stage", "validate", "--date", DAY2),
        r"expect_column_values_to_not_be_null 'score': observed 5 unexpected rows \([\d.]+%; "
        r"5 NaN\), e\.g\. \[NaN, NaN",
        extra_part(IMP2, lambda d: fresh_ids(d.head(5)).with_columns(score=pl.lit(float("nan")))),
        writes=QUARANTINE),
    Bad("score-out-of-range", ("stage", "validate", "--date", DAY2),
        r"expect_column_values_to_be_between 'score' .*'max_value': 1\.0\}: observed 5 "
        r"unexpected rows .*\[1\.5, 1\.5",
        extra_part(IMP2, lambda d: fresh_ids(d.head(5)).with_columns(score=pl.lit(1.5))),
        writes=QUARANTINE),
    Bad("click-not-binary", ("stage", "validate", "--date", DAY2),
        rf"feedback/date={DAY2} .*\n.*expect_column_values_to_be_in_set 'click' "
        r"\{'value_set': \[0, 1\]\}: observed 5 unexpected rows .*\[2, 2",
        extra_part(FB2, lambda d: d.head(5).with_columns(click=pl.lit(2, d["click"].dtype))),
        writes=QUARANTINE),
    Bad("click-not-binary-join", ("stage", "join", "--date", DAY2),
        r"^error: 5 feedback rows have a click other than 0 or 1$",
        extra_part(FB2, lambda d: d.head(5).with_columns(click=pl.lit(2, d["click"].dtype)))),
    Bad("request-ids-duplicated", ("stage", "validate", "--date", DAY2),
        r"expect_column_values_to_be_unique 'request_id' \{'mostly': 0\.999\}: observed 600 "
        r"unexpected rows", extra_part(IMP2, lambda d: d.head(300)), writes=QUARANTINE),
    # ---- the registry: damaged files, hostile or unknown version ids
    Bad("production-json-truncated", ("registry", "show"),
        r"registry/production\.json is not valid JSON", truncate("registry/production.json")),
    Bad("production-json-truncated-ingest", INGEST3,
        r"registry/production\.json is not valid JSON", truncate("registry/production.json"),
        rerun=INGEST3, absent=(f"logs/impressions/date={DAY3}",),
        start="day3-pending", expect="clean"),
    Bad("version-json-truncated", ("registry", "show"),
        r"registry/versions/[0-9a-f]{16}/version\.json is not valid JSON",
        in_version(1, "version.json", truncate)),
    Bad("rollback-unknown-version", ("registry", "rollback", "--to", "0" * 16),
        r"version '0000000000000000' is not in the registry; known: \['[0-9a-f]{16}', ",
        rerun=("registry", "show")),
    Bad("rollback-outside-registry", ("registry", "rollback", "--to", "../../{case}/evil"),
        r"version '\.\./\.\./.*/evil' " + NOT_A_VERSION, evil_version,
        rerun=("registry", "show")),
    Bad("rollback-malformed-id", ("registry", "rollback", "--to", "NOPE"),
        r"version 'NOPE' " + NOT_A_VERSION, rerun=("registry", "show")),
    Bad("rollback-to-corrupt-version", ("registry", "rollback", "--to", "{version0}"),
        r"registry/versions/[0-9a-f]{16}/model.*checksum",
        in_version(0, "model/model.safetensors", flip_byte), rerun=("registry", "show")),
    # ---- checkpoints and memory snapshots: corrupt, truncated, from another config
    Bad("checkpoint-corrupt-promote", PROMOTE,
        rf"checkpoint 'models/date={DAY2}': model\.safetensors does not match the checksum",
        flip_byte(f"models/date={DAY2}/model.safetensors"),
        start="day2-evaluated", expect="day2-promoted"),
    Bad("snapshot-corrupt-promote", PROMOTE,
        rf"memory snapshot 'memory/date={DAY2}/memory\.safetensors' is corrupt: its tensors do "
        r"not match the recorded sha256", flip_byte(f"memory/date={DAY2}/memory.safetensors"),
        start="day2-evaluated", expect="day2-promoted"),
    Bad("checkpoint-corrupt-evaluate", ("stage", "evaluate", "--date", DAY2),
        rf"checkpoint 'models/date={DAY2}': model\.safetensors does not match the checksum",
        flip_byte(f"models/date={DAY2}/model.safetensors")),
    Bad("production-checkpoint-corrupt", INGEST3,
        r"checkpoint 'registry/versions/[0-9a-f]{16}/model': model\.safetensors does not match "
        r"the checksum", in_version(1, "model/model.safetensors", flip_byte)),
    Bad("production-snapshot-corrupt", INGEST3,
        r"memory snapshot 'registry/versions/[0-9a-f]{16}/memory/memory\.safetensors' is "
        r"corrupt", in_version(1, "memory/memory.safetensors", flip_byte)),
    Bad("checkpoint-json-truncated", ("stage", "memory", "--date", DAY2),
        rf"checkpoint 'models/date={DAY2}': checkpoint\.json is not valid JSON",
        truncate(f"models/date={DAY2}/checkpoint.json")),
    Bad("checkpoint-other-features", ("predict", "--checkpoint", f"models/date={DAY2}", "--data",
                                      JOINED1, "--params", "{case}/other.yaml"),
        rf"the checkpoint models/date={DAY2}'s feature encoding does not match features in the "
        r"config: field 'user_id' differs", OTHER_FEATURES,
        rerun=("predict", "--checkpoint", f"models/date={DAY2}", "--data", JOINED1)),
    Bad("evaluation-json-truncated", PROMOTE,
        rf"evaluation/date={DAY2}/evaluation\.json is not valid JSON \(.*\): it is truncated or "
        "damaged", truncate(f"evaluation/date={DAY2}/evaluation.json")),
    Bad("stats-json-truncated", ("stage", "join", "--date", DAY2),
        rf"joined/date={DAY1}/stats\.json is not valid JSON",
        truncate(f"joined/date={DAY1}/stats.json"),
        writes=rf"^joined/date={DAY2}/"),  # the join is rewritten; its validation then fails
    # ---- `reloop train`
    Bad("train-three-rows", ("train", "--data", "{case}/three.parquet", "--out", "cli-models/x"),
        r"the validation split \(last 10% = 1 row\) holds 1 positive\(s\) and 0 negative\(s\)",
        table("three.parquet", three_rows), rerun=TRAIN_OK, absent=("cli-models/x",)),
    Bad("train-label-missing", ("train", "--data", "{case}/t.parquet", "--out", "cli-models/x"),
        r"label column 'y' is missing; columns present: \[", table("t.parquet",
                                                                   lambda d: d.drop("y")),
        rerun=TRAIN_OK, absent=("cli-models/x",)),
    Bad("train-y-last-missing", ("train", "--data", "{case}/t.parquet", "--out", "cli-models/x"),
        r"column 'y_last' is missing; loss='reloop' needs",
        table("t.parquet", lambda d: d.drop("y_last")), rerun=TRAIN_OK, absent=("cli-models/x",)),
    Bad("train-data-missing", ("train", "--data", "nope.parquet", "--out", "cli-models/x"),
        r"data 'nope\.parquet' does not exist", rerun=TRAIN_OK, absent=("cli-models/x",)),
    Bad("train-out-exists", ("train", "--data", JOINED1, "--out", "cli-models/day1"),
        r"checkpoint 'cli-models/day1' already exists \(pass overwrite=True\)", rerun=TRAIN_OK),
    Bad("train-warm-start-other-features",
        ("train", "--data", JOINED1, "--out", "cli-models/x", "--init-from",
         f"models/date={DAY2}", "--params", "{case}/other.yaml"),
        rf"the checkpoint models/date={DAY2}'s feature encoding does not match",
        OTHER_FEATURES, rerun=TRAIN_OK, absent=("cli-models/x",)),
    # it used to train from scratch without a word (parent_id null)
    Bad("train-init-from-without-warm-start",
        ("train", "--data", JOINED1, "--out", "cli-models/x", "--init-from",
         f"models/date={DAY2}", "--params", "{case}/cold.yaml"),
        r"--init-from models/date=2026-01-06: train\.warm_start is false in .*cold\.yaml, so the "
        r"model would train from scratch", NO_WARM_START, rerun=TRAIN_OK,
        absent=("cli-models/x",)),
    # ---- replay
    Bad("replay-source-missing", ("replay", "convert", "movielens-100k", "--source", "raw/nope",
                                  "--params", "replay.yaml"),
        r"source directory 'raw/nope' does not exist", rerun=CONVERT),
    Bad("replay-dataset-unknown", ("replay", "convert", "netflix", "--source", "raw/ml-100k",
                                   "--params", "replay.yaml"),
        r"dataset='netflix' is not supported; expected one of \['avazu', ", rerun=CONVERT),
    Bad("replay-day-outside-range", ("ingest", "--date", "1997-09-25", "--params", "replay.yaml"),
        r"replay day 1997-09-25 is outside the converted movielens-100k events, which cover "
        r"1997-09-15 \.\. 1997-09-21", rerun=("ingest", "--date", REPLAY_DAY, "--params",
                                              "replay.yaml"),
        absent=("replay-logs/impressions/date=1997-09-25",)),
    # ---- the archive
    Bad("restore-period-not-archived", ("periods", "restore", "--date", "2026-02-01", "--out",
                                        "{case}/restored"),
        r"period 2026-02-01 is not archived in .*/archive; archived: \['2026-01-05', "
        r"'2026-01-06'\]", rerun=("periods", "list"), absent=("{case}/restored",)),
    Bad("restore-into-existing", ("periods", "restore", "--date", DAY1, "--out", "logs"),
        r"--out .*/logs already exists; restore into a new directory", rerun=("periods", "list")),
]


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in root.rglob("*") if p.is_file()}


def _undo(w: Workspace, before: dict, after: dict) -> None:
    """Undo what a setup changed in the workspace: from the snapshot, mtimes included."""
    for rel in diff(before, after):
        if rel in before:
            shutil.copy2(w.snapshot(w.start) / rel, w.root / rel)
        else:
            (w.root / rel).unlink()


def _args(args: tuple[str, ...], w: Workspace) -> list[str]:
    subs = {"case": str(w.case)}
    if any("{version0}" in a for a in args):
        subs["version0"] = version(w, 0)
    return [a.format(**subs) for a in args]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name,
                                               marks=(pytest.mark.start(c.start), *c.marks))
                                  for c in CASES])
def test_bad_input(case: Bad, ws: Workspace, record):
    clean = _files(ws.root)
    if case.setup is not None:
        case.setup(ws)
    setup_done = _files(ws.root)
    before, raw, production = ws.state(), ws.raw(), ws.production()

    error = reloop(*_args(case.args, ws)).error()
    assert re.search(case.message, error), error
    record.handled = True

    assert ws.raw() == raw  # every raw log file: same bytes, same mtime
    unexpected = [p for p in diff(before, ws.state())
                  if case.writes is None or not re.search(case.writes, p)]
    assert unexpected == [], f"the refused command wrote {unexpected}"
    for path in _args(case.absent, ws):
        assert not (ws.root / path).exists(), f"{path} was created"
    record.nothing_lost = True
    assert ws.production() == production
    record.production = True

    _undo(ws, clean, setup_done)
    again = reloop(*_args(case.rerun or case.args, ws))
    assert again.code == 0, again.stderr
    expect = case.expect or case.start
    assert [p for p in diff(ws.expected(expect), ws.state())
            if case.rerun_writes is None or not re.search(case.rerun_writes, p)] == []
    now, kept = ws.raw(), raw_digest(ws.snapshot(case.start))
    assert {p: now.get(p) for p in kept} == kept  # what existed: untouched, mtime included
    reference = raw_digest(ws.snapshot(expect))
    assert {p: v[0] for p, v in now.items()} == {p: v[0] for p, v in reference.items()}
    record.leftovers = leftovers(ws.root)
    assert record.leftovers == []
    record.converged = True


# ---------------------------------------------------------------------------- study specs

#: the study every fixed spec is: two arms over DAY1 and DAY2 of the workspace's own params
STUDY = {"name": "campaign", "params": "params.yaml", "start": DAY1, "periods": 2,
         "baseline": "ce", "bootstrap": 100,
         "arms": [{"name": "reloop"}, {"name": "ce", "set": {"train.loss": "ce"}}]}
#: what the study's ``reloop`` arm (no overrides) must reproduce of the clean workspace: DAY1 and
#: DAY2, byte for byte (its version.json files differ: a study makes the replay paths absolute)
ARM_ARTEFACTS = re.compile(r"^(logs|oracle|joined|models|memory|evaluation|decisions|reports|"
                           r"registry/production\.json|registry/versions/[0-9a-f]+/(model|memory)/)")

STUDY_CASES = [
    ("study-unknown-parameter",
     {"arms": [{"name": "reloop"}, {"name": "ce", "set": {"train.alpah": 0.5}}]},
     r"arm 'ce'.*\n  train\.alpah: unknown parameter"),
    ("study-duplicate-arm", {"arms": [{"name": "reloop"}, {"name": "reloop"}]},
     r"spec\.yaml:\n  arm names must be unique; repeated: \['reloop'\]"),
    ("study-range-not-covered", {"start": "2025-12-29"},
     r"arm 'reloop': the study starts 2025-12-29, before the built-in world's "
     r"simulator\.start=2026-01-05"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "change", "message"), STUDY_CASES,
                         ids=[c[0] for c in STUDY_CASES])
def test_bad_study_spec(name, change, message, ws: Workspace, record):
    import yaml

    shutil.copy2(ws.root / "params.yaml", ws.case / "params.yaml")
    spec, out = ws.case / "spec.yaml", ws.case / "out"
    spec.write_text(yaml.safe_dump(STUDY | change, sort_keys=False))
    before, raw, production = ws.state(), ws.raw(), ws.production()
    command = ("study", "run", str(spec), "--out", str(out), "--arms", "reloop", "--jobs", "1")

    error = reloop(*command).error()
    assert re.search(message, error), error
    record.handled = True
    assert not out.exists() and ws.raw() == raw and diff(before, ws.state()) == []
    record.nothing_lost = True
    assert ws.production() == production
    record.production = True

    spec.write_text(yaml.safe_dump(STUDY, sort_keys=False))
    again = reloop(*command)
    assert again.code == 0, again.stdout + again.stderr
    arm = out / "arms" / "reloop"
    reference = ws.expected("day2-archived")
    ran = {p.relative_to(arm).as_posix() for p in arm.rglob("*") if p.is_file()}
    compared = sorted(p for p in ran | set(reference) if ARM_ARTEFACTS.match(p))
    assert [p for p in compared if reference.get(p) is None] == []
    from tests.faults.workspace import _sha

    assert [p for p in compared if p not in ran or _sha(arm / p) != reference[p]] == []
    assert diff(before, ws.state()) == []  # the study ran in its own directory
    record.converged = True
