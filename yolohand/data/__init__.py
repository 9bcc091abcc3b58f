"""The data side: the competition layout, synthetic data, conversion to YOLO-seg labels, folds,
polygon repair and the image/mask caches. Imports the core, never a model family."""
