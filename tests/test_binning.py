"""Binning: edges, the ceiling assignment, the Azure bin tables (checked independently), test params."""

from __future__ import annotations

import pytest

from pytest_llm_energy.core.binning import (
    DEFAULT_INPUT_EDGES,
    DEFAULT_OUTPUT_EDGES,
    WEIGHT_MARKER,
    Bin,
    BinEdges,
    bin_params,
    bin_table,
    trace_bins,
)
from pytest_llm_energy.core.errors import EnergyUsageError
from pytest_llm_energy.core.workload import Decoding, Workload

# Request counts per bin with the default edges, computed outside this package from the CSV files with
#   awk -F, 'NR>1{gsub(/\r/,""); i=$2+0; o=$3+0; if (i>8192 || o>512) next;
#            bi=32; while(bi<i) bi*=2; bo=8; while(bo<o) bo*=2; c[bi" "bo]++} END{for(k in c) print k, c[k]}'
# and again with a separate `python -c` (csv module, 2**ceil(log2(n))), which agreed on every bin.
# Rows checked by hand: conv line 2 (374, 44) -> in512-out64; line 5 (91, 16) -> in128-out16 (on the edge);
# code line 2 (4808, 10) -> in8192-out16; line 3 (3180, 8) -> in4096-out8; line 6 (34, 12) -> in64-out16;
# conv "1080,512" stays in out512, conv "1096,513" is dropped; the one conv input over 8192 is 14050 tokens.
# fmt: off
AZURE_CONV_COUNTS = {
    (32, 64): 3, (32, 128): 62, (32, 256): 148, (32, 512): 1, (64, 64): 5, (64, 128): 22,
    (64, 256): 63, (128, 16): 123, (128, 32): 15, (128, 64): 4, (128, 128): 25, (128, 256): 71,
    (256, 16): 91, (256, 64): 107, (256, 128): 561, (256, 256): 1260, (256, 512): 33, (512, 8): 1,
    (512, 16): 1, (512, 32): 166, (512, 64): 414, (512, 128): 3933, (512, 256): 512, (512, 512): 13,
    (1024, 16): 2, (1024, 32): 13, (1024, 64): 124, (1024, 128): 464, (1024, 256): 56, (1024, 512): 1427,
    (2048, 32): 12, (2048, 64): 366, (2048, 128): 785, (2048, 256): 745, (2048, 512): 4477, (4096, 16): 1,
    (4096, 32): 149, (4096, 64): 943, (4096, 128): 887, (4096, 256): 301, (4096, 512): 17, (8192, 32): 9,
    (8192, 64): 181, (8192, 128): 166, (8192, 256): 43, (8192, 512): 1,
}
AZURE_CODE_COUNTS = {
    (32, 8): 35, (32, 16): 62, (32, 32): 32, (32, 64): 17, (32, 128): 11, (32, 256): 4,
    (32, 512): 1, (64, 8): 57, (64, 16): 72, (64, 32): 50, (64, 64): 23, (64, 128): 8,
    (64, 256): 1, (64, 512): 1, (128, 8): 71, (128, 16): 189, (128, 32): 103, (128, 64): 24,
    (128, 128): 16, (128, 256): 2, (128, 512): 2, (256, 8): 127, (256, 16): 277, (256, 32): 115,
    (256, 64): 62, (256, 128): 36, (256, 256): 14, (256, 512): 2, (512, 8): 105, (512, 16): 251,
    (512, 32): 141, (512, 64): 75, (512, 128): 37, (512, 256): 17, (512, 512): 9, (1024, 8): 292,
    (1024, 16): 497, (1024, 32): 265, (1024, 64): 120, (1024, 128): 68, (1024, 256): 32, (1024, 512): 9,
    (2048, 8): 443, (2048, 16): 904, (2048, 32): 432, (2048, 64): 218, (2048, 128): 116, (2048, 256): 41,
    (2048, 512): 13, (4096, 8): 490, (4096, 16): 868, (4096, 32): 367, (4096, 64): 188, (4096, 128): 89,
    (4096, 256): 42, (4096, 512): 11, (8192, 8): 245, (8192, 16): 529, (8192, 32): 226, (8192, 64): 140,
    (8192, 128): 64, (8192, 256): 26, (8192, 512): 8,
}
# fmt: on
# (trace, total requests, dropped requests, total tokens, dropped tokens), same awk pass.
AZURE_TOTALS = {
    "azure-conv": (19366, 563, 26_450_535, 968_792),  # 562 with output > 512, 1 with input > 8192
    "azure-code": (8819, 27, 18_305_870, 81_689),  # all 27 with output > 512
}
# Outside a session that loads the plugin (which registers energy_weight), pytest warns on the mark.
UNREGISTERED_MARK_OK = pytest.mark.filterwarnings("ignore:Unknown pytest.mark.energy_weight")

# The largest bins by requests, with their tokens (input + output as the trace has them).
AZURE_CONV_TOP = [
    ((2048, 512), 4477, 6_782_190),
    ((512, 128), 3933, 1_948_327),
    ((1024, 512), 1427, 1_993_392),
    ((256, 256), 1260, 477_692),
    ((4096, 64), 943, 3_554_749),
    ((4096, 128), 887, 2_816_607),
]
AZURE_CODE_TOP = [
    ((2048, 16), 904, 1_345_896),
    ((4096, 16), 868, 2_430_850),
    ((8192, 16), 529, 3_246_544),
    ((1024, 16), 497, 399_087),
    ((4096, 8), 490, 1_360_875),
    ((2048, 8), 443, 662_343),
]


def test_default_edges_are_the_papers_powers_of_two():
    assert DEFAULT_INPUT_EDGES == (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
    assert DEFAULT_OUTPUT_EDGES == (8, 16, 32, 64, 128, 256, 512)


@pytest.mark.parametrize(
    ("request_tokens", "expected"),
    [
        ((33, 100), Bin(64, 128)),  # the ceiling
        ((32, 8), Bin(32, 8)),  # an edge stays in its own bin
        ((0, 0), Bin(32, 8)),  # 0 or 1 token: the first bin
        ((1, 1), Bin(32, 8)),
        ((8192, 512), Bin(8192, 512)),
        ((8193, 1), None),  # beyond the largest bin: dropped
        ((1, 513), None),
        ((374, 44), Bin(512, 64)),  # conv.csv line 2
    ],
)
def test_each_request_goes_to_the_smallest_bin_that_holds_it(request_tokens, expected):
    assert BinEdges().bin_for(*request_tokens) == expected


@pytest.mark.parametrize(
    ("input_edges", "output_edges", "message"),
    [
        ((), (8,), "none given"),
        ((64, 32), (8,), "strictly increasing, got 64 then 32"),
        ((32, 32), (8,), "strictly increasing"),
        ((0, 32), (8,), "0 is not a positive"),
        ((32,), (-8,), "-8 is not a positive"),
        ((32,), (8.5,), "8.5 is not a positive"),
    ],
)
def test_bad_edges_are_usage_errors(input_edges, output_edges, message):
    with pytest.raises(EnergyUsageError, match=message):
        BinEdges(input_edges, output_edges)


@pytest.mark.parametrize(
    ("trace", "counts", "top"),
    [
        ("azure-conv", AZURE_CONV_COUNTS, AZURE_CONV_TOP),
        ("azure-code", AZURE_CODE_COUNTS, AZURE_CODE_TOP),
    ],
)
def test_azure_bin_tables_match_the_independent_count(trace, counts, top):
    table = bin_table(trace)
    assert {(row.bin.input_tokens, row.bin.output_tokens): row.requests for row in table.bins} == counts
    total, dropped, total_tokens, dropped_tokens = AZURE_TOTALS[trace]
    assert (table.total_requests, table.dropped_requests) == (total, dropped)
    assert (table.total_tokens, table.dropped_tokens) == (total_tokens, dropped_tokens)
    assert sum(counts.values()) + dropped == total
    assert table.dropped_share == pytest.approx(dropped / total)
    ranked = table.ranked("requests")[: len(top)]
    assert [((r.bin.input_tokens, r.bin.output_tokens), r.requests, r.tokens) for r in ranked] == top
    for row in ranked:
        assert row.share_of_requests == pytest.approx(row.requests / total)
        assert row.share_of_tokens == pytest.approx(row.tokens / total_tokens)
    # shares of the whole trace: the bins and the dropped part make 1
    assert sum(r.share_of_requests for r in table.bins) + table.dropped_share == pytest.approx(1)
    assert sum(r.share_of_tokens for r in table.bins) + table.dropped_token_share == pytest.approx(1)


def test_custom_edges(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("input_tokens,output_tokens\n10,1\n100,50\n101,51\n1000,5\n50,200\n", encoding="utf-8")
    table = bin_table(path, BinEdges((100, 1000), (50, 100)))
    assert {row.bin: row.requests for row in table.bins} == {
        Bin(100, 50): 2,
        Bin(1000, 100): 1,
        Bin(1000, 50): 1,
    }
    assert table.dropped_requests == 1  # 50 in, 200 out
    assert table.get(Bin(1000, 100)).input_tokens == 101


def test_top_by_tokens_and_min_share():
    by_tokens = trace_bins("azure-code", top_k=2, by="tokens")
    assert [row.bin for row in by_tokens] == [Bin(8192, 16), Bin(4096, 16)]
    over_ten_percent = trace_bins("azure-conv", min_share=0.10)
    assert [row.bin for row in over_ten_percent] == [Bin(2048, 512), Bin(512, 128)]
    with pytest.raises(EnergyUsageError, match="rank bins by requests or tokens"):
        trace_bins("azure-conv", by="joules")
    with pytest.raises(EnergyUsageError, match="top_k"):
        trace_bins("azure-conv", top_k=0)


@UNREGISTERED_MARK_OK
def test_bin_params_make_workloads_with_ids_and_weights():
    params = bin_params("azure-conv", top_k=2, batch_sizes=(1, 8), decodings=("greedy", "beam:4"))
    assert [p.id for p in params] == [
        "in2048-out512-b1-greedy",
        "in2048-out512-b1-beam4",
        "in2048-out512-b8-greedy",
        "in2048-out512-b8-beam4",
        "in512-out128-b1-greedy",
        "in512-out128-b1-beam4",
        "in512-out128-b8-greedy",
        "in512-out128-b8-beam4",
    ]
    first = params[0]
    assert first.values == (Workload(2048, 512, 1, Decoding()),)
    (mark,) = first.marks
    assert mark.name == WEIGHT_MARKER
    assert mark.args == (pytest.approx(4477 / 19366),)
    assert mark.kwargs == {"trace": "azure-conv", "by": "requests"}
    assert params[-1].values[0].decoding == Decoding(kind="beam", num_beams=4)


@UNREGISTERED_MARK_OK
def test_bin_params_weight_by_tokens():
    (param,) = bin_params("azure-code", top_k=1, batch_sizes=(4,), by="tokens")
    assert param.id == "in8192-out16-b4-greedy"
    assert param.marks[0].args == (pytest.approx(3_246_544 / 18_305_870),)


def test_bin_params_rejects_a_bare_batch_size():
    with pytest.raises(EnergyUsageError, match="sequences"):
        bin_params("azure-conv", batch_sizes=8)


def test_bin_params_drive_a_parametrized_test(pytester):
    pytester.makeconftest("")
    pytester.makeini("[pytest]\nmarkers =\n    energy_weight: share of a trace\n")
    pytester.makepyfile("""
        import pytest
        from pytest_llm_energy.core.binning import bin_params

        @pytest.mark.parametrize("workload", bin_params("azure-conv", top_k=2, batch_sizes=(1, 8)))
        def test_chat(workload, request):
            assert request.node.get_closest_marker("energy_weight").args[0] > 0.2
    """)
    result = pytester.runpytest("-p", "no:llm_energy", "-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=4)
    result.stdout.no_fnmatch_line("*error*")


def test_length_caps_pick_the_largest_bins_a_small_machine_can_run():
    capped = trace_bins("azure-conv", 3, max_input_tokens=1024, max_output_tokens=128)
    assert [row.bin.label for row in capped] == ["in512-out128", "in256-out128", "in1024-out128"]
    assert [row.requests for row in capped] == [3933, 561, 464]  # shares stay shares of the whole trace
