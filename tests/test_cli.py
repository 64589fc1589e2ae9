"""Every subcommand has help with an example; torch-needing commands say which extra to install."""

import subprocess
import sys

import pytest
from firstwords.edge.cli import COMMANDS, build_parser, load_command


def test_top_level_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "firstwords.edge.cli", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for name in COMMANDS:
        assert name in out.stdout


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_subcommand_has_help_with_an_example(name, capsys):
    mod = load_command(name)
    assert mod.HELP.strip() and mod.EXAMPLE.startswith("firstwords ")
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and mod.EXAMPLE in out


def test_design_commands_are_all_there():
    assert {"train", "export", "eval", "run", "replay", "ask", "profile", "demo"} <= set(COMMANDS)


def test_torch_command_without_torch_says_which_extra(tmp_path):
    # Hide torch from a child process and run a command that needs it.
    code = ("import sys; sys.modules['torch'] = None\n"
            "from firstwords.edge.cli import main\n"
            "sys.exit(main(['train', '--config', 'compact', '--data', 'x.json', '-o', 'y']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "pip install 'firstwords[train]'" in out.stderr
