"""The cloud half as a service: ``fcm serve`` decodes fcm bitstreams posted by edge devices and answers with the task
output as JSON; :class:`fcm.serve.client.EdgeClient` (``fcm send``) is the edge side.

Needs the ``serve`` extra (``pip install fcm[serve]``: FastAPI, uvicorn, httpx, prometheus-client); importing
:mod:`fcm` does not import any of them.
"""
