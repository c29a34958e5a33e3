# fa_bench: the commands a newcomer needs. FA_DATA points at the data sets (MNIST under $FA_DATA/MNIST/raw).
export FA_DATA ?= $(abspath ../shared/data)
PYTHON ?= python
RESULTS ?= results

.PHONY: install test figures fig2 bench gpu-check clean scorecard results

install:            ## torch/torchvision from this machine's disk, then fa_bench (editable) with test extras
	$(PYTHON) -m pip install torch torchvision
	$(PYTHON) -m pip install -e ".[test]"

test:               ## the test suite (what .ci/run calls)
	$(PYTHON) -m pytest -q

figures:            ## every figure, table and results/SCORECARD.md from the committed results/ (no training)
	$(PYTHON) scripts/make_figures.py --results $(RESULTS)

scorecard:          ## the scorecard of any results folder against the papers: make scorecard RESULTS=<dir> (writes <dir>/SCORECARD.md)
	$(PYTHON) -m fa_bench.scorecard --results $(RESULTS)

results:            ## rerun one experiment and refresh its committed results/<EXP>/ (the explicit choice): make results EXP=lillicrap_fig2
	@test -n "$(EXP)" || { echo "usage: make results EXP=<experiment> (one of: $(basename $(notdir $(wildcard conf/experiment/*.yaml))))" >&2; exit 2; }
	fa-run experiment=$(EXP) results_dir=results

fig2:               ## Lillicrap 2016 Fig. 2 end to end: train all rules x seeds, collect, draw
	fa-run experiment=lillicrap_fig2

bench:              ## issue 13's speed targets with pass/fail: step ratios to plain PyTorch (and BioTorch if installed: pip install --no-deps biotorch), metrics overhead, small nets, fig2 end to end; 1 thread: results/bench/ (~8 min)
	$(PYTHON) scripts/bench.py --threads 1 --out $(RESULTS)/bench

gpu-check:          ## on a CUDA machine, in one call (< 8 min): the CUDA tests, then the bench on CUDA in fp32, bf16, channels_last, compile: results/bench/cuda/ (refuses without CUDA; scripts/gpu_check.sh --dry-run lists it)
	OUT=$(RESULTS)/bench/cuda scripts/gpu_check.sh

clean:
	rm -rf outputs multirun .pytest_cache
