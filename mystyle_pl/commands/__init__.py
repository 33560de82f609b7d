"""The tool commands of ``mystyle-pl`` (plain argparse; :data:`mystyle_pl.cli.TOOL_COMMANDS` registers them):
one module per command, or per family of commands, each with its ``_add_<name>_arguments(parser)`` and
``_run_<name>(args) -> int``.

Their heavy imports (torch, the tasks, dlib) sit inside the functions, for start-up time:
``mystyle-pl --help`` and every ``COMMAND --help`` must answer without importing torch.
"""
