"""Lansdell, Prakash & Kording 2020, "Learning to solve the credit assignment problem" (ICLR): the
numbers the paper reports, and the ones only the authors' code prints (named ``code_*``)."""
from __future__ import annotations

# by the name claims.yaml uses (`paper_value: lansdell2020/<name>`); test errors in %
VALUES = {
    # Fig. 2 gives no numbers; the authors' notebook (benlansdell/synthfeedback,
    # notebooks/fig_2_validate_nodepert.ipynb) prints the final test errors after 2 M iterations, mean of 5 runs
    "code_fig2_np_c1e-3_test_error": 3.510,
    "code_fig2_fa_test_error": 4.285,
    "code_fig2_bp_test_error": 2.649,
}

# Table 2a (p. 7), MNIST autoencoder: mean loss ± s.e., the minimum over training of a 32-image test
# batch's summed loss ½Σ(ŷ − x)² (the authors' notebook, fig_3_autoencoder.ipynb); per method, the
# (mean, s.e.) of the "noise" and "no noise" columns, None where the paper has no cell
TABLE2A = {
    "bp_sgd": {"noise": (536.8, 2.1), "no_noise": (609.8, 14.4)},
    "bp_adam": {"noise": (522.3, 0.4), "no_noise": (533.3, 2.2)},
    "fa": {"noise": (768.2, 2.7), "no_noise": (759.1, 3.3)},
    "dae": {"noise": (539.8, 4.9), "no_noise": None},
    "np": {"noise": (515.3, 4.1), "no_noise": None},
    "sg": {"noise": None, "no_noise": (521.6, 2.3)},
    "matched": {"noise": (629.9, 1.1), "no_noise": (615.0, 0.4)},
}
# claims.yaml's names: table2a_<method>, and table2a_<method>_noise for a method with both columns
VALUES.update({f"table2a_{method}{'_noise' if column == 'noise' and columns['no_noise'] else ''}": cell[0]
               for method, columns in TABLE2A.items() for column, cell in columns.items() if cell is not None})
