"""Untrusted images: data URLs only, caps on bytes and pixels, truncation caught."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from vlmswap.api.images import ImageError, decode_data_url, open_image, to_data_url


def _png(size=(40, 30), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, "white").save(buf, "PNG")
    return buf.getvalue()


def test_data_url_round_trip():
    im = Image.new("RGB", (12, 7), (10, 20, 30))
    back = open_image(decode_data_url(to_data_url(im)))
    assert back.size == (12, 7) and back.getpixel((0, 0)) == (10, 20, 30)


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest", "https://example.com/a.png", "file:///etc/passwd"])
def test_urls_are_refused_never_fetched(url):
    with pytest.raises(ImageError) as exc:
        decode_data_url(url)
    assert exc.value.code == "url_not_allowed"


def test_bytes_cap():
    url = "data:image/png;base64," + base64.b64encode(b"\0" * 2048).decode()
    with pytest.raises(ImageError) as exc:
        decode_data_url(url, max_bytes=1024)
    assert exc.value.code == "image_too_large"


def test_pixel_cap_is_checked_before_decoding():
    # A 20000x20000 PNG compresses to a few hundred KB; it must be refused from its header.
    big = _png((20000, 20000), "1")
    with pytest.raises(ImageError) as exc:
        open_image(big)
    assert exc.value.code == "image_too_large"


def test_truncated_png_is_refused():
    data = _png((300, 300))
    with pytest.raises(ImageError, match=r"truncated|corrupt|readable"):
        open_image(data[: len(data) // 2])


def test_not_an_image_and_empty():
    with pytest.raises(ImageError, match="not a readable image"):
        open_image(b"%PDF-1.4 hello")
    with pytest.raises(ImageError, match="empty"):
        open_image(b"")


def test_transparency_flattens_on_white():
    im = open_image(_png((4, 4), "RGBA"))
    assert im.mode == "RGB"
