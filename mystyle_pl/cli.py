"""The ``mystyle-pl`` command: LightningCLI subcommands plus the project's tool commands.

``mystyle-pl fit|validate|test|predict ...`` go to LightningCLI (``--config``,
``--print_config``, class_path/init_args). Tool commands (``convert``, ``info``, ...) are
plain argparse commands registered in ``TOOL_COMMANDS``, each in its module of
:mod:`mystyle_pl.commands`. ``python cli.py`` is the same program.

Errors a user can cause (a missing file, an output folder that cannot be written, a wrong option
value: :class:`~mystyle_pl.errors.UserError`, ``FileNotFoundError``, ``PermissionError``,
``ValueError``, ...) end in one line ``mystyle-pl: error: <path>: <problem>`` on stderr and exit
status 2; other exceptions are bugs and keep their traceback. ``--debug`` (anywhere on the line)
or ``MYSTYLE_DEBUG=1`` shows the traceback of user errors too. A ``predict`` stopped by SIGTERM
exits with status 143 after writing ``summary.json`` / ``failed.json``
(:mod:`mystyle_pl.predict.stop`).

Lazy imports: :mod:`mystyle_pl.lightning_cli` and :mod:`mystyle_pl.predict` are imported inside
:func:`run_lightning`, so that ``mystyle-pl --help`` and the tool commands do not import Lightning
(seconds). The tool commands' own heavy imports are lazy for the same reason (see their modules).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

from ._version import __version__
from .commands.assets import _add_assets_arguments, _run_assets
from .commands.checkpoints import (
    _add_convert_arguments,
    _add_export_arguments,
    _add_info_arguments,
    _run_convert,
    _run_export,
    _run_info,
)
from .commands.demo import _add_demo_arguments, _run_demo
from .commands.evaluate import _add_evaluate_arguments, _run_evaluate
from .commands.prepare import _add_prepare_arguments, _run_prepare
from .commands.serve import _add_serve_arguments, _run_serve
from .commands.verify import _add_verify_arguments, _run_verify
from .data.faces import FaceModelsUnavailable
from .errors import PredictInterrupted, UserError, describe_error

LIGHTNING_COMMANDS = {
    "fit": "tune a personal prior (LightningCLI: trainer + model + data from YAML/flags)",
    "validate": "run validation of a model on its data (LightningCLI)",
    "test": "run the test loop (LightningCLI)",
    "predict": "run a task (invert, inpaint, superres, colorize, edit, sample) over inputs (LightningCLI)",
}


@dataclass(frozen=True)
class ToolCommand:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


TOOL_COMMANDS: dict[str, ToolCommand] = {
    "assets": ToolCommand("list, fetch and locate named weights (generators, LPIPS backbones)", _add_assets_arguments, _run_assets),
    "convert": ToolCommand("convert a generator checkpoint to the native safetensors format", _add_convert_arguments, _run_convert),
    "info": ToolCommand("describe a checkpoint or a prior (family, resolution, num_ws, parameters)", _add_info_arguments, _run_info),
    "export": ToolCommand("export the personal prior bundle from a fit checkpoint", _add_export_arguments, _run_export),
    "prepare": ToolCommand("raw photos -> curated, FFHQ-aligned album (images/ + manifest.json)", _add_prepare_arguments, _run_prepare),
    "evaluate": ToolCommand("held-out photos -> personal vs generic prior vs baseline: metrics, report.md", _add_evaluate_arguments, _run_evaluate),
    "demo": ToolCommand("the whole method on a synthesised person (or --album DIR): prepare, fit, tasks, evaluate", _add_demo_arguments, _run_demo),
    "verify": ToolCommand("what an image says about itself: Content Credentials, IPTC XMP, the watermark", _add_verify_arguments, _run_verify),
    "serve": ToolCommand("the browser app on a prior (needs mystyle-pl[app]): restore, super-resolve, inpaint, edit, sample", _add_serve_arguments, _run_serve),
}


# ----------------------------------------------------------------------------------------
# entry point


def top_level_help() -> str:
    width = max(len(n) for n in [*LIGHTNING_COMMANDS, *TOOL_COMMANDS])
    lines = [
        f"usage: mystyle-pl COMMAND [options]        (mystyle-pl {__version__})",
        "",
        "MyStyle personalized face priors: tune a StyleGAN on ~100 photos of one person, then",
        "restore, complete, super-resolve and edit photos of that person.",
        "",
        "Training and tasks (LightningCLI; `mystyle-pl COMMAND --help`, `--print_config`):",
        *(f"  {name:<{width}}  {text}" for name, text in LIGHTNING_COMMANDS.items()),
        "",
        "Tools (`mystyle-pl COMMAND --help`):",
        *(f"  {name:<{width}}  {cmd.help}" for name, cmd in TOOL_COMMANDS.items()),
        "",
        "options:",
        "  -h, --help     show this message",
        "  --version      print the version",
    ]
    return "\n".join(lines)


def run_tool(name: str, argv: Sequence[str]) -> int:
    command = TOOL_COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"mystyle-pl {name}", description=command.help)
    command.add_arguments(parser)
    args = parser.parse_args(list(argv))
    return command.run(args)


_YAML_NULLS = ("null", "Null", "NULL", "~")
_SUBCLASS_GROUPS = ("model", "data")  # LightningCLI's subclass-mode groups (class_path + init_args)


def nulls_as_inline_configs(args: Sequence[str]) -> list[str]:
    """``args`` with each ``--model.KEY null`` / ``--data.KEY null`` (also ``--model.KEY=null``) replaced, in
    place, by the inline config ``--config '{"model": {... {"KEY": null}}}'``, which sets the same value.

    Why: jsonargparse (4.x) hands a dotted option of a subclass-mode group to the class's init_args by
    formatting the parsed value back into an argument (``f"--{key}={val}"``), so null arrives as the
    string ``'None'``: refused for a number (``--model.task.detail_gate null``,
    ``--model.task.patience null``) and silently a string for a text option. Inline configs are merged
    like config files, nulls included. Other arguments are returned unchanged."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg, key, value, used = args[i], None, None, 1
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
        elif arg.startswith("--") and i + 1 < len(args):
            key, value, used = arg[2:], args[i + 1], 2
        parts = key.split(".") if key else []
        if value in _YAML_NULLS and len(parts) >= 2 and parts[0] in _SUBCLASS_GROUPS and all(parts):
            nested: object = None
            for part in reversed(parts):
                nested = {part: nested}
            out += ["--config", json.dumps(nested)]
            i += used
            continue
        out.append(arg)
        i += 1
    return out


def run_lightning(argv: Sequence[str] | None) -> int:
    """Hand over to LightningCLI (``argv=None``: it reads ``sys.argv`` itself, rewritten by
    :func:`nulls_as_inline_configs`, which DDP's child processes re-run). ``predict`` runs with
    SIGTERM turned into a clean stop (see :mod:`mystyle_pl.predict.stop`)."""
    from .lightning_cli import MyStyleLightningCLI  # lazy: see module docstring

    if argv is None:
        sys.argv = [sys.argv[0], *nulls_as_inline_configs(sys.argv[1:])]
    else:
        argv = nulls_as_inline_configs(argv)
    command = (list(sys.argv[1:]) if argv is None else list(argv))[:1]
    if command != ["predict"]:
        MyStyleLightningCLI(args=None if argv is None else list(argv))
        return 0
    from .predict import stop  # lazy: see module docstring

    stop.enter()  # from the start: a SIGTERM while the prior loads also ends in a clean stop
    try:
        MyStyleLightningCLI(args=None if argv is None else list(argv))
    finally:
        stop.exit()
    return 0


def dispatch(argv: Sequence[str] | None = None) -> int:
    """Run one command; exceptions propagate (what :func:`main` turns into messages and exit codes)."""
    from_sys_argv = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(top_level_help())
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name in TOOL_COMMANDS:
        return run_tool(name, rest)
    if name in LIGHTNING_COMMANDS:
        return run_lightning(None if from_sys_argv else argv)
    print(f"mystyle-pl: error: unknown command {name!r}\n\n{top_level_help()}", file=sys.stderr)
    return 2


# Exceptions a user causes (paths, options, file contents; dlib or its models missing: an installation
# problem with a clear remedy, not a bug): one line, exit status 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError, ValueError,
    FaceModelsUnavailable,
)


# jsonargparse wraps an exception raised by a class's __init__ in a ValueError with these words.
_PARSER_WRAPPERS = ("Does not validate against any of the Union subtypes", "Problem with given class_path")


def _unwrap(error: BaseException) -> BaseException:
    """The exception a jsonargparse wrapper was made from (e.g. the PriorError of a model's
    ``__init__``), else ``error`` itself."""
    seen = set()
    while str(error).lstrip().startswith(_PARSER_WRAPPERS) and id(error) not in seen:
        seen.add(id(error))
        inner = error.__cause__ or error.__context__
        if inner is None:
            break
        error = inner
    return error


def main(argv: Sequence[str] | None = None) -> int:
    """The ``mystyle-pl`` program: :func:`dispatch`, with user errors as one line on stderr (exit 2),
    a predict stopped by SIGTERM as exit 143, and tracebacks only for bugs (or with ``--debug`` /
    ``MYSTYLE_DEBUG=1``)."""
    from_sys_argv = argv is None
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("MYSTYLE_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    if "--debug" in args:
        debug = True
        args = [a for a in args if a != "--debug"]
        if from_sys_argv:
            sys.argv = [sys.argv[0], *args]
    try:
        return dispatch(None if from_sys_argv else args)
    except KeyboardInterrupt:
        print("mystyle-pl: interrupted", file=sys.stderr)
        return 130
    except BaseException as e:
        if isinstance(e, PredictInterrupted):
            print(f"mystyle-pl: {e}", file=sys.stderr)
            return e.exit_code
        cause = _unwrap(e)
        if debug or not isinstance(e, USER_ERRORS) or not isinstance(cause, USER_ERRORS):
            raise
        print(f"mystyle-pl: error: {describe_error(cause)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
