"""nae-trigger scoring service: FastAPI + ONNX Runtime, no torch.

Modules (a module imports only modules listed before it; calls flow from HTTP down to the runtime):

- ``settings``: ``Settings`` from ``NAE_*`` environment variables.
- ``bundle``: the bundle schema (DESIGN.md contract 2) and ``load_bundle`` with hash checks.
- ``errors``: ``ServiceError`` and its 4xx subclasses.
- ``runtime``: ``OnnxModel``, one ONNX Runtime session.
- ``registry``: ``ModelRegistry``, all bundles and versions, swapped atomically on reload.
- ``codecs``: bytes <-> numpy (JSON, .npy, raw float32, Triton binary tensors) with validation.
- ``oip``: Open Inference Protocol (KServe V2) types.
- ``schemas``: the product API's request and response models.
- ``metrics``: every Prometheus metric of contract 4 and the sliding windows.
- ``batching``: the optional micro-batcher.
- ``scoring``: the data plane shared by ``/score`` and ``/v2``.
- ``api.*``: one router per concern (score, oip, models, metrics, admin) and ``api.deps``.
- ``app``: ``create_app(settings)``.
"""

__version__ = "0.1.0"
