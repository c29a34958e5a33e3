"""debug=default (conf/debug/): every experiment runs end to end in a few steps, on the data the test
session writes (tiny MNIST, CIFAR-10/100 and, for ImageNet, an image tree in ImageFolder layout)."""
from pathlib import Path

import pytest

from fa_bench.config import compose_config
from fa_bench.data.fake import write_image_tree
from fa_bench.run import resolve_config, run

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def _engine(experiment):
    return compose_config([f"experiment={experiment}", "hydra.mode=RUN"]).get("engine", "autograd")


TRAINED = [e for e in EXPERIMENTS if _engine(e) != "spiking"]


@pytest.fixture(scope="module")
def imagenet_tree(tmp_path_factory):
    return write_image_tree(tmp_path_factory.mktemp("imagenet"), n_classes=6, n_train=2, n_val=1, side=24)


@pytest.mark.parametrize("experiment", TRAINED)
def test_every_experiment_runs_under_debug(experiment, tmp_path, imagenet_tree, fake_cifar_accepted):
    overrides = [f"experiment={experiment}", "hydra.mode=RUN", "debug=default"]
    if compose_config(overrides).dataset.name == "imagenet":  # the tree stands in for ILSVRC's 1000 classes
        overrides += [f"dataset.path={imagenet_tree}", "dataset.n_classes=6", "dataset.num_workers=0",
                      "trainer.batch_size=6", "trainer.eval_batch_size=6", "metrics.batch_size=6"]
    if experiment == "moskovitz_table1_imagenet2":  # its header: the twin rate 0.05 diverges under Adam
        overrides.append("optimizer.lr=1e-3")      # within a few steps on fake data; it says to try 1e-3
    summary = run(compose_config(overrides), tmp_path / "run")
    assert summary["status"] == "completed", summary.get("error")
    # 3 steps, or one epoch of a data set smaller than that (the session's fake CIFAR at batch 128)
    assert 1 <= summary["steps"] <= 3 and summary["budget"]["max_steps"] == 3
    assert (tmp_path / "run" / "metrics.csv").stat().st_size > 0


@pytest.mark.parametrize("experiment", sorted(set(EXPERIMENTS) - set(TRAINED)))
def test_debug_names_the_spiking_engines_own_budget(experiment):
    """The spiking engine keeps its own schedule (spiking.epochs, streams, eval_every): debug's step
    budget is refused with those keys named, before anything trains."""
    with pytest.raises(Exception, match="spiking.epochs"):
        resolve_config(compose_config([f"experiment={experiment}", "hydra.mode=RUN", "debug=default"]))
