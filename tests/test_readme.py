"""README.md tells the truth: its Python blocks run, the paths it names exist, CI runs the
commands at its top, and the training example's extra dependencies are installable."""
import importlib.util
import pathlib
import re
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(text, language):
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def test_python_blocks_run(capsys):
    """Every ```python block, in order, in one namespace (as a reader would paste them)."""
    blocks = _blocks(README, "python")
    assert blocks
    namespace = {"__name__": "__readme__"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
    assert "backend:" in capsys.readouterr().out     # the usage block prints explain()


def _commands_at_top():
    """The commands of the first ```bash block, split at ``&&``, comments dropped."""
    first = _blocks(README, "bash")[0]
    lines = [line.split("  #")[0].strip() for line in first.splitlines()]
    return [part.strip() for line in lines if line for part in line.split("&&")]


def test_ci_runs_the_commands_at_the_top():
    ci = [line.split("#")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = _commands_at_top()
    assert "python -m convtranspose check" in commands and "python -m pytest" in commands
    positions = [ci.index(c) for c in commands]      # ValueError: a command CI does not run
    assert positions == sorted(positions)


def _named_paths(text):
    """Repository paths README names: in backticks (any word with a file extension or a
    trailing slash) and as link targets."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)     # fenced blocks out
    words = [w for span in re.findall(r"`([^`]+)`", prose) for w in span.split()]
    words += re.findall(r"\]\(([^)\s]+)\)", prose)
    words = [w.strip("(),;:") for w in words]
    return sorted({w for w in words if "/" in w and
                   re.fullmatch(r"[A-Za-z_.][\w.-]*(/[\w.*-]+)*(\.\w+|/)", w)})


def test_named_paths_exist():
    paths = _named_paths(README)
    assert "src/convtranspose/suite.py" in paths
    missing = [p for p in paths if not list(ROOT.glob(p.rstrip("/")))]
    assert not missing, f"README.md names paths that do not exist: {missing}"


def test_examples_extra_installs_what_the_example_needs():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    names = {re.split(r"[<>=\[ ]", r)[0] for r in extras["examples"]}
    assert {"scikit-learn", "matplotlib"} <= names
    assert 'pip install ".[examples]"' in " ".join(README.split())


def test_example_says_which_extra_is_missing(monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "train_autoencoder", ROOT / "examples" / "train_autoencoder.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)   # as if not installed
    with pytest.raises(ImportError, match=r'pip install "\.\[examples\]"'):
        example.load_digits()
