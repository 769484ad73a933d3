"""Companion library of the course "Urban Scene Instance Segmentation - a deep dive into Mask R-CNN".

One short module per concept; the notebooks in ``book/`` call into these modules.
Modules are imported lazily (``import course_lib.toycity``) so that importing the package is cheap.
"""

__version__ = "0.1.0"
