"""What every model family shares, below the families and the dispatch modules.

Imports go one way: ``yolohand.models.{family,train,predict}`` (the dispatch by family) ->
``yolo/``, ``smp/``, ``refine/`` (the families) -> ``shared/`` -> ``yolohand.core``/``data``.
Nothing here imports a family or a dispatch module (``tests/test_imports.py`` checks it).

- :mod:`.checkpoint`: ``--model`` specs, reading a yolohand checkpoint and its metadata;
- :mod:`.runs`: the run layout (fold YAMLs and lists, run-folder rules, :class:`~.runs.TrainResult`);
- :mod:`.devices`: ``--device`` for torch (prediction and Lightning training);
- :mod:`.normalise`: the input normalisation of uint8 X-rays;
- :mod:`.settings`: prediction choices and the network/refiner protocols;
- :mod:`.network`: segmentation_models_pytorch networks built offline (smp and refine);
- :mod:`.config`, :mod:`.engine`, :mod:`.plan`: run arguments, the Lightning engine and the run
  plan of the semantic families (smp and refine).
"""
