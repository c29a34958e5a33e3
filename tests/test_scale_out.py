"""Scale-out paths on this machine's CPU: image trees streamed through a DataLoader (top-1 and top-5
error, resume mid-epoch), and DDP through torchrun with the gloo backend against one process."""
import json
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest

import fa_bench.trainer as trainer_module
from fa_bench.config import compose_config
from fa_bench.data.fake import write_image_tree
from fa_bench.interrupts import RunInterrupted
from fa_bench.run import run


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_image_tree(tmp_path_factory.mktemp("tree"), n_classes=6, n_train=6, n_val=3)


def streamed(tree, *extra):
    return ["dataset=imagefolder", f"dataset.path={tree}", "dataset.size=16", "dataset.num_workers=0",
            "model.sizes=[768,16,6]", "rule=fa", "trainer.epochs=2", "trainer.batch_size=8", "trainer.eval_every=3",
            "metrics.every=2", "optimizer.lr=0.05", "device=cpu", "trainer.progress=false", "threads=1", *extra]


def test_an_image_tree_trains_through_a_dataloader_with_top1_and_top5_error(tree, tmp_path):
    summary = run(compose_config(streamed(tree)), tmp_path / "r")
    assert summary["status"] == "completed" and summary["examples"] == 2 * 36 and summary["steps"] == 2 * 5
    assert {"test/error", "test/top5_error", "train/error", "train/delta_angle/1"} <= set(summary["final"])
    metrics = pd.read_csv(tmp_path / "r" / "metrics.csv")
    test = metrics[metrics["split"] == "test"]
    assert (test.query("name == 'top5_error'")["value"].values <= test.query("name == 'error'")["value"].values).all()


def test_a_streamed_run_resumes_mid_epoch_without_replaying_batches(tree, tmp_path, monkeypatch):
    run(compose_config(streamed(tree)), tmp_path / "straight")
    calls = {"n": 0}

    def requested():
        calls["n"] += 1
        return 15 if calls["n"] >= 7 else None  # SIGTERM after the 2nd step of the 2nd epoch

    with monkeypatch.context() as m:
        m.setattr(trainer_module, "requested", requested)
        with pytest.raises(RunInterrupted):
            run(compose_config(streamed(tree)), tmp_path / "resumed")
    run(compose_config(streamed(tree)), tmp_path / "resumed")
    assert (tmp_path / "resumed" / "metrics.csv").read_text() == (tmp_path / "straight" / "metrics.csv").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args, run_dir, n=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}",
                           f"--master_port={_free_port()}", "--master_addr=127.0.0.1", "-m", "fa_bench.cli", *args,
                           f"hydra.run.dir={run_dir}"], capture_output=True, text=True, timeout=300, env=env)


DDP = ["rule=fa", "dataset=teacher_net", "model=tanh_30_20_10_10", "dataset.n_train=250", "dataset.n_test=100",
       "trainer.batch_size=32", "trainer.epochs=2", "trainer.eval_every=4", "metrics.every=0", "device=cpu",
       "threads=1", "trainer.progress=false", "optimizer.momentum=0.9"]


def test_ddp_on_two_processes_matches_one_process_at_the_same_global_batch(tmp_path):
    # 250 examples in batches of 32: the last global batch (26) splits 13/13, the others 16/16
    proc = _torchrun(DDP, tmp_path / "ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run(compose_config(DDP), tmp_path / "one")
    one, ddp = (pd.read_csv(tmp_path / d / "metrics.csv") for d in ("one", "ddp"))
    assert one[["step", "split", "name"]].equals(ddp[["step", "split", "name"]])  # rank 0 alone wrote, once
    assert ddp["value"].values == pytest.approx(one["value"].values, rel=1e-5, abs=1e-7)
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["processes"] == 2 and summary["examples"] == 500
    assert proc.stdout.count("fa-run: completed") == 1  # one outcome line, from rank 0


def test_ddp_streams_each_rank_its_share_of_an_image_tree(tree, tmp_path):
    proc = _torchrun(streamed(tree, "metrics.every=0"), tmp_path / "ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["examples"] == 2 * 36 and summary["processes"] == 2
    assert "test/top5_error" in summary["final"]


def test_fa_run_leaves_the_process_group_on_every_exit(tmp_path, monkeypatch):
    # a process that exits with gloo still up can abort after its run finished (pytorch#190489)
    import torch.distributed as dist

    import fa_bench.cli as cli

    def failing_main():
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
        raise SystemExit(1)

    monkeypatch.setattr(cli, "_main", failing_main)
    monkeypatch.setattr(sys, "argv", ["fa-run"])
    with pytest.raises(SystemExit):
        cli.main()
    assert not dist.is_initialized()
