"""`vlmswap.Client` and what it hands back: a gateway's admin API, chat, OCR and document jobs over HTTP."""

from vlmswap.client.gateway import Client, image_data_url
from vlmswap.client.http import Connection, GatewayError, GatewayUnreachable, SwitchError
from vlmswap.client.jobs import DocumentJob

__all__ = ["Client", "Connection", "DocumentJob", "GatewayError", "GatewayUnreachable", "SwitchError", "image_data_url"]
