"""Sphinx extension: write each ``<script>`` once per page.

Sphinx 7.4 lists an inline script that an extension adds once the builder exists
(``app.add_js_file(None, body=...)``) twice: as filename ``None`` and as ``''``, which do not compare
equal. sphinx-thebe adds ``const THEBE_JS_URL = ...`` that way, so every page ran it twice and the
browser reported "Identifier 'THEBE_JS_URL' has already been declared" (found by
``tests/test_site_browser.py``).
"""

from __future__ import annotations


def _identity(script) -> tuple:
    """What makes two scripts the same: file (``None`` and ``''`` both mean inline), priority, attributes."""
    return script.filename or "", script.priority, tuple(sorted(script.attributes.items()))


def _drop_repeated_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if scripts is None:
        return
    seen, unique = set(), []
    for script in scripts:
        if _identity(script) not in seen:
            seen.add(_identity(script))
            unique.append(script)
    scripts[:] = unique  # in place: the builder restores its own list after each page


def setup(app):
    app.connect("html-page-context", _drop_repeated_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
