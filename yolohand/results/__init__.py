"""Working on predictions: scoring them against ground truth (evaluate) and fusing them (ensemble).

Reads CSVs and probability maps from any model family; imports the core and the data layout only."""
