"""Decoding untrusted images with caps: data URLs only, bytes and pixels bounded.

Shared by the worker (image parts of chat messages) and the document pipeline (uploads).
Never fetches a URL: a worker or gateway that fetched client-given URLs would be an SSRF hole.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings

from PIL import Image

DEFAULT_MAX_PIXELS = 40_000_000  # an A4 page at 600 dpi is 35 MP
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


class ImageError(ValueError):
    """An image that is refused; the message is safe to show to the client."""

    def __init__(self, message: str, code: str = "invalid_image"):
        super().__init__(message)
        self.code = code


def decode_data_url(url: str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Bytes of a `data:image/...;base64,` URL. Any other scheme is refused, never fetched."""
    if not isinstance(url, str):
        raise ImageError("image_url.url must be a string")
    head = url[:16].lower()
    if not head.startswith("data:"):
        scheme = url.split(":", 1)[0] if ":" in url else "(none)"
        raise ImageError(
            f"only data: URLs are accepted for images, not {scheme}: (URLs are never fetched)", code="url_not_allowed"
        )
    meta, sep, payload = url.partition(",")
    if not sep:
        raise ImageError("malformed data URL: no comma")
    if ";base64" not in meta.lower():
        raise ImageError("data URL must be base64-encoded")
    if len(payload) * 3 // 4 > max_bytes:
        raise ImageError(f"image larger than {max_bytes // (1024 * 1024)} MiB", code="image_too_large")
    try:
        return base64.b64decode(payload, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"data URL is not valid base64: {exc}") from None


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, frame: int = 0) -> Image.Image:
    """Open and fully decode image bytes as RGB, refusing bombs, truncation and oversize."""
    if not data:
        raise ImageError("empty image")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im: Image.Image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageError(f"image over the pixel cap: {exc}", code="image_too_large") from None
        except Image.DecompressionBombWarning as exc:
            raise ImageError(f"image over the pixel cap: {exc}", code="image_too_large") from None
        except Exception:
            raise ImageError("not a readable image (PNG, JPEG, WebP, TIFF, ...)") from None
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageError("image has no pixels")
        if w * h > max_pixels:
            raise ImageError(f"image is {w}x{h} = {w * h} pixels, over the cap of {max_pixels}", code="image_too_large")
        try:
            if frame:
                im.seek(frame)
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"image over the pixel cap: {exc}", code="image_too_large") from None
        except EOFError:
            raise ImageError(f"image has no frame {frame}") from None
        except Exception as exc:
            raise ImageError(f"image is truncated or corrupt: {exc}") from None
    if im.mode != "RGB":
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            bg = Image.new("RGB", im.size, (255, 255, 255))
            bg.paste(im, mask=im.split()[-1])
            im = bg
        else:
            im = im.convert("RGB")
    return im


def to_data_url(im: Image.Image, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    mime = "image/png" if fmt.upper() == "PNG" else f"image/{fmt.lower()}"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")
