"""recipes/seed_summary.py: means, standard deviations and wins over seeds."""
import subprocess
import sys

from conftest import RECIPES


def test_seed_summary_means_and_wins(tmp_path):
    import json
    values = {"ae": [0.6, 0.8], "mmae": [0.7, 0.7]}          # one metric varied, the others equal
    runs = []
    for i in range(2):
        run = tmp_path / f"seed{i}"
        for model, v in values.items():
            (run / model / "report").mkdir(parents=True)
            (run / model / "report" / "metrics.json").write_text(json.dumps(
                {"image_auroc": v[i], "pixel_auroc": 0.5, "aupro": 0.4}))
        runs.append(str(run))
    r = subprocess.run([sys.executable, str(RECIPES / "seed_summary.py"), *runs], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = {line.split(" | ")[0].strip("| "): line for line in r.stdout.splitlines()[2:]}
    assert "0.700 ± 0.141" in rows["ae"] and "0.700 ± 0.000" in rows["mmae"]   # sd of (0.6, 0.8), ddof 1
    assert "image_auroc 1/2" in rows["ae"] and "image_auroc 1/2" in rows["mmae"]
