"""Model families. Each lives in its own subpackage (``yolo`` is the only code that imports
ultralytics); they all write the same run layout and the same prediction outputs."""

from yolohand.offline import stay_offline

stay_offline()  # before any family imports ultralytics, albumentations or segmentation_models_pytorch
