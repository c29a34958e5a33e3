"""The built wheel carries conf/ (as fa_bench/conf) and claims.yaml, so an installed fa-run finds them."""
import subprocess
import sys
import zipfile
from pathlib import Path


def test_wheel_ships_configs_and_claims(tmp_path, repo):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(repo)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("fa_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"fa_bench/conf/{p.relative_to(repo / 'conf')}" for p in (repo / "conf").rglob("*.yaml")}
    assert expected and expected <= names, sorted(expected - names)
    assert "fa_bench/claims.yaml" in names
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert entry and "fa-run = fa_bench.cli:entry" in zipfile.ZipFile(wheel).read(entry[0]).decode()


def test_conf_dir_prefers_checkout_then_package(tmp_path, monkeypatch):
    import fa_bench.config as config

    pkg = tmp_path / "site" / "fa_bench"
    (pkg / "conf").mkdir(parents=True)
    (pkg / "conf" / "config.yaml").write_text("seed: 0\n")
    monkeypatch.setattr(config, "__file__", str(pkg / "config.py"))
    assert Path(config.conf_dir()) == pkg / "conf"  # a wheel install: no checkout beside the package
