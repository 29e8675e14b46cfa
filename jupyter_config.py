# Jupyter settings for this repository, read by `make lab` (JUPYTER_CONFIG_PATH, see the Makefile and the README;
# jupyter_core >= 5 does not read a jupyter_config.py from the current folder by itself). The rest of the set-up is in
# .jupyter/: labconfig/default_setting_overrides.json (a double click opens a markdown file as a notebook) and
# kernels/python3/ (the kernel named "Python 3", as the chapters' headers say, so JupyterLab keeps their kernelspec).
#
# The chapters in book/ are MyST markdown text notebooks; jupytext's contents manager opens them as notebooks.
# `jupyter lab book/` serves book/ only, so jupytext finds no jupytext.toml / pyproject.toml there and uses these
# settings. Saving a chapter writes its text from the notebook: the filter keeps the header's version fields out, so
# a chapter that was only opened, run and saved keeps its bytes (outputs are never written to the .md file).
# tests/test_lab.py checks both, through a real server and in headless Chromium.
c = get_config()  # noqa: F821
c.ServerApp.contents_manager_class = "jupytext.TextFileContentsManager"
c.ContentsManager.preferred_jupytext_formats_read = "md:myst"
c.ContentsManager.notebook_metadata_filter = (
    "-jupytext.text_representation.jupytext_version,-jupytext.text_representation.format_version"
)


def keep_plain_pages_plain(model, path, contents_manager, **kwargs):
    """A markdown page without a YAML header and without code cells (book/intro.md) opens as a notebook too, and
    JupyterLab marks it modified at once; saving it (autosave included) would add jupytext's header. Keep it plain."""
    text = model.get("content")
    if model.get("type") != "file" or not path.endswith(".md") or not isinstance(text, str):
        return
    if not text.startswith("---\n") or "```{code-cell}" in text:
        return
    try:
        with open(contents_manager._get_os_path(path), encoding="utf-8") as page:
            if page.read(4) == "---\n":
                return  # it had a header: a text notebook
    except FileNotFoundError:
        return  # a new file
    model["content"] = text[text.index("\n---\n", 3) + len("\n---\n") :].lstrip("\n")


c.ContentsManager.pre_save_hook = keep_plain_pages_plain
