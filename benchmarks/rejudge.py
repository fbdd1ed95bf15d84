"""Re-judge stored check reports against a baselines folder with the plugin's judge and default prior:

    python benchmarks/rejudge.py baselines h100 benchmarks/results/h100/session36/h100new_check_code.json
"""
import json
import sys
from pathlib import Path

from pytest_llm_energy.core.baseline import BaselineStore
from pytest_llm_energy.core.judge import judge_test
from pytest_llm_energy.core.settings import CONFIDENCE, TOLERANCE
from pytest_llm_energy.core.stats import Prior
from pytest_llm_energy.core.workload import Workload

root, key = Path(sys.argv[1]), sys.argv[2]
store = BaselineStore(root, key)
evidence = store.evidence()
for report in sys.argv[3:]:
    d = json.loads(Path(report).read_text())
    ref = d["references"][0] if d.get("references") else None
    for r in d["results"]:
        entry = store.lookup(r["nodeid"])
        if entry is None or not r.get("samples"):
            continue
        gpus = frozenset(dev["uuid"] for dev in r["measurement"]["devices"])
        j = judge_test(entry, r["samples"], gpus=gpus, reference=ref,
                       workload=Workload.from_dict(r["workload"]) if r.get("workload") else None,
                       tolerance=TOLERANCE.default, confidence=CONFIDENCE.default, prior=Prior(),
                       evidence=evidence, fingerprint=None, on_cpu=False, allow_hardware_change=True)
        dd = j.decision
        print(f"{Path(report).stem[:22]:22} {r['nodeid'].split('::')[1][:45]:45} runs={len(entry.runs)} "
              f"{dd.delta:+.1%} CI {dd.ci_low-1:+.1%}..{dd.ci_high-1:+.1%} det {dd.detectable:.1%} "
              f"card {dd.noise.card:.3f}/{dd.noise.card_df:.1f} {dd.verdict}  "
              f"(in run: {r['verdict']}, det {r['detectable']:.1%})")
