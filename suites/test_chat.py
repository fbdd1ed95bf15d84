"""Chat: the largest bins of the Azure conversation trace (by share of requests) x batch sizes 32 and 128.

Chat bins are decode: at batch 8 the GPU waited on generate's Python between steps for a third or more of
each window, and such runs moved with the runner's shared CPUs from process to process; at 128 the GPU is
busy 76-94% of the window and runs on one card agree within about 1% (benchmarks/README.md section 10).
Three trials: each window is one 2-15 s generate of the whole batch and trials agree within about 1%, so
what decides a verdict is the run and card level, which more trials do not narrow.
"""

import pytest

pytestmark = [pytest.mark.suite(profile="gpu"), pytest.mark.energy(compile=True, trials=3)]


@pytest.mark.trace_workloads(trace="azure-conv", top_k=3, batch_sizes=(32, 128))
def test_chat(energy, workload):
    energy.run(workload)
