"""headmaps' describer: load a model, read its attention heads' weights, run MAPS."""

__version__ = "0.1.0"
