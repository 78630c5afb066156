"""Organelle quantification: objects, contacts, time-lapse tracks and contact events.

Modules (pure numpy/pandas unless noted):

* :mod:`~stainfree.quantify.objects` -- masks -> objects, the public face of the next three modules:
* :mod:`~stainfree.quantify.maps` -- object maps (connected components, label maps), cells;
* :mod:`~stainfree.quantify.measure` -- volume, surface, sphericity, shape, intensity, ratio, distance to the
  nucleus, height above the coverslip;
* :mod:`~stainfree.quantify.summaries` -- per-structure and per-cell summaries;
* :mod:`~stainfree.quantify.contacts` -- contacts between every pair of structures and between objects;
* :mod:`~stainfree.quantify.tracking` -- frame-to-frame links, tracks, contact events;
* :mod:`~stainfree.quantify.inputs` -- label maps, mask stacks, instance stacks, simulator field folders;
* :mod:`~stainfree.quantify.run` -- one field (or time-lapse) -> every table;
* :mod:`~stainfree.quantify.figures` -- tables (CSV + Parquet) and PNG figures.

The workflow is :func:`stainfree.api.quantify` (CLI: ``stainfree quantify``).
"""
