"""Lillicrap et al. 2016, "Random synaptic feedback weights support error backpropagation for deep
learning" (Nature Communications): the numbers the paper reports."""
from __future__ import annotations

# by the name claims.yaml uses (`paper_value: lillicrap2016/<name>`); mean test errors in %
VALUES = {
    "fig3a_bp_test_error": 2.4,     # Fig. 3a, backprop, n = 20
    "fig3a_fa_test_error": 2.1,     # Fig. 3a, feedback alignment, n = 20
    "sparse_fa_test_error": 2.4,    # Results, 50 % of W and B removed, n = 20
    "fig4_test_error": 1.8,         # Fig. 4, the spiking network
}
