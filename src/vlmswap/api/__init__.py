"""The HTTP vocabulary shared by the gateway and the worker: error bodies, OpenAI shapes, the API document, images."""
