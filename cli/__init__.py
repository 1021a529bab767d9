"""The `casegate` command line: the Typer app (`main.app`), one module per command group,
the supervisor that runs the components, the file producer and terminal tables."""
