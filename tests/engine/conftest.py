"""The engine tests use the shared fixtures of ``tests/conftest.py`` (``synthetic_data``,
``tiny_model_yaml``, ``repyolo_log``)."""
