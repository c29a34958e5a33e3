"""Package discovery (the metadata is in pyproject.toml): every subpackage of fa_bench and the Hydra
plugin are found automatically, and conf/ at the top of the checkout ships inside the wheel as
fa_bench/conf, where an installed fa-run looks for its configs (fa_bench.config.conf_dir)."""
from setuptools import find_namespace_packages, setup

packages = find_namespace_packages(include=["fa_bench", "fa_bench.*", "hydra_plugins", "hydra_plugins.*"],
                                   exclude=["*.__pycache__"])
setup(packages=[*packages, "fa_bench.conf"], package_dir={"fa_bench.conf": "conf"})
