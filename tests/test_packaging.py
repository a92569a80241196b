import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _names(specs):
    return {re.split(r"[<>=!~\[ ;]", s.strip(), maxsplit=1)[0].lower() for s in specs}


def test_environment_yml_lists_pyproject_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _names(project["dependencies"]) | _names(project["optional-dependencies"]["test"])
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip() == "- pip:")
    listed = {l.strip()[2:].strip() for l in lines[start + 1:] if l.strip().startswith("- ")}
    listed = _names(l for l in listed if not l.startswith("-e"))
    assert listed == wanted


def test_notebooks_are_valid_committed_without_outputs_and_parameterised():
    """Every notebook validates against the nbformat schema (cell ids included), has no outputs
    or execution counts, starts with a markdown cell and has exactly one cell tagged
    ``parameters``."""
    import warnings
    from pathlib import Path

    import nbformat

    books = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(books) == 9
    for path in books:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            nb = nbformat.read(path, as_version=4)
            nbformat.validate(nb)
        assert nb.cells[0].cell_type == "markdown", path.name
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


def test_git_strips_notebook_outputs_on_commit(tmp_path):
    """`make` points .gitattributes' nbstripout filter at the venv: a notebook saved with outputs
    and JupyterLab's metadata (as it autosaves it) goes into git as the committed file."""
    import shutil
    import subprocess
    from pathlib import Path

    import nbformat
    import pytest

    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")

    def git(*args, **kw):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, **kw)

    assert git("check-attr", "filter", "--", "notebooks/04_evaluation.ipynb").stdout.strip().endswith(
        "filter: nbstripout")
    clean = git("config", "--get", "filter.nbstripout.clean").stdout.strip()
    assert clean, "the nbstripout filter is not configured: run `make install`"
    committed = (root / "notebooks" / "04_evaluation.ipynb").read_text()
    nb = nbformat.reads(committed, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.execution_count = i + 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="explored\n")]
    # the kernel JupyterLab runs it with names itself as the committed file does
    from jupyter_client.kernelspec import KernelSpecManager
    spec = KernelSpecManager().get_kernel_spec(nb.metadata.kernelspec.name)
    assert nb.metadata.kernelspec.display_name == spec.display_name
    # what JupyterLab 4 adds on save: the kernel's language_info, the widgets' state
    nb.metadata["language_info"] = {"codemirror_mode": {"name": "ipython", "version": 3},
                                    "file_extension": ".py", "mimetype": "text/x-python",
                                    "name": "python", "pygments_lexer": "ipython3",
                                    "version": "3.11.7"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    saved = nbformat.writes(nb)
    assert "explored" in saved
    out = subprocess.run(clean, shell=True, input=saved, capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout == committed
