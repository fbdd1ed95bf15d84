def work():
    total = 0
    for i in range(5_000_000):
        total += i * i % 7
    return total


def test_block(energy):
    with energy.measure() as m:
        work()
        m.output_tokens = 1000
