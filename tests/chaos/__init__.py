"""The chaos harness: casegate under fault injection (`python -m tests.chaos`, `make chaos`).

`harness` runs the cases while it kills and restarts (`faults`), then `check` reads the
topics and the tables for every case's expected effects. The integration tests use the
same modules for their short runs and their probes.
"""
