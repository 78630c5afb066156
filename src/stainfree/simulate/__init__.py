"""The digital cell: 15-compartment geometry, bright-field and fluorescence optics, Nile Red spectra, motion.

``simulate_field(config, index)`` returns the arrays of one field; ``write_dataset(config, out_dir)`` writes a
whole data set (per-field folders, ``manifest.csv``, ``simulation.json``) and returns the manifest path.
"""

from stainfree.simulate.dataset import write_dataset, write_field
from stainfree.simulate.field import SimulatedField, simulate_field
from stainfree.simulate.geometry import PRIORITY

__all__ = ["PRIORITY", "SimulatedField", "simulate_field", "write_dataset", "write_field"]
