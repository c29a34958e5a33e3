"""What each paper reports, one module per paper: the only place a paper's numbers are typed.
Figures draw them and fa_bench/scorecard.py checks our results against them (claims.yaml refers to
them by name), so a figure and the scorecard cannot disagree on a paper value."""
