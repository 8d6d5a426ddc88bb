"""Subcommands of the ``multimodal`` console command, each a ``main(argv) -> int``."""
