# The two commands of the README. Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test demo demo-data bench clean-demo

install: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

# The linter first (settings in pyproject.toml), then the suite (pyproject.toml's testpaths: tests/).
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/model_step.py
	$(PY) bench/feeder.py
	$(PY) bench/pack_formats.py
	$(PY) bench/bucketing.py
	$(PY) bench/decode.py

# ---- demo (TRAIN helper) ------------------------------------------------------------------
# Synthetic PHOENIX-2014-format data -> the real preprocessing -> train config/demo.yaml on the
# CPU -> score the best checkpoint's test-split hypotheses with the scorer.
# CI runs the short form: make demo DEMO_SIZE=tiny DEMO_ARGS="--num-epoch 1"
DEMO_DIR ?= demo_data
DEMO_WORK ?= work_dir/demo
DEMO_SIZE ?= demo
DEMO_SEED ?= 0
DEMO_ARGS ?=

# Reruns and other sizes are safe: --replace swaps only the generator's own files, and the resize
# manifests redo every video whose frames changed (same bytes again: nothing is resized).
demo: demo-data
	$(PY) main.py --config config/demo.yaml --overwrite --work-dir $(DEMO_WORK) \
		--set dataset_info.dataset_root=$(DEMO_DIR)/phoenix2014 \
		--set dataset_info.dict_path=$(DEMO_DIR)/preprocess/gloss_dict.npy $(DEMO_ARGS)
	@echo "== test split, best checkpoint (BiLSTM output), scored by evaluation.wer:"
	$(PY) -m evaluation.wer $(DEMO_DIR)/preprocess/phoenix2014-groundtruth-test.stm \
		$(DEMO_WORK)/test_best/output-hypothesis-test.ctm

demo-data: $(STAMP)
	$(PY) -m dataset.synthetic --format phoenix2014 --out $(DEMO_DIR)/phoenix2014 --size $(DEMO_SIZE) \
		--seed $(DEMO_SEED) --replace
	$(PY) preprocess/dataset_preprocess.py --dataset-root $(DEMO_DIR)/phoenix2014 \
		--output-dir $(DEMO_DIR)/preprocess --output-res 56x56px --process-image --multiprocessing

# Removes what `make demo` wrote (data, preprocessing outputs, run directory); keeps the venv.
clean-demo:
	rm -rf $(DEMO_DIR) $(DEMO_WORK)
