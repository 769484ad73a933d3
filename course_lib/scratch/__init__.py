"""Week 1's building blocks written out from scratch, each checked against torchvision in the tests.

* :mod:`~course_lib.scratch.boxes`: IoU, greedy NMS, the box delta encoding (``torchvision.ops``),
* :mod:`~course_lib.scratch.anchors`: anchors per FPN level (``AnchorGenerator``),
* :mod:`~course_lib.scratch.assignment`: who is responsible for an object in grid, point and anchor detectors,
* :mod:`~course_lib.scratch.roi`: RoI Pool and RoI Align (``torchvision.ops.roi_align``), and a separable
  RoI Align the ToyCity model trains with.

The model itself is built from torchvision's parts in :mod:`course_lib.modeling`.
"""
