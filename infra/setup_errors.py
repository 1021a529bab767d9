"""Errors the CLI turns into a one-line message plus what to do next."""


class SetupError(RuntimeError):
    """Something the user must fix on the machine; ``hint`` says how."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint
