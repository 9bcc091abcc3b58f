"""yolohand: an Ultralytics YOLO toolkit for 29-bone hand X-ray segmentation.

The numeric core (``rle``, ``submission``, ``metrics``, ``ensemble``, ``probmaps``) imports
neither torch nor ultralytics; ``train`` and ``predict`` do, lazily.
"""

__version__ = "0.1.0"
