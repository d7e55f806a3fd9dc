"""bench.etcd's Go load generator plumbing, without Go or a network: the parser of etcd's
`pkg/report` summary (as `benchmark put` prints it), the command line, the cached binary's
name, and the choice between the Go and Python generators (`--generator`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bench import etcd, etcd_go

# `benchmark put` (bench/etcd_go.py's build) against etcd 3.4.23 on loopback, 20,000 puts.
SAMPLE = """
Summary:
  Total:\t5.6755 secs.
  Slowest:\t0.4742 secs.
  Fastest:\t0.0010 secs.
  Average:\t0.0675 secs.
  Stddev:\t0.0560 secs.
  Requests/sec:\t3523.8930

Response time histogram:
  0.0010 [1]\t|
  0.0483 [9484]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎
  0.0956 [6569]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎
  0.1430 [2032]\t|∎∎∎∎∎∎∎∎
  0.1903 [943]\t|∎∎∎
  0.2376 [523]\t|∎∎
  0.2849 [338]\t|∎
  0.3323 [59]\t|
  0.3796 [15]\t|
  0.4269 [26]\t|
  0.4742 [10]\t|

Latency distribution:
  10% in 0.0179 secs.
  25% in 0.0298 secs.
  50% in 0.0517 secs.
  75% in 0.0841 secs.
  90% in 0.1384 secs.
  95% in 0.1878 secs.
  99% in 0.2675 secs.
  99.9% in 0.3945 secs.
"""

ERRORS = """
Error distribution:
  [3]\tcontext deadline exceeded
  [1]\trpc error: code = Unavailable desc = transport is closing
"""


def test_parses_the_summary_percentiles_and_histogram_count() -> None:
    figures = etcd_go.parse_output(SAMPLE)
    assert figures["rps"] == pytest.approx(3523.893)
    assert figures["total_s"] == pytest.approx(5.6755)
    assert figures["slowest_s"] == pytest.approx(0.4742)
    assert figures["fastest_s"] == pytest.approx(0.0010)
    assert figures["latency_ms"] == {"10": 17.9, "25": 29.8, "50": 51.7, "75": 84.1,
                                     "90": 138.4, "95": 187.8, "99": 267.5, "99.9": 394.5}
    assert figures["succeeded"] == 20_000
    assert figures["errors"] == {}
    assert figures["failed"] == 0


def test_error_lines_are_counted_and_histogram_lines_are_not_errors() -> None:
    figures = etcd_go.parse_output(SAMPLE + ERRORS)
    assert figures["failed"] == 4
    assert figures["errors"] == {"context deadline exceeded": 3,
                                 "rpc error: code = Unavailable desc = transport is closing": 1}
    assert figures["succeeded"] == 20_000
    assert figures["latency_ms"]["99"] == 267.5


def test_precise_output_with_exponents_is_parsed() -> None:
    text = ("\nSummary:\n  Total:\t2.5e+01 secs.\n  Requests/sec:\t12345.678901\n"
            "\nResponse time histogram:\n  1.5e-05 [7]\t|∎\n  0.25 [3]\t|\n"
            "\nLatency distribution:\n  50% in 1.5e-05 secs.\n  99% in 0.25 secs.\n")
    figures = etcd_go.parse_output(text)
    assert figures["total_s"] == 25.0
    assert figures["rps"] == pytest.approx(12345.678901)
    assert figures["latency_ms"] == {"50": 0.015, "99": 250.0}
    assert figures["succeeded"] == 10


def test_output_without_a_summary_is_an_error_naming_the_errors() -> None:
    with pytest.raises(ValueError, match="context deadline exceeded"):
        etcd_go.parse_output(ERRORS)
    with pytest.raises(ValueError, match="Requests/sec"):
        etcd_go.parse_output("dial error: context deadline exceeded\n")


def test_report_fields_are_bench_etcds() -> None:
    argv = etcd_go.command("/x/benchmark", ["http://127.0.0.1:1"], conns=4, clients=16,
                           total=100, value_bytes=200)
    fields = etcd_go.report_fields(etcd_go.parse_output(SAMPLE + ERRORS), argv, clients=16,
                                   conns=4, value_bytes=200, key_space=1)
    assert fields["puts"] == 20_000
    assert fields["failed"] == 4
    assert fields["puts_per_s"] == 3523.9
    assert (fields["p50_ms"], fields["p99_ms"]) == (51.7, 267.5)
    assert fields["duration_s"] == pytest.approx(5.6755)
    assert fields["command"].startswith("--endpoints=127.0.0.1:1 ")


def test_command_is_tools_benchmark_put() -> None:
    argv = etcd_go.command("/c/benchmark", ["http://127.0.0.1:1", "http://127.0.0.1:2"],
                           conns=32, clients=256, total=450_000, value_bytes=200)
    assert argv == ["/c/benchmark", "--endpoints=127.0.0.1:1,127.0.0.1:2", "--conns=32",
                    "--clients=256", "put", "--key-size=8", "--val-size=200",
                    "--total=450000", "--key-space-size=1", "--sequential-keys"]
    random_keys = etcd_go.command("b", ["h:1"], conns=1, clients=1, total=1, value_bytes=1,
                                  key_space=1000, sequential=False)
    assert "--sequential-keys" not in random_keys
    assert "--key-space-size=1000" in random_keys


def test_the_go_source_defines_every_flag_the_command_passes() -> None:
    argv = etcd_go.command("b", ["h:1"], conns=1, clients=1, total=1, value_bytes=1)
    names = [re.match(r"--([a-z-]+)", a).group(1) for a in argv if a.startswith("--")]
    assert len(names) == 8
    for name in names:
        assert f'"{name}"' in etcd_go.GO_SOURCE, name


def test_binary_is_cached_per_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = etcd_go.binary_path()
    assert path.parent == tmp_path / "scfchain" / "etcd-benchmark"
    monkeypatch.setattr(etcd_go, "GO_SOURCE", etcd_go.GO_SOURCE + "// changed\n")
    assert etcd_go.binary_path() != path


def test_a_cached_binary_is_reused_without_go(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(etcd_go.shutil, "which", lambda _: None)
    assert etcd_go.find() is None
    with pytest.raises(etcd_go.ToolUnavailable, match="go"):
        etcd_go.build(install=False)
    cached = etcd_go.binary_path()
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    assert etcd_go.build(install=False) == cached
    assert etcd_go.find() == cached


def test_an_explicit_benchmark_must_be_executable(tmp_path: Path) -> None:
    plain = tmp_path / "benchmark"
    plain.write_text("")
    os.chmod(plain, 0o644)
    with pytest.raises(etcd_go.ToolUnavailable, match="not an executable"):
        etcd_go.find(str(plain))
    plain.chmod(0o755)
    assert etcd_go.find(str(plain)) == plain


def _unavailable() -> Path:
    raise etcd_go.ToolUnavailable("no go on PATH")


def test_default_generator_is_go_when_buildable() -> None:
    built = Path("/cache/benchmark-abc")
    generator, binary, note = etcd.choose_generator(None, None, build=lambda: built,
                                                    find=lambda _: None)
    assert (generator, binary) == ("go", built)
    assert "floor" not in note


def test_a_found_binary_is_used_before_building() -> None:
    found = Path("/opt/benchmark")
    generator, binary, note = etcd.choose_generator(None, str(found), build=_unavailable,
                                                    find=lambda path: Path(path))
    assert (generator, binary) == ("go", found)
    assert "/opt/benchmark" in note


def test_default_falls_back_to_python_with_a_floor_note() -> None:
    generator, binary, note = etcd.choose_generator(None, None, build=_unavailable,
                                                    find=lambda _: None)
    assert (generator, binary) == ("python", None)
    assert "floor" in note
    assert "no go on PATH" in note


def test_explicit_go_fails_loudly_and_explicit_python_never_builds() -> None:
    with pytest.raises(SystemExit, match="no go on PATH"):
        etcd.choose_generator("go", None, build=_unavailable, find=lambda _: None)

    def no_build() -> Path:
        raise AssertionError("python must not build the Go tool")

    generator, binary, note = etcd.choose_generator("python", None, build=no_build,
                                                    find=lambda _: None)
    assert (generator, binary) == ("python", None)
    assert "floor" in note
    with pytest.raises(SystemExit, match="--benchmark"):
        etcd.choose_generator("python", "/opt/benchmark", build=no_build, find=lambda _: None)


def test_bad_options_are_rejected_before_anything_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_etcd() -> None:
        raise AssertionError("etcd must not be started")

    monkeypatch.setattr(etcd, "ensure_etcd", no_etcd)
    with pytest.raises(SystemExit) as exit_:
        etcd.main(["--generator", "rust"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        etcd.main(["--total", "0"])
    assert exit_.value.code == 2
