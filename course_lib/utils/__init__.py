"""Plumbing every stage uses.

* :mod:`~course_lib.utils.atomic`: write files to a temporary name, then rename (nothing half-replaced),
* :mod:`~course_lib.utils.outputs`: an output checked before work (not a folder, not an input, writable),
* :mod:`~course_lib.utils.download`: one file over HTTP(S) with progress, checksum and resume; the file hasher,
* :mod:`~course_lib.utils.timing`: the clock that waits for the GPU, warm-up and interleaved repeats, the one summary
  (median, p90, mean, n), peak memory, the machine record every results file carries (load included),
* :mod:`~course_lib.utils.signal_stack`: a thread's alternate signal stack kept across OpenVINO's compile, which
  replaces it with one freed later,
* :mod:`~course_lib.utils.provenance`: find numbers typed into the book's prose that no code produced.
"""
