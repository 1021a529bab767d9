"""The HTTP console: the JSON API (`api/`), the pages (`web/`) and what they share with the
CLI (operator auth, dry-runs, the weekly report, the policy topic)."""
