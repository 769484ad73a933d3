"""Plumbing every stage uses.

* :mod:`~course_lib.utils.atomic`: write files to a temporary name, then rename (nothing half-replaced),
* :mod:`~course_lib.utils.outputs`: an output checked before work (not a folder, not an input, writable),
* :mod:`~course_lib.utils.download`: one file over HTTP(S) with progress, checksum and resume; the file hasher,
* :mod:`~course_lib.utils.timing`: clocks that wait for the GPU, latency, time per stage, peak memory, the machine's load,
* :mod:`~course_lib.utils.provenance`: find numbers typed into the book's prose that no code produced.
"""
