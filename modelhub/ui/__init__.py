"""`dlv ui`: a local, read-only web application over a repository (docs/UI.md).

Needs the `ui` extra (aiohttp, Jinja2): ``pip install 'modelhub[ui]'``.
"""
