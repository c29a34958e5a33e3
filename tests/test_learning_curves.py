"""Every classification experiment gets a learning-curve view (test error against epochs) from its
committed curves; regression experiments do not."""
import shutil
from pathlib import Path

from fa_bench.figures import learning_curves, make_all

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_each_committed_classification_experiment_has_its_learning_curves(tmp_path):
    for name in ("lillicrap_fig3a", "lillicrap_fig2"):
        shutil.copytree(RESULTS / name, tmp_path / name)
        (tmp_path / name / learning_curves.FILE).unlink(missing_ok=True)
    written = {p.name for p in make_all(tmp_path) if p.parent.name == "lillicrap_fig3a"}
    assert learning_curves.FILE in written
    assert (tmp_path / "lillicrap_fig3a" / learning_curves.FILE).stat().st_size > 10_000
    assert not (tmp_path / "lillicrap_fig2" / learning_curves.FILE).exists()  # NSE, not a classification error
    committed = {p.parent.name for p in RESULTS.glob(f"*/{learning_curves.FILE}")}
    classifying = {p.parent.name for p in RESULTS.glob("*/curves.csv")
                   if "test,error" in p.read_text()[:2_000_000]}
    assert classifying and committed == classifying
