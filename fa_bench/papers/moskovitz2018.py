"""Moskovitz, Litwin-Kumar & Abbott 2018, "Feedback alignment in deep convolutional networks" (arXiv
1812.06488): the numbers the paper reports. Top-1 and top-5 test errors in %."""
from __future__ import annotations

# Table 1, one experiment per column: cell (conf/cell/moskovitz_<row>) -> (row label, top-1 test error
# %). The paper's "-" fields (DFA and DenseFA beyond CIFAR Model 1, the Const. rows outside ImageNet 2)
# are left out. No spreads or run counts are given.
_ROWS = {"moskovitz_bp": "BP", "moskovitz_bp_noise": "BP + Noise", "moskovitz_bp_align": "BP + Alignment",
         "moskovitz_fa": "FA", "moskovitz_usf_init_ei": "FA-uSF Init. E/I", "moskovitz_usf_init": "FA-uSF Init.",
         "moskovitz_usf_sn": "FA-uSF SN", "moskovitz_dfa": "DFA", "moskovitz_dense_fa": "DenseFA",
         "moskovitz_bp_const": "BP Const.", "moskovitz_usf_const": "FA-uSF Const.",
         "moskovitz_usf_const_ei": "FA-uSF Const. E/I"}
_COLUMNS = {  # experiment: (data set, {cell: top-1 error})
    "moskovitz_table1_mnist": ("MNIST", {
        "moskovitz_bp": 0.8, "moskovitz_bp_noise": 0.8, "moskovitz_bp_align": 0.9, "moskovitz_fa": 1.1,
        "moskovitz_usf_init_ei": 0.9, "moskovitz_usf_init": 0.7, "moskovitz_usf_sn": 0.7, "moskovitz_dfa": 1.0,
        "moskovitz_dense_fa": 0.7}),
    "moskovitz_table1_cifar1": ("CIFAR-10, Model 1", {
        "moskovitz_bp": 17.2, "moskovitz_bp_noise": 17.4, "moskovitz_bp_align": 17.4, "moskovitz_fa": 26.6,
        "moskovitz_usf_init_ei": 18.9, "moskovitz_usf_init": 17.6, "moskovitz_usf_sn": 17.7, "moskovitz_dfa": 28.6,
        "moskovitz_dense_fa": 16.9}),
    "moskovitz_table1_cifar2": ("CIFAR-10, Model 2", {
        "moskovitz_bp": 11.0, "moskovitz_bp_noise": 11.0, "moskovitz_bp_align": 11.2, "moskovitz_fa": 35.6,
        "moskovitz_usf_init_ei": 17.8, "moskovitz_usf_init": 13.1, "moskovitz_usf_sn": 12.6}),
    "moskovitz_table1_imagenet1": ("ImageNet, Model 1", {
        "moskovitz_bp": 79.5, "moskovitz_bp_noise": 79.2, "moskovitz_bp_align": 79.4, "moskovitz_fa": 95.2,
        "moskovitz_usf_init_ei": 86.9, "moskovitz_usf_init": 79.6, "moskovitz_usf_sn": 78.9}),
    "moskovitz_table1_imagenet2": ("ImageNet, Model 2", {
        "moskovitz_bp": 45.5, "moskovitz_bp_noise": 46.0, "moskovitz_bp_align": 45.9, "moskovitz_fa": 94.5,
        "moskovitz_usf_init_ei": 67.8, "moskovitz_usf_init": 60.1, "moskovitz_usf_sn": 54.4,
        "moskovitz_bp_const": 46.9, "moskovitz_usf_const": 51.2, "moskovitz_usf_const_ei": 66.1}),
}
TABLE1 = {experiment: {"dataset": dataset, "cells": {cell: (_ROWS[cell], value) for cell, value in cells.items()}}
          for experiment, (dataset, cells) in _COLUMNS.items()}

# Fig. 4's table (ImageNet Model 2, W norms fixed at initialisation): cell -> (top-1, top-5) test error %
FIG4 = {"moskovitz_bp_const": (46.9, 22.6), "moskovitz_usf_const": (51.2, 26.6), "moskovitz_usf_const_ei": (66.1, 35.2)}

# by the name claims.yaml uses (`paper_value: moskovitz2018/<name>`)
VALUES = {
    **{f"{experiment.removeprefix('moskovitz_')}_{cell.removeprefix('moskovitz_')}_top1": value
       for experiment, spec in TABLE1.items() for cell, (_, value) in spec["cells"].items()},
    **{f"fig4_{cell.removeprefix('moskovitz_')}_top5": top5 for cell, (_, top5) in FIG4.items()},
}
