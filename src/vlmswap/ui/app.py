"""The Streamlit entry point (`vlmswap ui` runs this file): sidebar, then the chosen page.

The gateway's URL comes from the environment (VLMSWAP_GATEWAY_URL), set by `vlmswap ui`.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from vlmswap.ui import sidebar
from vlmswap.ui.api import session_gateway

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="vlmswap", page_icon=":material/swap_horiz:", layout="wide")
gw = session_gateway()
st.session_state["gateway_status"] = sidebar.render(gw)
page = st.navigation(
    [
        st.Page(HERE / "ocr_page.py", title="OCR", icon=":material/description:", default=True),
        st.Page(HERE / "chat_page.py", title="Chat", icon=":material/chat:"),
    ],
    position="top",
)
page.run()
