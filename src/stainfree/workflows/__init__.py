"""The workflows of stainfree, one module per family; :mod:`stainfree.api` re-exports their public functions.

- :mod:`~stainfree.workflows.demo`: ``demo`` (end to end on simulated cells, HTML report)
- :mod:`~stainfree.workflows.inspect`: ``info``, ``simulate``
- :mod:`~stainfree.workflows.staining`: virtual staining (``make_manifest``, ``train``,
  ``write_default_training_job``, ``predict``, ``evaluate``)
- :mod:`~stainfree.workflows.organelles`: organelles from one dye (``catalog_training_job``,
  ``train_catalog``, ``segment``)
- :mod:`~stainfree.workflows.groundtruth`: ``make_masks``, ``train_fgnet`` (ground truth from colocalization)
- :mod:`~stainfree.workflows.finetune`: ``fine_tune`` (any bundle, on the user's own images)
- :mod:`~stainfree.workflows.export`: ``export_model``, ``test_package`` (bioimage.io, ONNX)
- :mod:`~stainfree.workflows.quantify`: ``quantify``
- :mod:`~stainfree.workflows.timelapse`: ``timelapse`` (segment a time-lapse frame by frame, then track it)
- :mod:`~stainfree.workflows.register`: cross-modal registration (``register``, ``simulate_clem``)

Each function wires the lower layers together and returns paths or tables. Heavy libraries (torch, pandas,
scikit-image, ...) are imported inside the functions, so importing these modules is cheap.
"""
