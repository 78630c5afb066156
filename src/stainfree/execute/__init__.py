"""How blocks and positions run: locally or on a ``dask.distributed`` cluster, with resume bookkeeping.

The only package of stainfree that imports ``dask.distributed``: :mod:`~stainfree.execute.cluster` (clients,
worker set-up, bundle cache), :mod:`~stainfree.execute.blocks` (one image predicted as resumable blocks),
:mod:`~stainfree.execute.segment_blocks` (one Nile Red image segmented as blocks),
:mod:`~stainfree.execute.frames` (a time-lapse, one task per time point),
:mod:`~stainfree.execute.frame_blocks` (a time-lapse of big frames, one task per block of a time point),
:mod:`~stainfree.execute.pyramid` (multiscale levels of the outputs, chunk by chunk) and
:mod:`~stainfree.execute.positions` (plates, folders, globs as one job).
"""
