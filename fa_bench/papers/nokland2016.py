"""Nøkland 2016, "Direct feedback alignment provides learning in deep neural networks" (NIPS): the
numbers the paper reports."""
from __future__ import annotations

# Tables 1-3: cell -> (row label, {rule: (test error %, sd, training error % or None) or None}).
# None for a whole entry: the paper's empty field, "no convergence". Training errors are given only
# where above `train_shown_above` (0.01 % in Table 1, 0.1 % in Tables 2 and 3). `not_converged` is
# ours, not the paper's: a run counts as not converged when its final training error is at or above
# it, well above any training error the paper reports and still near chance (dropout keeps
# CIFAR-100's training error at 67-77 % in the paper).
TABLES = {
    "nokland_table1": {
        "title": "Table 1: MNIST test error", "dataset": "MNIST", "file": "table1.md", "decimals": 2,
        "train_shown_above": 0.01, "chance": 90.0, "not_converged": 50.0,
        "cells": {
            "nokland_7x240_tanh": ("7x240 Tanh", {"bp": (2.16, 0.13, None), "fa": (2.20, 0.13, 0.02),
                                                 "dfa": (2.32, 0.15, 0.03)}),
            "nokland_100x240_tanh": ("100x240 Tanh", {"bp": None, "fa": None, "dfa": (3.92, 0.09, 0.12)}),
            "nokland_1x800_tanh": ("1x800 Tanh", {"bp": (1.59, 0.04, None), "fa": (1.68, 0.05, None),
                                                 "dfa": (1.68, 0.05, None)}),
            "nokland_2x800_tanh": ("2x800 Tanh", {"bp": (1.60, 0.06, None), "fa": (1.64, 0.03, None),
                                                 "dfa": (1.74, 0.08, None)}),
            "nokland_3x800_tanh": ("3x800 Tanh", {"bp": (1.75, 0.05, None), "fa": (1.66, 0.09, None),
                                                 "dfa": (1.70, 0.04, None)}),
            "nokland_4x800_tanh": ("4x800 Tanh", {"bp": (1.92, 0.11, None), "fa": (1.70, 0.04, None),
                                                 "dfa": (1.83, 0.07, 0.02)}),
            "nokland_2x800_logistic": ("2x800 Logistic", {"bp": (1.67, 0.03, None), "fa": (1.82, 0.10, None),
                                                         "dfa": (1.75, 0.04, None)}),
            "nokland_2x800_relu": ("2x800 ReLU", {"bp": (1.48, 0.06, None), "fa": (1.74, 0.10, None),
                                                 "dfa": (1.70, 0.06, None)}),
            "nokland_2x800_tanh_do": ("2x800 Tanh + DO", {"bp": (1.26, 0.03, 0.18), "fa": (1.53, 0.03, 0.18),
                                                          "dfa": (1.45, 0.07, 0.24)}),
            "nokland_2x800_tanh_adv": ("2x800 Tanh + ADV", {"bp": (1.01, 0.08, None), "fa": (1.14, 0.03, None),
                                                            "dfa": (1.02, 0.05, 0.12)}),
        },
    },
    "nokland_table2": {
        "title": "Table 2: CIFAR-10 test error", "dataset": "CIFAR-10", "file": "table2.md", "decimals": 1,
        "train_shown_above": 0.1, "chance": 90.0, "not_converged": 80.0,
        "cells": {
            "nokland_1x1000_tanh": ("1x1000 Tanh", {"bp": (45.1, 0.7, 2.5), "fa": (46.4, 0.4, 3.2),
                                                   "dfa": (46.4, 0.4, 3.2)}),
            "nokland_3x1000_tanh": ("3x1000 Tanh", {"bp": (45.1, 0.3, 0.2), "fa": (47.0, 2.2, 0.3),
                                                   "dfa": (47.4, 0.8, 2.3)}),
            "nokland_3x1000_tanh_do": ("3x1000 Tanh + DO", {"bp": (42.2, 0.2, 36.7), "fa": (46.9, 0.3, 48.9),
                                                            "dfa": (42.9, 0.2, 37.6)}),
            "nokland_conv_tanh": ("CONV Tanh", {"bp": (22.5, 0.4, None), "fa": (27.1, 0.8, 0.9),
                                               "dfa": (26.9, 0.5, 0.2)}),
        },
    },
    "nokland_table3": {
        "title": "Table 3: CIFAR-100 test error", "dataset": "CIFAR-100", "file": "table3.md", "decimals": 1,
        "train_shown_above": 0.1, "chance": 99.0, "not_converged": 95.0,
        "cells": {
            "nokland_1x1000_tanh": ("1x1000 Tanh", {"bp": (71.7, 0.2, 38.7), "fa": (73.8, 0.3, 37.5),
                                                   "dfa": (73.8, 0.3, 37.5)}),
            "nokland_3x1000_tanh": ("3x1000 Tanh", {"bp": (72.0, 0.3, 0.2), "fa": (75.3, 0.1, 0.5),
                                                   "dfa": (75.9, 0.2, 3.1)}),
            "nokland_3x1000_tanh_do": ("3x1000 Tanh + DO", {"bp": (69.8, 0.1, 66.8), "fa": (75.3, 0.2, 77.2),
                                                            "dfa": (73.1, 0.1, 69.8)}),
            "nokland_conv_tanh": ("CONV Tanh", {"bp": (51.7, 0.2, None), "fa": (60.5, 0.3, None),
                                               "dfa": (59.0, 0.3, None)}),
        },
    },
}

# single numbers from the text, by the name claims.yaml uses (`paper_value: nokland2016/<name>`)
VALUES = {
    "fig2_left_pretrain_train_error": 5.0,  # % after 50 epochs of BP with the first layer frozen ("about 5 %")
    "ifa_test_error": 3.9,                   # % test error of the 4x100 tanh net trained by IFA (Sec. 5)
}
