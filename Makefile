# Quickstart: `make serve` (train if needed, then serve on :3000) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
MODELS ?= mlp distilbert
export BENTOML_HOME ?= $(CURDIR)/bentos
export WANDB_MODE ?= offline

.PHONY: install models serve test docs lint bento bento-gpu base-image container container-gpu \
	container-test data \
	deploy-cloudrun deploy-cloudrun-gpu deploy-gke deploy-gke-gpu training-image vertex-train \
	backfill bench bench-drift bench-ensemble bench-score-log bench-durability bench-replicas bench-backfill bench-container bench-headline bench-replay bench-review readme promote bench-explain bench-gpu bench-peers quality audit clean-models

# One pip command resolves serving + training + dev pins together (see pyproject.toml).
# EXTRAS= installs the serving side only (image builds that import a trained model); `make serve`
# installs train only (the quickstart needs no test or docs tools), `make test` adds dev. Each
# set of extras leaves a stamp; a newer stamp with those extras (or more) skips the install.
EXTRAS ?= train,dev,backfill
comma := ,
install:
	@want="$(subst $(comma), ,$(EXTRAS))"; \
	for stamp in $(VENV)/.installed-*; do \
	  [ -f "$$stamp" ] && [ "$$stamp" -nt pyproject.toml ] || continue; \
	  have=" $$(echo "$${stamp##*/.installed-}" | tr - ' ') "; ok=1; \
	  for extra in $$want; do case "$$have" in *" $$extra "*) ;; *) ok=0;; esac; done; \
	  [ $$ok = 1 ] && exit 0; \
	done; \
	$(PYTHON) -m venv $(VENV) && \
	$(BIN)/pip install --quiet --upgrade pip && \
	$(BIN)/pip install --quiet -e ".$(if $(EXTRAS),[$(EXTRAS)])" && \
	touch "$(VENV)/.installed-$(or $(subst $(comma),-,$(EXTRAS)),serving)"

# Train each model kind that the BentoML store (BENTOML_HOME) lacks, on the embedded synthetic data.
models: install
	@missing=""; for kind in $(MODELS); do \
	  $(BIN)/bentoml models get fraud-$$kind:latest >/dev/null 2>&1 || missing="$$missing,$$kind"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Training $${missing#,} into $(BENTOML_HOME)"; \
	  $(BIN)/python -m training -m model=$${missing#,}; \
	else echo "Models found in $(BENTOML_HOME): $(MODELS)"; fi

# Train only the model that is served (FRAUD_MODEL, default mlp); the other on demand
# (`make models`, or FRAUD_MODEL=distilbert make serve).
serve: MODELS = $(or $(FRAUD_MODEL),mlp)
serve: EXTRAS = train
serve: models
	$(BIN)/bentoml serve service:FraudDetector --port $(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/pytest

# The documentation site (site/). Its Configuration and OpenAPI pages are generated from the
# code (docs/gen_pages.py), which imports the service: the served model must be in the store.
docs: MODELS = mlp
docs: models
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Each bento trains (if missing) only the model it packs.
bento: MODELS = mlp $(filter mlp distilbert,$(FRAUD_CHALLENGER))
bento: models
	FRAUD_MODEL=mlp $(BIN)/bentoml build

# The GPU bento packs the DistilBERT model in the store (train distilbert_base on a GPU first).
bento-gpu: MODELS = distilbert
bento-gpu: models
	FRAUD_MODEL=distilbert $(BIN)/bentoml build -f bentofile-gpu.yaml

# --- GCP (needs gcloud and Docker) ---------------------------------------------------------
GCP_PROJECT ?= $(shell gcloud config get-value project 2>/dev/null)
GCP_REGION ?= us-central1
AR_REPO ?= fraud
REGISTRY := $(GCP_REGION)-docker.pkg.dev/$(GCP_PROJECT)/$(AR_REPO)
IMAGE ?= $(REGISTRY)/fraud-detector:latest
IMAGE_GPU ?= $(REGISTRY)/fraud-detector-gpu:latest
FILL_PLACEHOLDERS := sed -e 's|REGION-docker.pkg.dev/PROJECT_ID/fraud|$(REGISTRY)|'
# The Spark backfill (docs/backfill.md) and its Dataproc Serverless image: the models it runs
# (a kind or a store tag; make backfill and make backfill-image), baked into BACKFILL_IMAGE; runtime 3.0 is Spark 4.0 (Java 21).
MODEL ?= mlp
CHALLENGER ?=
DATE_COLUMN ?=
INPUT ?=
OUTPUT ?=
BACKFILL_IMAGE ?= fraud-backfill:local
BACKFILL_REMOTE_IMAGE ?= $(REGISTRY)/fraud-backfill
DATAPROC_VERSION ?= 3.0
DATAPROC_DEPS_BUCKET ?= gs://$(GCP_PROJECT)-dataproc-deps
# The batch's service account (Dataproc Worker, reads the image, the input and writes the
# output); optional: --subnet (else the region's `default`) and Spark properties (a,b,...).
DATAPROC_SERVICE_ACCOUNT ?= fraud-backfill@$(GCP_PROJECT).iam.gserviceaccount.com
DATAPROC_SUBNET ?=
DATAPROC_PROPERTIES ?=

# --- Container images ------------------------------------------------------------------------
# `bentoml containerize` with the docker backend and BuildKit off: BentoML's BuildKit Dockerfile
# starts with a `# syntax=` frontend pulled from Docker Hub, the classic builder needs nothing
# from it. BASE_IMAGE (a build-arg of deploy/docker/Dockerfile.template) replaces BentoML's
# python:3.11-slim, e.g. BASE_IMAGE=$(LOCAL_BASE_IMAGE) after `make base-image` where Docker Hub
# is out of reach.
CONTAINER_TAG ?= fraud-detector:local
CONTAINER_GPU_TAG ?= fraud-detector-gpu:local
LOCAL_BASE_IMAGE ?= fraud-python:3.11-bookworm
BASE_IMAGE ?=
# EXPLANATIONS=0: an image without shap, numba and llvmlite (about 200 MB less); /explain is 404.
EXPLANATIONS ?= 1
EXPLANATION_PACKAGES := shap|numba|llvmlite|slicer
# It runs from the temp folder: BentoML 1.4.40 refuses a bento's dockerfile_template unless
# the build context (a temp copy of the bento) lies under the working directory.
CONTAINERIZE = cd "$${TMPDIR:-/tmp}" && DOCKER_BUILDKIT=0 $(abspath $(BIN))/bentoml containerize \
	--backend docker $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	$(if $(filter 0,$(EXPLANATIONS)),--build-arg "LEAVE_OUT=$(EXPLANATION_PACKAGES)")

# Python 3.11 from Debian bookworm packages (mmdebstrap + docker import; rootfs cached in
# .cache/base-image). BASE_IMAGE_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt (opt-in) adds this
# machine's CA bundle, for networks that intercept TLS: keep such an image local.
base-image:
	deploy/docker/build-base-image.sh $(LOCAL_BASE_IMAGE)

container: bento
	$(CONTAINERIZE) fraud_detector:latest -t $(CONTAINER_TAG)

container-gpu: bento-gpu
	$(CONTAINERIZE) fraud_detector_gpu:latest -t $(CONTAINER_GPU_TAG)

# Builds and runs the images as Cloud Run and GKE run them (tests/test_container.py).
container-test: install
	$(BIN)/pytest -m container tests/test_container.py tests/test_backfill_image.py

deploy-cloudrun: container
	docker tag $(CONTAINER_TAG) $(IMAGE)
	docker push $(IMAGE)
	$(FILL_PLACEHOLDERS) deploy/cloudrun/service-cpu.yaml > /tmp/fraud-cloudrun.yaml
	gcloud run services replace /tmp/fraud-cloudrun.yaml --region $(GCP_REGION)

deploy-cloudrun-gpu: container-gpu
	docker tag $(CONTAINER_GPU_TAG) $(IMAGE_GPU)
	docker push $(IMAGE_GPU)
	$(FILL_PLACEHOLDERS) deploy/cloudrun/service-gpu.yaml > /tmp/fraud-cloudrun-gpu.yaml
	gcloud run services replace /tmp/fraud-cloudrun-gpu.yaml --region $(GCP_REGION)

deploy-gke: container
	docker tag $(CONTAINER_TAG) $(IMAGE)
	docker push $(IMAGE)
	kubectl kustomize deploy/gke/overlays/cpu | $(FILL_PLACEHOLDERS) | kubectl apply -f -

deploy-gke-gpu: container-gpu
	docker tag $(CONTAINER_GPU_TAG) $(IMAGE_GPU)
	docker push $(IMAGE_GPU)
	kubectl kustomize deploy/gke/overlays/gpu | $(FILL_PLACEHOLDERS) | kubectl apply -f -

# The backfill's image for Dataproc Serverless (deploy/dataproc/Dockerfile) on the Debian base:
# the project without pyspark (Dataproc mounts Spark), and a model store holding MODEL and
# CHALLENGER, exported from BENTOML_HOME after their checksums are verified. The virtualenv
# is pinned to this .venv's versions (constraints.txt). Checked by tests/test_backfill_image.py.
.PHONY: backfill-image backfill-dataproc
# The exact store tag of a kind or tag, its files checked (the driver checks them again).
BACKFILL_STORED_TAG := import sys; from fraud_detection.catalog import resolve_model; \
	from fraud_detection.stored_models import stored_model; \
	print(stored_model(resolve_model(sys.argv[1])[1]).stored.tag)
backfill-image: install
	@set -euo pipefail; base="$(or $(BASE_IMAGE),$(LOCAL_BASE_IMAGE))"; \
	if [ "$$base" = "$(LOCAL_BASE_IMAGE)" ] && ! docker image inspect "$$base" > /dev/null 2>&1; \
	then $(MAKE) --no-print-directory base-image; fi; \
	context="$$(mktemp -d)"; trap 'rm -rf "$$context"' EXIT; mkdir "$$context/models"; \
	for model in $(MODEL) $(CHALLENGER); do \
	  tag=$$($(BIN)/python -c '$(BACKFILL_STORED_TAG)' "$$model"); \
	  echo "backfill-image: $$model -> $$tag"; \
	  $(BIN)/bentoml models export "$$tag" "$$context/models/$${tag/:/-}.bentomodel" > /dev/null; \
	done; \
	tar -c --exclude=__pycache__ pyproject.toml README.md fraud_detection backfill \
	  | tar -x -C "$$context"; \
	$(BIN)/pip freeze --exclude-editable | grep -E '^[A-Za-z0-9_.-]+==' > "$$context/constraints.txt"; \
	DOCKER_BUILDKIT=0 docker build --quiet -f deploy/dataproc/Dockerfile \
	  --build-arg BASE_IMAGE="$$base" -t $(BACKFILL_IMAGE) "$$context" > /dev/null; \
	docker image inspect $(BACKFILL_IMAGE) --format "$(BACKFILL_IMAGE): {{.Size}} bytes"

# Pushes the image (tagged with its own id, and latest) to Artifact Registry and submits the
# backfill as a Dataproc Serverless batch; gcloud uploads backfill/dataproc_main.py to the deps
# bucket. Run `make backfill-image` first, from a base built without BASE_IMAGE_CA_BUNDLE.
#   make backfill-dataproc INPUT=gs://bucket/transactions/*.parquet OUTPUT=gs://bucket/scores
backfill-dataproc:
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make backfill-dataproc" \
	  "INPUT=gs://... OUTPUT=gs://... [MODEL=mlp] [CHALLENGER=distilbert] [DATE_COLUMN=...]"; exit 2; }
	@set -euo pipefail; \
	config=$$(docker image inspect $(BACKFILL_IMAGE) --format '{{range .Config.Env}}{{println .}}{{end}}') \
	  || { echo "No image $(BACKFILL_IMAGE): run make backfill-image first"; exit 2; }; \
	if grep -q "^PIP_CERT=" <<< "$$config"; then echo "$(BACKFILL_IMAGE) carries this machine's" \
	  "CA bundle (BASE_IMAGE_CA_BUNDLE): rebuild the base without it before pushing"; exit 2; fi; \
	id=$$(docker image inspect $(BACKFILL_IMAGE) --format '{{.Id}}'); \
	image="$(BACKFILL_REMOTE_IMAGE):$${id:7:12}"; \
	set -x; \
	docker tag $(BACKFILL_IMAGE) "$$image"; \
	docker tag $(BACKFILL_IMAGE) $(BACKFILL_REMOTE_IMAGE):latest; \
	docker push "$$image"; \
	docker push $(BACKFILL_REMOTE_IMAGE):latest; \
	gcloud dataproc batches submit pyspark backfill/dataproc_main.py \
	  --region=$(GCP_REGION) --version=$(DATAPROC_VERSION) --container-image="$$image" \
	  --deps-bucket=$(DATAPROC_DEPS_BUCKET) --labels=app=fraud-backfill \
	  --service-account=$(DATAPROC_SERVICE_ACCOUNT) $(if $(DATAPROC_SUBNET),--subnet=$(DATAPROC_SUBNET)) \
	  $(if $(DATAPROC_PROPERTIES),--properties=$(DATAPROC_PROPERTIES)) \
	  -- --input "$(INPUT)" --output "$(OUTPUT)" --model $(MODEL) \
	  $(if $(CHALLENGER),--challenger $(CHALLENGER)) $(if $(DATE_COLUMN),--date-column $(DATE_COLUMN))

training-image:
	docker build -f deploy/vertex/Dockerfile -t $(REGISTRY)/fraud-training:latest .
	docker push $(REGISTRY)/fraud-training:latest

vertex-train:
	$(FILL_PLACEHOLDERS) deploy/vertex/train-distilbert-base.yaml > /tmp/fraud-vertex.yaml
	gcloud ai custom-jobs create --region $(GCP_REGION) --display-name fraud-distilbert-base \
	  --config /tmp/fraud-vertex.yaml

# The real data through DVC when a remote is configured (DVC_REMOTE=gs://bucket/path or
# .dvc/config), else the synthetic default written as data/creditcard.csv.
DVC_REMOTE ?=
data: install
	@if [ -n "$(DVC_REMOTE)" ]; then \
	  $(BIN)/pip install --quiet -e ".[data]" && \
	  $(BIN)/dvc remote modify --local gcs url $(DVC_REMOTE) && $(BIN)/dvc pull; \
	elif ! grep -q YOUR_BUCKET .dvc/config; then \
	  $(BIN)/pip install --quiet -e ".[data]" && $(BIN)/dvc pull; \
	else \
	  echo "No DVC remote configured: writing the synthetic default"; \
	  $(BIN)/python -m training.data.write_synthetic data/creditcard.csv; \
	fi

# Serving benchmark (Locust; every variant in one run, ~15 min on 2 cores), then bench-drift
# (~30 min). Results land in benchmarks/results/serving-vm.{json,md,png} and
# drift-serving-vm.{json,md}. Pass options with BENCH_ARGS="..." and DRIFT_ARGS="...".
bench: models
	$(BIN)/python -m benchmarks.serving $(BENCH_ARGS)
	$(MAKE) bench-drift

# Drift monitoring as served (~30 min): detection delay, false alarms, the hooks' cost
# (benchmarks/results/drift-serving-vm.{json,md}) and a 10-minute soak (drift-serving-soak-vm).
#   make bench-drift DATA=../shared/data/creditcard_real_sample.csv.gz
bench-drift: models
	$(BIN)/python -m benchmarks.drift_serving $(if $(DATA),--data $(DATA)) --soak-minutes 10 $(DRIFT_ARGS)

# POST /explain as served: ms per explained row for each model, additivity, top reasons on the
# frauds of DATA (optional), and /predict with the console idle against BASELINE (a commit).
#   make bench-explain DATA=../shared/data/creditcard_real_sample.csv.gz BASELINE=ccea901
bench-explain: models
	$(BIN)/python -m benchmarks.explain $(if $(DATA),--data $(DATA)) \
	  $(if $(BASELINE),--baseline-commit $(BASELINE)) $(EXPLAIN_ARGS)

# The default cross-fitted MLP ensemble against one MLP, served side by side (trains both into
# temporary stores; ~10 min). Results: benchmarks/results/ensemble-serving-vm.{json,md}.
bench-ensemble: install
	$(BIN)/python -m benchmarks.ensemble_serving $(if $(DATA),--data $(DATA))

# The score log (SQLite, PostgreSQL) and the shadow challenger against off, side by side, and a
# control (two identical servers: the harness's floor) (~40 min). One results file per stage:
# benchmarks/results/score-log-{sqlite,postgresql,shadow,control}-vm.{json,md}.
bench-score-log: models
	$(BIN)/python -m benchmarks.score_log_cost $(if $(DATA),--data $(DATA))

# What a crash costs the score log (workers SIGKILLed under load, per durability mode) and
# what the durable modes cost (SQLite journal / async with a control; PostgreSQL commit / async
# at 1 and 32 connections) (~35 min). Results: benchmarks/results/durability-vm.{json,md}.
bench-durability: models
	$(BIN)/python -m benchmarks.durability $(if $(DATA),--data $(DATA)) $(DURABILITY_ARGS)

# Three replicas (separate bentoml serve processes) behind HAProxy with one PostgreSQL: one
# SIGKILLed, then one SIGTERMed, under load (~3 min). Results: benchmarks/results/replicas-vm.*
bench-replicas: models
	$(BIN)/python -m benchmarks.replicas $(if $(DATA),--data $(DATA)) $(REPLICAS_ARGS)

# The Spark backfill against its targets (~35 min on 2 cores): rows/s per core against the ONNX
# graph alone, 1 -> 2 cores (local and a standalone cluster), executor memory at 1M and 10M
# rows, and HTTP with the Python client, each also with the DistilBERT challenger (on 1M rows).
# Input: 10M synthetic rows, written once as Parquet into .cache/bench-backfill (~2.9 GB).
# Results: benchmarks/results/backfill-vm.{json,md,png}. Options: BACKFILL_BENCH_ARGS="--rows
# 1000000 --repeats 1 --stages limit,spark,memory,http,challenger --name test".
bench-backfill: MODELS = mlp distilbert
bench-backfill: models
	$(BIN)/python -m benchmarks.backfill $(BACKFILL_BENCH_ARGS)

# The bento's image as Cloud Run runs it (after `make container`): size, start to ready, RSS,
# throughput against the host. Results: benchmarks/results/container-vm.{json,md}.
bench-container: install
	$(BIN)/python -m benchmarks.container $(if $(DATA),--data $(DATA)) $(CONTAINER_BENCH_ARGS)

# The review queue as served (~20 min): keeping flagged rows' features against the queue off
# on real rows at the real fraud rate, with a control; GET /review and /review/{id} latency with
# 1,000,000 rows in the log (100,000 kept) on SQLite and PostgreSQL.
# Results: benchmarks/results/review-{cost,latency}-vm.{json,md}.
bench-review: models
	$(BIN)/python -m benchmarks.review_queue $(if $(DATA),--data $(DATA)) $(REVIEW_BENCH_ARGS)

# The champion-challenger loop on real rows (~3 min): replay, labels back, /performance against
# the same metrics offline. Results: benchmarks/results/replay-vm.{json,md}.
bench-replay: MODELS = mlp distilbert
bench-replay: models
	$(BIN)/python -m benchmarks.replay_feedback $(if $(DATA),--data $(DATA))

# Every benchmark behind the README's headline table, on this release, then the table (about
# 50 min on 2 cores). Models: the default MLP and the DistilBERT challenger trained on DATA
# into HEADLINE_HOME when missing (DistilBERT takes ~20 min more the first time).
#   make bench-headline DATA=../shared/data/creditcard_real_sample.csv.gz
HEADLINE_HOME ?= $(CURDIR)/.cache/headline-bentos
bench-headline: install
	@test -n "$(DATA)" || { echo "usage: make bench-headline DATA=path/to/creditcard.csv[.gz]"; exit 2; }
	export BENTOML_HOME=$(HEADLINE_HOME) WANDB_MODE=disabled; set -e; \
	for kind in mlp distilbert; do \
	  $(BIN)/bentoml models get fraud-$$kind:latest >/dev/null 2>&1 || \
	    $(BIN)/python -m training model=$$kind data=csv data.path=$(abspath $(DATA)); \
	done; \
	$(BIN)/python -m benchmarks.quality --data $(DATA); \
	$(BIN)/python -m benchmarks.ensemble_serving --data $(DATA); \
	$(BIN)/python -m benchmarks.drift_serving --data $(DATA) --rounds 3 --passes 6; \
	$(BIN)/python -m benchmarks.score_log_cost --data $(DATA) --stages sqlite,control; \
	$(BIN)/python -m benchmarks.replay_feedback --data $(DATA); \
	$(BIN)/python -m benchmarks.explain --data $(DATA) --models mlp
	$(MAKE) readme

# The README's headline table, regenerated from benchmarks/results (tests/test_docs.py checks it).
readme: install
	$(BIN)/python -m benchmarks.headline

# Promote the challenger: evidence first (same labelled transactions), then the env swap.
# TARGET=cloudrun|gke|env; APPLY=1 runs the command instead of printing it;
# EVIDENCE=<backfill summary.json or its folder> judges on a backfill instead of the score log.
TARGET ?= env
promote: install
	$(BIN)/python -m fraud_detection.performance.promotion --target $(TARGET) $(if $(APPLY),--apply) $(if $(EVIDENCE),--evidence $(EVIDENCE))

# Re-score stored transactions on Spark with the store's models (docs/backfill.md):
#   make backfill INPUT=history.parquet OUTPUT=out/backfill [MODEL=mlp] [CHALLENGER=distilbert]
#        [MASTER=spark://host:7077] [BACKFILL_ARGS="--date-column day --conf k=v"]
# INPUT is Parquet or CSV (a path, folder or glob); a model named by kind is trained if missing.
# Spark 4 needs Java 17 (Debian: openjdk-17-jre-headless).
backfill: MODELS = $(filter mlp distilbert,$(MODEL) $(CHALLENGER))
ifneq ($(filter backfill,$(MAKECMDGOALS)),)
  $(if $(and $(INPUT),$(OUTPUT)),,$(error make backfill needs INPUT=<parquet or csv> OUTPUT=<folder>))
endif
backfill: models
	$(BIN)/python -m backfill --input "$(INPUT)" --output "$(OUTPUT)" --model $(MODEL) \
	  $(if $(CHALLENGER),--challenger $(CHALLENGER)) $(if $(MASTER),--master "$(MASTER)") $(BACKFILL_ARGS)

# Our service next to KServe, MLServer, LitServe, Ray Serve and TorchServe serving the same ONNX
# model behind the same JSON API (wrk + Locust, ~20 min; each peer's venv is built into
# .venv-peers/ on first use). Results: benchmarks/results/peers-vm.{json,md,png}.
# Pass options with PEERS_ARGS="--servers kserve,mlserver --connections 32 --duration 5".
bench-peers: models
	$(BIN)/python -m benchmarks.peers $(PEERS_ARGS)

# Cross-validated quality of the served models against baselines on a creditcard CSV:
#   make quality DATA=../shared/data/creditcard_real_sample.csv.gz
quality: install
	@test -n "$(DATA)" || { echo "usage: make quality DATA=path/to/creditcard.csv[.gz]"; exit 2; }
	WANDB_MODE=disabled $(BIN)/python -m benchmarks.quality --data $(DATA) $(QUALITY_ARGS)

# On a CUDA machine with onnxruntime-gpu: DistilBERT-base (float16 graph) trained briefly on the
# GPU, then raw and served throughput for 1-row and 256-row requests.
GPU_ENV := FRAUD_MODEL=distilbert FRAUD_WORKERS=4 FRAUD_MAX_BATCH_SIZE=2048 FRAUD_ORT_THREADS=2
bench-gpu: install
	$(BIN)/python -m training model=distilbert_base data.n_rows=20000 data.fraud_rate=0.01 \
	  model.max_epochs=1 trainer.device=cuda export.fp16=true export.reference_rows=1000 \
	  ensemble.trees.enabled=false
	$(BIN)/python -m benchmarks.torch_raw --dtype bf16 --out benchmarks/results/raw-torch-bf16-gpu.json
	$(GPU_ENV) $(BIN)/python -m benchmarks.serving --variants distilbert-batching --mix 1 \
	  --users 1,16,64 --duration 10 --warmup 3 --raw-batches 1,2,4,8,16,32,64,128,256,512,1024,2048 \
	  --raw-seconds 0.7 --name serving-gpu-rows1
	$(GPU_ENV) $(BIN)/python -m benchmarks.serving --variants distilbert-batching --mix 256 \
	  --users 4,16,64 --duration 10 --warmup 3 --raw-batches 256 --raw-seconds 0.5 \
	  --name serving-gpu-rows256

# Known vulnerabilities in the CPU bento's locked serving requirements (needs PyPI's JSON API).
audit: bento
	$(BIN)/pip install --quiet "pip-audit>=2.7"
	$(BIN)/pip-audit --disable-pip --no-deps --progress-spinner off \
	  -r "$$($(BIN)/bentoml get fraud_detector:latest -o path)/env/python/requirements.txt"

clean-models:
	rm -rf $(BENTOML_HOME)/models
