"""`python -m tests.chaos [--cases N] [--quick]`: the chaos run (tests.chaos.harness)."""

from tests.chaos.harness import main

try:
    main()
except KeyboardInterrupt:  # the run's own cleanup has run (finally blocks)
    raise SystemExit(130) from None
