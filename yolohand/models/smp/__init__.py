"""The segmentation_models_pytorch family: whole-image semantic models with 29 sigmoid channels.

``yolohand train --model smp:UnetPlusPlus:resnet34`` (:mod:`.train`), predicted through the shared
:mod:`yolohand.models.predict` (:mod:`.predict`). Built offline (:mod:`.model`), trained with
PyTorch Lightning (:mod:`.engine`), configured by a run YAML (:mod:`.config`). Users' own smp models
(``torch.save(model)`` or its state_dict) become checkpoints of this family with ``yolohand import``
(:mod:`.importer`).
"""
