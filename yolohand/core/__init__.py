"""The numeric core: class list, run-length algebra, submission CSVs, the metric, probability maps.

numpy only: nothing here imports torch, ultralytics or the data layout, so it imports fast and
any model's outputs can be scored and written with it.
"""
