"""Figures: what each stage of Mask R-CNN holds, and instances over an image.

* :mod:`~course_lib.viz.overlay`: the one instance drawer (torchvision's ``draw_segmentation_masks``),
* :mod:`~course_lib.viz.stages`: Week 1's figures of feature maps, anchors, proposals, heads,
* :mod:`~course_lib.viz.widgets`: Week 1's explorables (views drawn in advance, a control switches them).

Plots of the committed results files are :mod:`course_lib.report.figures`.
"""
