"""The refine family: a second stage that re-segments each detected bone at full resolution.

``yolohand train --model refine:ARCH:ENCODER --imgsz R`` (:mod:`.train`) and
``yolohand predict -w yolo.pt --refiner refine.pt`` (:mod:`.predict`). The network is a
segmentation_models_pytorch model with two input channels (the crop of the X-ray and the first
stage's soft mask of the bone) and one output channel per class; crop geometry lives in
:mod:`.geometry`, training crops in :mod:`.data`, the per-bone gate (classes that keep the
first stage's mask) in :mod:`.gate`. Engine, losses, config and run plan are the semantic families' shared ones
(:mod:`yolohand.models.shared`).
"""
