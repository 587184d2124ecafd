"""`byom validate` on every generated package: verdicts, codes, exit codes, text and JSON output.

Expectations come from tests/out/fixtures/expected.json (written by make_packages.py; the
meaning of each key is in that file's docstring). Codes are asserted as sets that must be
present; a valid package must have no errors at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import FIXTURES_SRC, REPO, fixtures_dir_path, run_byom, run_on_tty, tar_infos, tar_members

CODE_RE = re.compile(r"^BYOM\d{3}$")
ANSI_RE = re.compile(rb"\x1b\[[0-9;]*m")
GUIDE_EXAMPLES = [
    "guide_yolov10_9ch",
    "guide_yolov10_verbatim_84",
    "guide_resnet_sagemaker",
    "guide_efficientnet_azure",
    "guide_anomaly_local",
    "guide_segmentation_hf",
]


def _load_expected() -> dict:
    """Collection-time view of expected.json (generated first if needed)."""
    d = fixtures_dir_path()
    subprocess.run([sys.executable, str(FIXTURES_SRC / "make_packages.py"), str(d)], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((d / "expected.json").read_text())


def pytest_generate_tests(metafunc):
    if "own_case" in metafunc.fixturenames or "corpus_case" in metafunc.fixturenames:
        exp = _load_expected()
        if "own_case" in metafunc.fixturenames:
            metafunc.parametrize("own_case", sorted(k for k, v in exp.items() if "corpus" not in v))
        if "corpus_case" in metafunc.fixturenames:
            metafunc.parametrize("corpus_case", sorted(k for k, v in exp.items() if "corpus" in v))


def validate_json(byom_bin: Path, *paths: Path, timeout: float = 120) -> tuple[int, object, str]:
    r = run_byom(byom_bin, "validate", "--format", "json", *paths, timeout=timeout)
    stderr = r.stderr.decode(errors="replace")
    assert r.returncode in (0, 1), f"exit {r.returncode} (0/1 expected), stderr:\n{stderr}"
    try:
        report = json.loads(r.stdout)
    except json.JSONDecodeError as e:
        raise AssertionError(f"stdout is not JSON ({e}):\n{r.stdout[:2000]!r}\nstderr:\n{stderr}") from e
    return r.returncode, report, stderr


def check_report_shape(report: dict) -> None:
    for key in ("valid", "errors", "warnings", "summary", "settings_hash", "byom_version"):
        assert key in report, f"report lacks {key!r}: {sorted(report)}"
    for sev, issues in (("error", report["errors"]), ("warning", report["warnings"])):
        for issue in issues:
            assert CODE_RE.match(issue["code"]), issue
            assert issue["severity"] == sev, issue
            assert issue["message"].strip(), issue
            assert issue["hint"].strip(), f"{issue['code']} has no hint: {issue}"
            assert "file" in issue, issue
    assert report["valid"] == (not report["errors"]), "valid must mean: no errors"


def check_expectation(name: str, report: dict, exp: dict) -> None:
    errors = {i["code"] for i in report["errors"]}
    warnings = {i["code"] for i in report["warnings"]}
    got = f"got valid={report['valid']} errors={sorted(errors)} warnings={sorted(warnings)}"
    msgs = [f"{i['code']}: {i['message']}" for i in report["errors"]]
    ctx = f"{name} ({exp.get('about', '')}): {got}\n  " + "\n  ".join(msgs)
    if exp["valid"] is not None:
        assert report["valid"] is exp["valid"], f"verdict wrong: {ctx}"
    assert set(exp["errors"]) <= errors, f"missing errors {sorted(set(exp['errors']) - errors)}: {ctx}"
    assert set(exp["warnings"]) <= warnings, f"missing warnings {sorted(set(exp['warnings']) - warnings)}: {ctx}"
    if exp.get("exact_warnings"):
        assert warnings == set(exp["warnings"]), f"unexpected warnings {sorted(warnings - set(exp['warnings']))}: {ctx}"
    if exp.get("any"):
        assert set(exp["any"]) <= errors | warnings, f"missing {sorted(set(exp['any']) - errors - warnings)}: {ctx}"
    if exp.get("error_prefix"):
        assert any(c.startswith(exp["error_prefix"]) for c in errors), f"no {exp['error_prefix']}xx error: {ctx}"
    if exp.get("forbid"):
        assert not set(exp["forbid"]) & (errors | warnings), f"forbidden codes present: {ctx}"


_REPORTS: dict[Path, tuple[int, object, str]] = {}


def cached_validate(byom_bin: Path, path: Path):
    """One `byom validate --format json` run per package per session (big packages are slow in a
    debug build); tests that only read the report share it."""
    if path not in _REPORTS:
        _REPORTS[path] = validate_json(byom_bin, path)
    return _REPORTS[path]


# --- every fixture ----------------------------------------------------------------------------


def test_fixture_verdict(byom_bin, fixtures_dir, expected, own_case):
    exp = expected[own_case]
    code, report, _ = cached_validate(byom_bin, fixtures_dir / f"{own_case}.tar.gz")
    assert isinstance(report, dict), "one path must give one JSON object"
    check_report_shape(report)
    check_expectation(own_case, report, exp)
    assert code == (0 if report["valid"] else 1)


def test_corpus_placement(byom_bin, fixtures_dir, expected, corpus_dir, corpus_case):
    """Each picklescan file as the .pt: never a crash, always a JSON report, hostile refused."""
    exp = expected[corpus_case]
    code, report, _ = validate_json(byom_bin, fixtures_dir / f"{corpus_case}.tar.gz")
    check_report_shape(report)
    check_expectation(f"{corpus_case} [{exp['corpus']}]", report, exp)
    assert code == (0 if report["valid"] else 1)


def test_corpus_cases_exist(expected, corpus_dir):
    """With the corpus present, every one of its files was placed (none silently dropped)."""
    files = [p for sub in ("data", "data2") for p in (corpus_dir / sub).iterdir() if p.is_file()]
    placed = {v["corpus"] for v in expected.values() if "corpus" in v}
    assert len(placed) == len(files) > 0


# --- summary of the guide examples -----------------------------------------------------------


@pytest.mark.parametrize("name", GUIDE_EXAMPLES)
def test_guide_example_summary(byom_bin, fixtures_dir, name):
    path = fixtures_dir / f"{name}.tar.gz"
    mochi = json.loads(tar_members(path)["mochi.json"])
    pt = [m for m in tar_infos(path) if m.name.endswith(".pt")]
    stage = mochi["stages"][0]
    _, report, _ = cached_validate(byom_bin, path)
    s = report["summary"]
    assert s["model_type"] == stage["type"]
    assert s["input_shape"] == stage["input_shape"]
    assert s["model_file"] in (pt[0].name, pt[0].name.rsplit("/", 1)[-1])
    assert s["model_file_bytes"] == pt[0].size
    assert s["compressed_bytes"] == path.stat().st_size


def test_report_carries_sha256(byom_bin, fixtures_dir):
    path = fixtures_dir / "guide_anomaly_local.tar.gz"
    _, report, _ = validate_json(byom_bin, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.get("sha256") is not None, "the CLI computes the package sha256 alongside validation"
    assert report["sha256"].removeprefix("sha256:") == digest


def test_bomb_refused_fast(byom_bin, fixtures_dir):
    t = time.monotonic()
    _, report, _ = validate_json(byom_bin, fixtures_dir / "decompression_bomb.tar.gz")
    elapsed = time.monotonic() - t
    assert "BYOM008" in {i["code"] for i in report["errors"]}
    assert elapsed < 10, f"300 MB bomb took {elapsed:.1f}s (debug build); it must stop at the ratio limit"


# --- exit codes and output formats -----------------------------------------------------------


def test_exit_codes(byom_bin, fixtures_dir, tmp_path):
    good = fixtures_dir / "guide_anomaly_local.tar.gz"
    bad = fixtures_dir / "dimension_mismatch.tar.gz"
    assert run_byom(byom_bin, "validate", good).returncode == 0
    assert run_byom(byom_bin, "validate", bad).returncode == 1
    assert run_byom(byom_bin, "validate", good, bad).returncode == 1
    assert run_byom(byom_bin, "validate", fixtures_dir / "not_gzip.tar.gz").returncode == 1
    missing = run_byom(byom_bin, "validate", tmp_path / "nope.tar.gz")
    assert missing.returncode == 2, missing
    assert b"nope.tar.gz" in missing.stderr, "say which file could not be read"
    assert run_byom(byom_bin, "validate", good, tmp_path / "nope.tar.gz").returncode == 2
    assert run_byom(byom_bin, "validate", "--no-such-flag", good).returncode == 2
    assert run_byom(byom_bin, "validate", "--format", "yaml", good).returncode == 2
    assert run_byom(byom_bin, "validate").returncode == 2, "no path given"
    assert run_byom(byom_bin, "validate", tmp_path).returncode == 2, "a directory is not a package"


def test_json_several_paths_is_array_in_order(byom_bin, fixtures_dir):
    names = ["dimension_mismatch", "guide_anomaly_local", "not_gzip", "appledouble_files"]
    paths = [fixtures_dir / f"{n}.tar.gz" for n in names]
    code, reports, _ = validate_json(byom_bin, *paths)
    assert isinstance(reports, list) and len(reports) == len(names)
    assert code == 1
    for name, path, report in zip(names, paths, reports):
        _, single, _ = cached_validate(byom_bin, path)
        assert report["valid"] == single["valid"], name
        assert [i["code"] for i in report["errors"]] == [i["code"] for i in single["errors"]], name
        assert report["summary"]["compressed_bytes"] == path.stat().st_size, f"{name}: order broken"


@pytest.mark.parametrize("name", ["dimension_mismatch", "two_pt_files", "appledouble_files",
                                  "config_width_string", "plain_tar"])
def test_text_output_has_code_file_and_hint(byom_bin, fixtures_dir, name):
    path = fixtures_dir / f"{name}.tar.gz"
    _, report, _ = cached_validate(byom_bin, path)
    r = run_byom(byom_bin, "validate", path, text=True)
    text = r.stdout + r.stderr
    assert str(path.name) in text, "text output names the package"
    for issue in report["errors"] + report["warnings"]:
        assert issue["code"] in text
        if issue["file"]:
            assert issue["file"] in text, f"{issue['code']}: file {issue['file']} not shown"
        assert issue["hint"].strip().splitlines()[0] in text, f"{issue['code']}: hint not shown"
    assert not ANSI_RE.search(text.encode()), "no colour when stdout is not a terminal"


def test_plain_tar_message(byom_bin, fixtures_dir):
    _, report, _ = cached_validate(byom_bin, fixtures_dir / "plain_tar.tar.gz")
    issue = next(i for i in report["errors"] if i["code"] == "BYOM001")
    assert "uncompressed" in issue["message"].lower(), issue
    assert "gzip" in issue["hint"].lower() or "tar czf" in issue["hint"], issue


def test_not_gzip_keeps_portal_wording(byom_bin, fixtures_dir):
    _, report, _ = cached_validate(byom_bin, fixtures_dir / "not_gzip.tar.gz")
    messages = [i["message"] for i in report["errors"] if i["code"] == "BYOM001"]
    assert any("not a valid tar.gz file" in m for m in messages), messages


def test_nested_folder_names_the_folder(byom_bin, fixtures_dir):
    _, report, _ = cached_validate(byom_bin, fixtures_dir / "nested_top_folder.tar.gz")
    issue = next(i for i in report["errors"] if i["code"] == "BYOM014")
    assert "resnet-model" in issue["message"] + issue["hint"]


def test_colour_on_tty_and_no_color(byom_bin, fixtures_dir):
    path = str(fixtures_dir / "dimension_mismatch.tar.gz")
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CLICOLOR", "CLICOLOR_FORCE")}
    env["TERM"] = "xterm-256color"
    coloured = run_on_tty([str(byom_bin), "validate", path], env)
    assert b"BYOM501" in coloured
    assert ANSI_RE.search(coloured), "text output on a terminal is coloured"
    plain = run_on_tty([str(byom_bin), "validate", path], env | {"NO_COLOR": "1"})
    assert b"BYOM501" in plain
    assert not ANSI_RE.search(plain), "NO_COLOR must turn colour off"


# --- the guide's own validator agrees on the guide's examples -----------------------------------


def test_guide_validator_copy_matches_spec():
    spec = REPO.parent / "shared" / "spec" / "byom-guide.md"
    if not spec.exists():
        pytest.skip(f"spec not found at {spec}")
    copy = (FIXTURES_SRC / "guide_validator.py").read_text()
    verbatim = copy.split("# ---- verbatim from the spec below this line ----\n", 1)[1]
    assert verbatim in spec.read_text(), "tests/fixtures/guide_validator.py drifted from the spec"


@pytest.mark.parametrize("name", GUIDE_EXAMPLES)
def test_guide_validator_agrees_on_guide_examples(byom_bin, fixtures_dir, name):
    import guide_validator

    path = fixtures_dir / f"{name}.tar.gz"
    assert guide_validator.validate_dda_package(str(path)) is True
    _, report, _ = cached_validate(byom_bin, path)
    assert report["valid"] is True, [i["code"] for i in report["errors"]]
