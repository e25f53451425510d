# One command each, on a fresh machine with Python 3.11:
#   make repro   set up .venv and run the whole pipeline (dvc repro) on the real data
#   make test    set up .venv and run the linter and the test suite
PYTHON ?= python3.11
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

MEDIAPIPE_VENV := .venv-mediapipe

.PHONY: setup preflight repro test lock mediapipe system-packages pull push docs web web-deps

setup: $(VENV)/.installed

# requirements.lock pins every package (installed --no-deps: see pyproject.toml for why).
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --no-deps -r requirements.lock
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

# Can every stage start on this machine? A system library an extension module lacks, or an
# import a stage cannot make, is one line here, in seconds, not after the stages before it ran.
preflight: setup
	python -m clothing.commands.preflight

repro: preflight
	dvc repro

# MediaPipe, for the interop test of the TFLite metadata quantize writes, in its own
# environment: mediapipe 0.10.21 pins numpy < 2 and protobuf < 5, which TensorFlow 2.21
# cannot share. tools/mediapipe.lock pins it and what it needs.
mediapipe: $(MEDIAPIPE_VENV)/.installed

$(MEDIAPIPE_VENV)/.installed: tools/mediapipe.lock $(VENV)/.installed
	test -x $(MEDIAPIPE_VENV)/bin/python || $(PYTHON) -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/python -m pip install --quiet --no-deps -r tools/mediapipe.lock
	python -m clothing.commands.preflight --libraries-only --site-packages $(MEDIAPIPE_VENV)/lib/python3.11/site-packages
	touch $@

# The in-browser page (web/dist/, docs/predict-and-serve.md): MediaPipe's web build from
# web/package-lock.json, then the page, its WebAssembly files and the int8 model in one folder.
web: setup web-deps
	python -m clothing.commands.web

web-deps: web/node_modules/.installed

web/node_modules/.installed: web/package-lock.json
	@command -v npm >/dev/null || { echo "error: the in-browser page is built with Node.js and npm: apt-get install nodejs npm" >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Tests use Debian's Chromium (the page's test, headless) and OpenSSH server (the DVC
# remote's test, on 127.0.0.1); install them (as root) where they are missing.
SYSTEM_PACKAGES := chromium chromium-driver openssh-server
system-packages:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! test -x /usr/sbin/sshd; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES); \
	  else \
	    echo "error: the tests need Debian's $(SYSTEM_PACKAGES): sudo apt-get install $(SYSTEM_PACKAGES)" >&2; \
	    exit 1; \
	  fi; \
	fi

# The committed run's data and models from the team's DVC remote (docs/team.md, "Sharing
# results"), and yours to it.
pull: setup
	python -m clothing.commands.remote pull

push: setup
	python -m clothing.commands.remote push

test: setup mediapipe system-packages web-deps docs
	ruff check .
	ruff format --check .
	pytest

# The docs site (mkdocs.yml, docs/), built strictly: a broken link or a page missing from it fails.
# `mkdocs serve` shows it locally. docs/params.md comes from `python -m clothing.commands.params_doc`.
docs: setup
	mkdocs build --strict --quiet --site-dir "$$(mktemp -d)"

# Refresh requirements.lock after changing the ranges in pyproject.toml.
lock: setup
	$(VENV)/bin/python -m pip install --quiet -e ".[dev]" "tensorflow-cpu>=2.21,<2.22"
	$(VENV)/bin/python -m pip install --quiet --no-deps "tf-keras>=2.21,<2.22" "keras-flops==0.1.2" \
		"tensorflow-model-optimization>=0.8,<0.9" "dm-tree>=0.1.8" "tflite-support==0.4.4"
	$(VENV)/bin/python -m pip freeze --exclude-editable | grep -v '^tensorflow==' > requirements.lock
