# The course's two commands (see README): `make book` builds the site, `make test` runs every test.
# Both create the virtual environment .venv on first use from the pinned requirements-dev.txt.
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# FAST=1 builds the site with the small sizes the tests use (COURSE_FAST=1).
FAST   ?= 0

.PHONY: book test browser vtest clean

$(STAMP): requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --no-cache-dir -r requirements-dev.txt
	# TrackEval's metadata asks for opencv-python (the GUI build); the headless OpenCV above serves it.
	$(PYTHON) -m pip install --no-cache-dir --no-deps trackeval==1.3.0
	# boxmot's trackers need only lapx and rich (requirements-dev.txt); its other dependencies serve
	# its detectors and re-id models, and include the GUI opencv-python.
	$(PYTHON) -m pip install --no-cache-dir --no-deps boxmot==25.0.0
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

test: $(STAMP) browser vtest
	COURSE_FAST=1 OMP_NUM_THREADS=1 $(PYTHON) -m pytest -n 2 --dist loadscope

clean:
	rm -rf _build
