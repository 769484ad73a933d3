# The course's two commands (see README): `make book` builds the site, `make test` runs every test.
# Both create the virtual environment .venv on first use from the pinned requirements-dev.txt.
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# FAST=1 builds the site with the small sizes the tests use (COURSE_FAST=1).
FAST   ?= 0
# TrackEval's metadata asks for numpy>=2.3.2 and opencv-python (the GUI build): installed without its
# dependencies here, in the floor environment and by the tracking chapters' first cell on Colab.
TRACKEVAL := trackeval==1.3.0
# boxmot's trackers need only lapx and rich (requirements-dev.txt); its other dependencies serve its
# detectors and re-id models, and include the GUI opencv-python: installed without them, as the tracking
# chapters' first cell installs it with lapx on Colab (which ships rich).
BOXMOT    := boxmot==25.0.0
LAPX      := $(shell grep -oE '^lapx==[^ ]+' requirements-dev.txt)

# Two workers, a notebook's cells on one (loadscope). A worker that crashes fails the run at once, naming
# the test: replacing it would run that test again, and loadscope can then hang (pytest-xdist #1378).
XDIST     := -n 2 --dist loadscope --max-worker-restart 0

.PHONY: book test test-floor browser vtest clean

$(STAMP): requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --no-cache-dir -r requirements-dev.txt
	$(PYTHON) -m pip install --no-cache-dir --no-deps $(TRACKEVAL)
	$(PYTHON) -m pip install --no-cache-dir --no-deps $(BOXMOT)
	$(PYTHON) -m pip install --no-cache-dir --no-deps -e .
	touch $(STAMP)

book: $(STAMP)
	COURSE_FAST=$(FAST) $(VENV)/bin/jupyter-book build -W -n --keep-going .
	$(PYTHON) book/_ext/offline_slides.py _build/jupyter_execute/book/week4/05_slides.ipynb _build/html/slides
	@echo "Site: $(CURDIR)/_build/html/index.html"

# tests/test_site_browser.py opens the built site in Debian's Chromium: installed here where that is
# possible (root with apt-get, as on CI and Colab); elsewhere install it yourself or those tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "Chromium is not installed (needs root and apt-get): tests/test_site_browser.py will skip"

# tests/test_real_video.py runs the video command and the tracker on real pedestrians: OpenCV's sample
# vtest.avi from Debian's opencv-doc, fetched without root (apt-get download, dpkg-deb) into .cache/;
# as root, a machine whose package lists are empty gets them first (apt-get update).
# Without apt-get those tests skip; the video is never committed.
VTEST_DIR := .cache/opencv-doc
VTEST     := $(VTEST_DIR)/usr/share/doc/opencv-doc/examples/data/vtest.avi
vtest:
	@[ -f $(VTEST) ] || { command -v apt-get >/dev/null 2>&1 && mkdir -p $(VTEST_DIR) && cd $(VTEST_DIR) && \
	  { apt-get download -qq opencv-doc >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 && \
	    apt-get download -qq opencv-doc >/dev/null 2>&1; }; } && dpkg-deb --fsys-tarfile opencv-doc_*.deb | \
	  tar -x ./usr/share/doc/opencv-doc/examples/data/vtest.avi && rm -f opencv-doc_*.deb; } || \
	  echo "vtest.avi is not available (needs apt-get and Debian's opencv-doc): tests/test_real_video.py will skip"

# The oldest supported set (requirements-floor.txt, Colab's torch 2.8 era), kept in .cache/ under a name
# keyed by its pins: a second run reuses it, new pins build a new one. The course goes in as a chapter's
# first cell installs it on Colab: `pip install .`, non-editable, pip keeping the preinstalled set.
# PYTHONSAFEPATH keeps the checkout off sys.path (tests, kernels, subprocesses), so the installed copy runs.
FLOOR_TOOLS    := $(shell grep -oE '^(pytest|pytest-xdist|nbval|ipykernel|pyyaml|hypothesis|filterpy)==[^ ]+' requirements-dev.txt)
FLOOR_VENV     := .cache/floor-$(shell { cat requirements-floor.txt; echo $(FLOOR_TOOLS); } | sha256sum | cut -c1-12)
FLOOR_PYTHON   := $(FLOOR_VENV)/bin/python
FLOOR_CHAPTERS := book/week2/01_toycity.ipynb book/week2/02_data_and_augmentation.ipynb \
                  book/week2/03_training.ipynb book/week3/03_tracking.ipynb
# Tests of the development set's own tools (the site build and browser, slides, notebook pairing,
# ONNX/OpenVINO, boxmot's trackers, which need rich), which the floor environment does not install; and
# the Colab-mode runs of the other chapters.
FLOOR_SKIP     := test_book.py test_site_browser.py test_slides.py test_notebooks.py test_digit_provenance.py \
                  test_deploy.py test_trackers.py test_colab_chapters.py

$(FLOOR_VENV)/.installed:
	rm -rf .cache/floor-*
	python3 -m venv $(FLOOR_VENV)
	$(FLOOR_PYTHON) -m pip install --no-cache-dir -r requirements-floor.txt $(FLOOR_TOOLS)
	touch $@

# The course is built from a copy, as pip builds it from a fresh clone on Colab: setuptools' build/
# folder would otherwise keep modules deleted since the last run.
test-floor: $(FLOOR_VENV)/.installed vtest
	rm -rf $(FLOOR_VENV)/src && mkdir $(FLOOR_VENV)/src && cp -r pyproject.toml README.md course_lib $(FLOOR_VENV)/src
	$(FLOOR_PYTHON) -m pip install -q --no-cache-dir $(FLOOR_VENV)/src
	$(FLOOR_PYTHON) -m pip install -q --no-cache-dir --no-deps $(TRACKEVAL) $(BOXMOT) $(LAPX)
	PYTHONSAFEPATH=1 COURSE_SAMPLE_VIDEO=$(CURDIR)/$(VTEST) COURSE_FAST=1 OMP_NUM_THREADS=1 \
	  $(FLOOR_PYTHON) -m pytest $(XDIST) tests $(FLOOR_CHAPTERS) $(addprefix --ignore=tests/,$(FLOOR_SKIP))

test: $(STAMP) browser vtest
	COURSE_FAST=1 OMP_NUM_THREADS=1 $(PYTHON) -m pytest $(XDIST)
	$(MAKE) test-floor

clean:
	rm -rf _build
