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
