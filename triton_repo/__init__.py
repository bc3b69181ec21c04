"""The default Triton model repository; ``model.py`` is the Python-backend model."""
