"""Default models, prepared offline from PyPI packages into a cache folder."""
