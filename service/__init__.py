"""nae-trigger scoring service: FastAPI + ONNX Runtime, no torch.

Modules (a module imports only modules listed before it; calls flow from HTTP down to the runtime):

- ``settings``: ``Settings`` from ``NAE_*`` environment variables.
- ``bundle``: the bundle schema (contract 2 of docs/contracts.md) and ``load_bundle`` with hash
  checks.
- ``errors``: ``ServiceError`` and its 4xx subclasses.
- ``runtime``: ``OnnxModel``, one ONNX Runtime session.
- ``registry``: ``ModelRegistry``, all bundles and versions, swapped atomically on reload.
- ``codecs``: bytes <-> numpy (JSON, .npy, raw float32, Triton binary tensors) with the one
  validation layer every body passes (shapes, names, integers, finiteness, input ranges).
- ``oip``: Open Inference Protocol (KServe V2) types.
- ``schemas``: the product API's request and response models.
- ``metrics``: every Prometheus metric of contract 4 and the sliding windows.
- ``batching``: the optional micro-batcher.
- ``scoring``: the data plane shared by ``/score`` and ``/v2``.
- ``memory``: glibc malloc settings, the in-flight body budget, trimming after bursts.
- ``api.*``: one router per concern (score, oip, models, metrics, admin), ``api.deps``,
  ``api.exchange`` (the hot routes on ASGI) and ``api.docs`` (offline docs pages).
- ``app``: ``create_app(settings)``.
- ``http_protocol``: uvicorn's httptools protocol writing each response in one system call.
- ``server``: ``serve(settings, host=..., port=...)``, the one place the server is assembled.
"""

__version__ = "0.1.0"
