"""Data jobs: a directory of notebooks, ``.py`` and ``.sql`` files run step by step."""
