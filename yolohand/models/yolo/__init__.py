"""The ultralytics YOLO-seg family: the only subpackage that imports ultralytics."""
