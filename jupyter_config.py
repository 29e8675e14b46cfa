# Jupyter settings for this repository. jupyter_core >= 5 does not read a jupyter_config.py from the current
# folder by itself: start JupyterLab with `JUPYTER_CONFIG_PATH=$PWD jupyter lab` (see the README).
# The chapters in book/ are MyST markdown text notebooks; jupytext's contents manager opens them as notebooks.
c = get_config()  # noqa: F821
c.ServerApp.contents_manager_class = "jupytext.TextFileContentsManager"
c.ContentsManager.preferred_jupytext_formats_read = "md:myst"
c.ContentsManager.notebook_metadata_filter = "-jupytext.text_representation.jupytext_version"
