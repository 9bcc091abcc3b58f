"""Model families. Each lives in its own subpackage (``yolo`` is the only code that imports
ultralytics); they all write the same run layout and the same prediction outputs."""
