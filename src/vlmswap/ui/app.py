"""The Streamlit entry point (`vlmswap ui` runs this file): language, sidebar, then the chosen page.

The gateway's URL comes from the environment (VLMSWAP_GATEWAY_URL), set by `vlmswap ui`. The
language is chosen on every run (ui/settings.py: the profile's preference, VLMSWAP_LANG, the
browser's), before anything is drawn.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from vlmswap.i18n import tr
from vlmswap.ui import settings, sidebar
from vlmswap.ui.api import session_gateway

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="vlmswap", page_icon=":material/swap_horiz:", layout="wide")
gw = session_gateway()
settings.apply_language(gw)
st.session_state["gateway_status"] = sidebar.render(gw)
page = st.navigation(
    [
        st.Page(HERE / "ocr_page.py", title=tr("OCR"), icon=":material/description:", default=True, url_path="ocr"),
        st.Page(HERE / "chat_page.py", title=tr("Chat"), icon=":material/chat:", url_path="chat"),
    ],
    position="top",
)
page.run()
