"""Options of the GPU benchmarks that run under pytest (they use the plugin's own `energy` fixture)."""


def pytest_addoption(parser):
    parser.addoption("--meter-out", default="benchmarks/results/meter_quality",
                     help="folder for the meter-quality JSON files")
    parser.addoption("--overhead-out", default="benchmarks/results/harness_overhead.json",
                     help="file for the harness-overhead JSON")
