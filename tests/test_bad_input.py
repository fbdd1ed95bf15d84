"""Bad input gets one clear line and no traceback, and every baseline file stays byte-for-byte intact."""

import json

import pytest

TEST_FILE = """
def test_generate(energy):
    with energy.measure() as m:
        sum(i * i for i in range(100000))
        m.output_tokens = 10
"""
ARGS = ("--energy-gpu=cpu", "--energy-trials=3", "--energy-min-window=0.05", "-p", "no:cacheprovider")


def assert_usage_error(result, *patterns):
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(list(patterns))
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def snapshot(path):
    return {p: p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (("--energy-tolerance=-0.1",), "*--energy-tolerance: expected a fraction between 0 and 1*'-0.1'*"),
        (("--energy-tolerance=abc",), "*--energy-tolerance: expected a fraction such as 0.05*'abc'*"),
        (("--energy-trials=0",), "*--energy-trials: expected a whole number >= 1, got '0'*"),
        (("--energy-trials=many",), "*--energy-trials: expected a whole number >= 1, got 'many'*"),
        (("--energy-warmup=-1",), "*--energy-warmup: expected a whole number >= 0*"),
        (("--energy-backend=tgi",), "*--energy-backend: expected one of hf, vllm, vllm-server, got 'tgi'*"),
        (("--energy-trials=5", "--energy-max-trials=3"), "*--energy-max-trials (3) is below --energy-trials (5)*"),
    ],
)
def test_bad_option_values(pytester, args, pattern):
    pytester.makepyfile(test_gen=TEST_FILE)
    result = pytester.runpytest("--energy-gpu=cpu", "-p", "no:cacheprovider", *args)
    assert_usage_error(result, pattern)


def test_bad_ini_value_names_the_ini_key(pytester):
    pytester.makepyfile(test_gen=TEST_FILE)
    pytester.makeini("[pytest]\nenergy_trials = lots\n")
    assert_usage_error(pytester.runpytest("--energy-gpu=cpu"), "*ini energy_trials: expected a whole number*")


def test_bad_marker_value(pytester):
    pytester.makepyfile(test_gen="""
        import pytest

        @pytest.mark.energy(trials=-2)
        def test_x(energy):
            pass
    """)
    assert_usage_error(pytester.runpytest(*ARGS),
                       "*test_gen.py::test_x: @pytest.mark.energy(trials=...): expected a whole number >= 1*")


def test_gpu_key_on_a_machine_without_that_gpu(pytester):
    pytester.makepyfile(test_gen=TEST_FILE)
    result = pytester.runpytest("--energy-gpu=h100", "-p", "no:cacheprovider")
    if result.ret == 0:
        pytest.skip("this machine has an H100")
    assert_usage_error(result, "*--energy-gpu=h100 but *")


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ('{"schema": "pytest-llm-energy/baseline", "schema_version": 1, "entries": {',
         "*test_gen.json: not valid JSON (Expecting*line 1*restore it from git or delete it*"),
        ("[1, 2, 3]", "*test_gen.json: not a pytest-llm-energy baseline*"),
        ('{"schema": "pytest-llm-energy/baseline", "schema_version": 99, "entries": {}}',
         "*test_gen.json: written by a newer pytest-llm-energy (schema 99; this one reads 2); upgrade*"),
        ('{"schema": "pytest-llm-energy/baseline", "schema_version": 1, "entries": {"t": {"samples": []}}}',
         "*test_gen.json: entry 't': joules_per_token must be a positive number*"),
        (b"\xff\xfe\x00garbage", "*test_gen.json: not UTF-8 text*"),
        ('{"schema": "pytest-llm-energy/baseline", "schema_version": 2, "entries": {"t": {"joules_per_token": 0.1, '
         '"samples": [0.1], "runs": [{"median": 0.1, "trials": 3, "spread": 0.01, '
         '"reference": {"compute_joules_per_tflop": -1}}]}}}',
         "*test_gen.json: entry 't': run 0 reference must hold the matmul's compute_joules_per_tflop, a positive*"),
        ('{"schema": "pytest-llm-energy/baseline", "schema_version": 2, "entries": {"t": {"joules_per_token": 0.1, '
         '"samples": [0.1], "runs": [{"median": 0.1, "trials": 3, "spread": 0.01, '
         '"reference": {"compute_joules_per_tflop": 1.0, "memory_joules_per_gb": "fast"}}]}}}',
         "*test_gen.json: entry 't': run 0 reference's memory_joules_per_gb (the copy's), where given, must be a*"),
    ],
)
def test_malformed_baseline_names_the_file_and_leaves_every_file_intact(pytester, content, pattern):
    pytester.makepyfile(test_gen=TEST_FILE, test_other=TEST_FILE)
    folder = pytester.path / "baselines" / "cpu"
    folder.mkdir(parents=True)
    bad = folder / "test_gen.json"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    (folder / "test_other.json").write_text(json.dumps({
        "schema": "pytest-llm-energy/baseline", "schema_version": 1, "gpu": "cpu",
        "entries": {"test_other.py::test_generate": {"joules_per_token": 0.1, "samples": [0.1, 0.1]}}}))
    before = snapshot(pytester.path / "baselines")
    for extra in ((), ("--energy-update-baselines",)):
        result = pytester.runpytest(*ARGS, *extra)
        assert_usage_error(result, pattern)
        assert snapshot(pytester.path / "baselines") == before


def test_missing_baselines_folder_given_explicitly(pytester):
    pytester.makepyfile(test_gen=TEST_FILE)
    result = pytester.runpytest(*ARGS, "--energy-baselines=nowhere")
    assert_usage_error(result, "*--energy-baselines: */nowhere does not exist; create it*")


def test_baselines_path_that_is_a_file(pytester):
    pytester.makepyfile(test_gen=TEST_FILE)
    (pytester.path / "afile").write_text("x")
    assert_usage_error(pytester.runpytest(*ARGS, "--energy-baselines=afile"), "*afile is not a folder*")


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (("--energy-json=tmp",), "*--energy-json: tmp is a folder; name the report's file, e.g. tmp/report.json*"),
        (("--energy-md=tmp",), "*--energy-md: tmp is a folder; name the report's file, e.g. tmp/report.md*"),
        (("--energy-json=afile/report.json",), "*--energy-json: afile/report.json lies under afile, which is a file*"),
        (("--energy-plots=afile",), "*--energy-plots: afile is a file, not a folder*"),
    ],
)
def test_a_report_path_that_cannot_be_written_stops_the_run_before_any_test(pytester, args, pattern):
    # `--energy-json=DIR` ended a long run with "[Errno 21] Is a directory", every test already run.
    pytester.makepyfile(test_gen=TEST_FILE)
    (pytester.path / "tmp").mkdir()
    (pytester.path / "afile").write_text("x")
    result = pytester.runpytest(*ARGS, *args)
    assert_usage_error(result, pattern)
    assert "test_gen.py" not in result.stdout.str()  # collected, never run
    assert not (pytester.path / "baselines").exists()


def test_a_read_only_baseline_file_is_never_replaced(pytester):
    # Its folder is writable, and an update replaced it (a rename over a file needs only the folder's mode).
    pytester.makepyfile(test_gen=TEST_FILE)
    assert pytester.runpytest(*ARGS, "--energy-update-baselines").ret == 0
    recorded = pytester.path / "baselines" / "cpu" / "test_gen.json"
    recorded.chmod(0o444)
    before = snapshot(pytester.path / "baselines")
    result = pytester.runpytest(*ARGS, "--energy-update-baselines")
    assert_usage_error(result, "*test_gen.json is read-only (mode 444): not replaced; make it writable*")
    assert snapshot(pytester.path / "baselines") == before
    checked = pytester.runpytest(*ARGS)  # reading it is fine (the verdict is the CPU estimate's)
    assert checked.ret != pytest.ExitCode.USAGE_ERROR and "read-only" not in checked.stderr.str()


def test_a_baseline_file_made_read_only_during_the_run_is_left_alone_and_said(tmp_path):
    from pytest_llm_energy.core.baseline import BaselineStore
    from pytest_llm_energy.core.errors import BaselineError

    store = BaselineStore(tmp_path, "cpu")
    entry = {"joules_per_token": 0.1, "samples": [0.1, 0.1]}
    store.write({"test_a.py::test_x": entry, "test_b.py::test_y": entry})
    (tmp_path / "cpu" / "test_a.json").chmod(0o444)
    before = (tmp_path / "cpu" / "test_a.json").read_bytes()
    with pytest.raises(BaselineError, match="test_a.json is read-only.*other files were written"):
        store.write({"test_a.py::test_x": {**entry, "samples": [0.2, 0.2]}, "test_b.py::test_y": entry})
    assert (tmp_path / "cpu" / "test_a.json").read_bytes() == before
