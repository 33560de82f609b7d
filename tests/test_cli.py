import subprocess
import sys

import pytest
import torch

from mystyle_pl.cli import LIGHTNING_COMMANDS, TOOL_COMMANDS, main
from mystyle_pl.generators import load_generator, save_generator

from .helpers import REPO_ROOT


def test_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [*LIGHTNING_COMMANDS, *TOOL_COMMANDS]:
        assert f"  {name} " in out


def test_unknown_command_fails(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(TOOL_COMMANDS))
def test_tool_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert f"mystyle-pl {name}" in capsys.readouterr().out


def test_info_and_convert(tiny_generator, tmp_path, capsys):
    src = save_generator(tiny_generator, tmp_path / "g.safetensors")
    assert main(["info", str(src), "--json"]) == 0
    out = capsys.readouterr().out
    assert f'"num_ws": {tiny_generator.num_ws}' in out and '"family": "stylegan2"' in out

    dst = tmp_path / "out" / "converted.safetensors"
    assert main(["convert", str(src), str(dst)]) == 0
    assert "render check" in capsys.readouterr().out
    a, b = tiny_generator.state_dict(), load_generator(dst).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Refuses to overwrite without --overwrite, and never writes onto the source: one line each, exit 2.
    assert main(["convert", str(src), str(dst)]) == 2
    assert capsys.readouterr().err == f"mystyle-pl: error: {dst}: exists; pass --overwrite to replace it\n"
    assert main(["convert", str(src), str(src), "--overwrite"]) == 2
    assert "never modified" in capsys.readouterr().err


def test_info_missing_file_names_it(tmp_path, capsys):
    missing = tmp_path / "nope.pkl"
    assert main(["info", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_cli_py_is_the_console_entry_point():
    out = subprocess.run([sys.executable, str(REPO_ROOT / "cli.py"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "convert" in out.stdout and "fit" in out.stdout


@pytest.mark.slow
def test_lightning_fit_help_and_print_config():
    """The real program (``python cli.py``) on a Lightning command; the config stacks below parse in process."""
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "cli.py"), "fit", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "--print_config" in out.stdout and "--trainer.max_steps" in out.stdout


@pytest.mark.parametrize(
    "configs",
    [
        ["configs/fit/cpu_quick.yaml"],
        ["configs/trainer/gpu.yaml", "configs/fit/mystyle.yaml"],
        ["configs/trainer/ddp.yaml", "configs/fit/mystyle.yaml"],
        ["configs/trainer/slurm.yaml", "configs/fit/official.yaml"],
    ],
)
def test_fit_configs_parse(configs, capsys, monkeypatch):
    """Each shipped stack through ``main`` (what ``cli.py`` runs; a subprocess per stack cost ~5 s of imports
    and added nothing: test_lightning_fit_help_and_print_config runs the real program)."""
    monkeypatch.setattr("sys.argv", ["mystyle-pl"])  # LightningCLI warns when it gets args while sys.argv has pytest's
    args = ["fit"]
    for config in configs:
        args += ["--config", str(REPO_ROOT / config)]
    with pytest.raises(SystemExit) as exit_info:  # --print_config prints the parsed config and exits 0
        main([*args, "--data.album", "some/album", "--print_config"])
    out = capsys.readouterr()
    assert exit_info.value.code in (0, None), out.err[-2000:]
    assert "class_path: mystyle_pl.tuning.PersonalTuner" in out.out and "album: some/album" in out.out
    assert "use_distributed_sampler: false" in out.out


def test_predict_invert_takes_a_list_of_feature_blocks(capsys, monkeypatch):
    """``feature_resolution`` from the command line: one block or a list (the presets' [64, 256])."""
    monkeypatch.setattr("sys.argv", ["mystyle-pl"])
    args = ["predict", "--config", str(REPO_ROOT / "configs/predict/invert.yaml"), "--model.prior", "some/prior"]
    args += ["--data.inputs", "some/photo.png", "--model.task.init_args.feature_resolution", "[64,128]", "--print_config"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    assert exit_info.value.code in (0, None), out.err[-2000:]
    assert "feature_resolution:\n" in out.out and "- 64\n" in out.out and "- 128\n" in out.out


def test_lightnings_product_tips_are_dropped_and_its_other_messages_kept(caplog):
    import mystyle_pl.lightning_cli  # noqa: F401 - installs the filter, as every Lightning command does
    from lightning.pytorch.utilities import rank_zero_info

    with caplog.at_level("INFO", logger="lightning.pytorch.utilities.rank_zero"):
        rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        rank_zero_info("GPU available: False, used: False")
    assert caplog.messages == ["GPU available: False, used: False"]


def test_lightnings_leafspec_deprecation_is_quiet_and_other_warnings_are_not():
    import warnings

    from lightning.pytorch.utilities._pytree import _tree_flatten

    from mystyle_pl.lightning_cli import quiet_lightning_deprecations

    def leafspec_warnings(quiet: bool) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if quiet:
                quiet_lightning_deprecations()
            _tree_flatten({"loss": 1.0})  # what Lightning's loops do with a step's output
            warnings.warn("another FutureWarning", FutureWarning)
        return [str(w.message) for w in caught]

    loud = leafspec_warnings(quiet=False)
    if not any("LeafSpec" in m for m in loud):
        pytest.skip("this torch does not deprecate LeafSpec: nothing to quiet")
    quiet = leafspec_warnings(quiet=True)
    assert not any("LeafSpec" in m for m in quiet)
    assert "another FutureWarning" in quiet


@pytest.mark.parametrize("form", ["separate", "equals"])
def test_null_reaches_a_tasks_option_from_the_command_line(capsys, monkeypatch, form):
    """jsonargparse turns ``--model.task.X null`` into the string 'None' on its way into the task's
    init_args; the CLI passes such nulls as inline configs, so the README's ``detail_gate null`` and
    ``patience null`` work, next to other overrides, in the order given."""
    from mystyle_pl.cli import nulls_as_inline_configs

    monkeypatch.setattr("sys.argv", ["mystyle-pl"])
    nulls = ["--model.task.detail_gate", "null", "--model.task.init_args.patience", "~"]
    if form == "equals":
        nulls = ["--model.task.detail_gate=null", "--model.task.init_args.patience=~"]
    args = ["predict", "--config", str(REPO_ROOT / "configs/predict/superres.yaml"), "--model.prior", "some/prior"]
    args += ["--data.inputs", "some/photo.png", *nulls, "--model.task.back_projection", "3", "--print_config"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr()
    assert exit_info.value.code in (0, None), out.err[-2000:]
    assert "detail_gate: null" in out.out and "patience: null" in out.out and "back_projection: 3" in out.out
    assert "prior: some/prior" in out.out and "preset: quick" in out.out  # merged, not replaced
    # what the rewrite leaves alone: other values, other groups, a null of a top-level option
    same = ["--model.task.detail_gate", "0.3", "--trainer.max_time", "null", "--model", "null", "--data.x=1"]
    assert nulls_as_inline_configs(same) == same
