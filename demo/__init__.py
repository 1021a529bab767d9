"""The synthetic demo workload: cases, recommendations and reviews generated from a seed
(`workload.py`), their wording (`text.py`) and JSON Lines files of them (`files.py`)."""
