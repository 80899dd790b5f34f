# The two commands of the README: `make run` serves models/, `make test` lints and tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
MODELS ?= models
PYTEST_ARGS ?=

.PHONY: run test lint format install-serve install-dev samples train-samples test-samples calibration-samples fresh-samples study cards zgamma-samples vae-study clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Stamps re-install only when pyproject.toml changes.
$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[serve]"
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@ $(VENV)/.serve-installed

install-serve: $(VENV)/.serve-installed
install-dev: $(VENV)/.dev-installed

run: install-serve
	OMP_NUM_THREADS=1 $(BIN)/nae serve --models $(MODELS) --host $(HOST) --port $(PORT)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	OMP_NUM_THREADS=1 $(BIN)/pytest $(PYTEST_ARGS)

# The training and test samples of the shipped bundles (docs/data.md, "Training samples"). CPU
# hours on one core; repeat a target to resume it: complete shards are skipped. In the background:
# nohup make samples > data/samples.log 2>&1 &
SAMPLE_WORKERS ?= 1
NAE_DATA := OMP_NUM_THREADS=1 $(BIN)/nae data
samples: train-samples test-samples

train-samples: install-dev
	$(NAE_DATA) jets --process qcd --n 100000 --seed 101 --shard-size 5000 --workers $(SAMPLE_WORKERS) --out data/train/qcd
	$(NAE_DATA) events --process sm --n 100000 --seed 103 --shard-size 10000 --workers $(SAMPLE_WORKERS) --out data/train/sm
	$(NAE_DATA) jets --process top --n 100000 --seed 102 --shard-size 5000 --workers $(SAMPLE_WORKERS) --out data/train/top

# Test samples: for evaluation and calibration; the slow tau signals last.
test-samples: install-dev
	$(NAE_DATA) jets --process qcd --n 20000 --seed 201 --shard-size 2500 --workers $(SAMPLE_WORKERS) --out data/test/qcd
	$(NAE_DATA) jets --process top --n 20000 --seed 202 --shard-size 2500 --workers $(SAMPLE_WORKERS) --out data/test/top
	$(NAE_DATA) events --process sm --n 20000 --seed 204 --shard-size 5000 --workers $(SAMPLE_WORKERS) --out data/test/sm
	$(NAE_DATA) events --process zprime_mumu --n 10000 --seed 205 --shard-size 2500 --workers $(SAMPLE_WORKERS) --out data/test/zprime_mumu
	$(NAE_DATA) events --process a_4l --n 10000 --seed 206 --shard-size 2500 --workers $(SAMPLE_WORKERS) --out data/test/a_4l
	$(NAE_DATA) jets --process dark --n 20000 --seed 203 --shard-size 2500 --workers $(SAMPLE_WORKERS) --out data/test/dark
	$(NAE_DATA) events --process h_tautau --n 10000 --seed 207 --shard-size 1250 --workers $(SAMPLE_WORKERS) --out data/test/h_tautau
	$(NAE_DATA) events --process hplus_taunu --n 10000 --seed 208 --shard-size 625 --workers $(SAMPLE_WORKERS) --out data/test/hplus_taunu
	for dir in data/train/* data/test/*; do $(NAE_DATA) hash $$dir; done

# Large calibration backgrounds, other seeds: a 1e-3 threshold calibrated on 20,000 events rests
# on 20 passing events (+-22%); 100,000 give 100 (and 10 at 1e-4). SM first (~45 CPU min).
calibration-samples: install-dev
	$(NAE_DATA) events --process sm --n 100000 --seed 305 --shard-size 10000 --workers $(SAMPLE_WORKERS) --out data/calibration/sm

# Fresh background samples, other seeds: the check that a shipped bundle's working points hold
# on events it was not calibrated on (docs/models/).
fresh-samples: install-dev
	$(NAE_DATA) events --process sm --n 20000 --seed 304 --shard-size 5000 --workers $(SAMPLE_WORKERS) --out data/fresh/sm
	$(NAE_DATA) jets --process qcd --n 20000 --seed 301 --shard-size 2500 --workers $(SAMPLE_WORKERS) --out data/fresh/qcd
	$(NAE_DATA) jets --process top --n 20000 --seed 302 --shard-size 2500 --workers $(SAMPLE_WORKERS) --out data/fresh/top
	$(NAE_DATA) zgamma --process zgamma --n 20000 --seed 405 --shard-size 5000 --workers $(SAMPLE_WORKERS) --out data/fresh/zgamma

# The trainings of the headline study and the shipped bundles (docs/results.md), cheapest first,
# on the training samples, which it finishes first (a run must never see a sample still being
# written; training reads no test sample): runs/<recipe>-seed<S>, then `nae evaluate` of each
# (--all-checkpoints for NAEs). The image AEs run for every seed too: the image NAE of seed S
# starts from runs/<...>-image-ae-seed<S> (train.init_from: the same network and random streams
# as if it pre-trained itself, so the AE baseline and the NAE's pre-training are trained once).
# A finished run (summary.json) or evaluation is skipped and a stopped one resumes, so repeat
# the command after any stop:
# nohup make study > runs/study.log 2>&1 &
STUDY_FAST := events-sm-nae events-sm-ae events-sm-vae events-sm-pca \
	jets-qcd-features-nae jets-qcd-features-ae jets-qcd-features-vae jets-qcd-features-pca
STUDY_IMAGES := jets-qcd-image-ae jets-qcd-image-nae jets-top-image-ae jets-top-image-nae
STUDY_SEEDS ?= 1 2 3
study: train-samples
	@for recipe in $(STUDY_FAST) $(STUDY_IMAGES); do \
	  case $$recipe in *-nae|*-image-ae) seeds="$(STUDY_SEEDS)";; *) seeds=1;; esac; \
	  for seed in $$seeds; do \
	    run=runs/$$recipe-seed$$seed; \
	    case $$recipe in \
	      *-image-nae) start="--set train.init_from=runs/$${recipe%-nae}-ae-seed$$seed --set train.ae_epochs=0";; \
	      *) start="";; \
	    esac; \
	    test -f $$run/summary.json || { echo "== train $$run"; \
	      OMP_NUM_THREADS=1 $(BIN)/nae train $$recipe --set train.seed=$$seed $$start --run-dir $$run --resume || exit 1; }; \
	    case $$recipe in *-nae) evaluated=$$run/evaluation/checkpoints.json; all=--all-checkpoints;; \
	      *) evaluated=$$run/evaluation/best/metrics.json; all="";; esac; \
	    test -f $$evaluated || { echo "== evaluate $$run"; \
	      OMP_NUM_THREADS=1 $(BIN)/nae evaluate $$run $$all || exit 1; }; \
	  done; \
	done
	$(BIN)/python -m benchmarks.study --runs runs

# After exporting a bundle: its model card docs/models/NAME.md (every bundle under $(MODELS), the
# highest version of each) and the table of shipped bundles in models/README.md.
cards: install-dev
	$(BIN)/nae bundle cards $(MODELS) --out-dir docs/models --readme models/README.md

# The VAE-family study on Z-gamma (issue 11; docs/results-vae.md): background for training,
# held-out background (>= 50k: fidelity and classification), a signal test sample and a
# separate signal sample to inject into training; seeds 401-404, apart from every other sample's.
# Resumable as above.
zgamma-samples: install-dev
	$(NAE_DATA) zgamma --process zgamma --n 100000 --seed 401 --shard-size 10000 --workers $(SAMPLE_WORKERS) --out data/zgamma/train
	$(NAE_DATA) zgamma --process zgamma --n 50000 --seed 402 --shard-size 10000 --workers $(SAMPLE_WORKERS) --out data/zgamma/test
	$(NAE_DATA) zgamma --process h_zgamma --n 20000 --seed 403 --shard-size 5000 --workers $(SAMPLE_WORKERS) --out data/zgamma/signal
	$(NAE_DATA) zgamma --process h_zgamma --n 6000 --seed 404 --shard-size 6000 --workers $(SAMPLE_WORKERS) --out data/zgamma/signal-train
	for dir in data/zgamma/*; do $(NAE_DATA) hash $$dir; done

# Six generators x three seeds, each trained and evaluated (fidelity against the 50k held-out
# events, speed, classification), then, once all 18 are done, each recipe once per injected
# signal fraction (evaluated with 20 bootstrap replicas: their point is the classification,
# and the fidelity bootstrap is most of an evaluation's cost); a run with summary.json is not
# trained again, one with its metrics.json not evaluated again, so repeat the command after any
# stop: nohup make vae-study > runs/vae-study.log 2>&1 &
VAE_RECIPES := zgamma-vae zgamma-vae-d zgamma-vae-nf zgamma-vae-nf-d zgamma-copula-vae zgamma-cvae-d
VAE_SEEDS ?= 1 2 3
VAE_INJECT ?= 0.001 0.01 0.05
VAE_RUNS ?= runs/vae
vae-study: zgamma-samples
	@mkdir -p $(VAE_RUNS)
	@for recipe in $(VAE_RECIPES); do \
	  for seed in $(VAE_SEEDS); do \
	    run=$(VAE_RUNS)/$$recipe-seed$$seed; \
	    test -f $$run/summary.json || { echo "== train $$run"; \
	      OMP_NUM_THREADS=1 $(BIN)/nae train $$recipe --set train.seed=$$seed --run-dir $$run --resume || exit 1; }; \
	    test -f $$run/evaluation/best/metrics.json || { echo "== evaluate $$run"; \
	      OMP_NUM_THREADS=1 $(BIN)/nae evaluate $$run || exit 1; }; \
	  done; \
	done
	@for recipe in $(VAE_RECIPES); do \
	  for fraction in $(VAE_INJECT); do \
	    run=$(VAE_RUNS)/$$recipe-inject$$fraction-seed1; \
	    test -f $$run/summary.json || { echo "== train $$run"; \
	      OMP_NUM_THREADS=1 $(BIN)/nae train $$recipe --set data.inject=data/zgamma/signal-train \
	        --set data.inject_fraction=$$fraction --run-dir $$run --resume || exit 1; }; \
	    test -f $$run/evaluation/best/metrics.json || { echo "== evaluate $$run"; \
	      OMP_NUM_THREADS=1 $(BIN)/nae evaluate $$run --bootstrap 20 || exit 1; }; \
	  done; \
	done
	$(BIN)/python -m benchmarks.vae_study $(VAE_RUNS) --out benchmarks/results/vae_study.json

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
