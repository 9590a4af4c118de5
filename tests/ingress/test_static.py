"""The browser page's files: present, self-contained (no CDN, no external URL)."""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).parents[2] / "ingress" / "static"


def test_page_loads_nothing_from_outside():
    page = [STATIC / name for name in ("index.html", "voice-mic.js", "voice-mic-worklet.js")]
    for asset in page:
        text = asset.read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), asset
        assert not re.search(r"""(import|from)\s*\(?\s*["'](https?:)?//""", text), asset


def test_page_uses_the_component_and_is_labelled():
    html = (STATIC / "index.html").read_text()
    js = (STATIC / "voice-mic.js").read_text()
    assert '<voice-mic id="assistant"' in html and 'src="/static/voice-mic.js"' in html
    assert 'role="log" aria-live="polite"' in js and 'role="status"' in js and "aria-keyshortcuts" in js
    assert 'new URL("./voice-mic-worklet.js", import.meta.url)' in js
