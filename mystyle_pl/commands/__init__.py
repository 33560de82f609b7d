"""The tool commands of ``mystyle-pl`` (plain argparse; :data:`mystyle_pl.cli.TOOL_COMMANDS` registers them):
one module per command, or per family of commands, each with its ``_add_<name>_arguments(parser)`` and
``_run_<name>(args) -> int``.

Imports of the heavier parts (Lightning, the tuning code, dlib's face models, gradio, the demo) sit
inside the run functions, for start-up time: a command loads only what it runs.
"""
