import numpy as np

A = np.random.default_rng(0).standard_normal((800, 800))


def test_block(energy):
    with energy.measure() as m:
        for _ in range(12):
            A @ A
        m.output_tokens = 1000
