"""Service configuration: one ``Settings`` object read from ``NAE_*`` environment variables.

It is built once (by ``nae serve`` or a test calling ``Settings(models_dir=tmp_path)``) and passed
down to ``create_app``; nothing reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PositiveInt, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.bundle import REFERENCE_RATE_HZ, ModelChoice  # the bundle contract's; no cycle

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Everything an operator may tune, one ``NAE_<FIELD>`` environment variable each."""

    model_config = SettingsConfigDict(
        env_prefix="NAE_", frozen=True, use_attribute_docstrings=True, extra="ignore"
    )

    models_dir: Path = Path("models")
    """Directory of bundles, laid out as ``<name>/<version>/bundle.json``; may be empty."""

    default_model: str | None = None
    """Bundle name used when a request names none; unset means "the only loaded name"."""

    reference_rate_hz: float = Field(REFERENCE_RATE_HZ, gt=0)
    """Input event rate [Hz] this deployment sees; ``nae_trigger_rate_hz`` = fraction x this."""

    max_body_bytes: PositiveInt = 64 * 1024 * 1024
    """Largest request body accepted; larger bodies get 413 before they are read."""

    max_inflight_bytes: PositiveInt = 128 * 1024 * 1024
    """Most bytes of request bodies held at once across all connections of a worker; a body
    that would pass it gets 503 with ``Retry-After`` before it is read. Decoding a JSON body
    takes up to ~7 times its size on top; a binary body is read without a copy."""

    strict_readiness: bool = True
    """``/v2/health/ready`` (and the image's health check) answers 200 only when the models
    directory exists, at least one bundle is loaded and none was refused at the last load
    (Triton's ``--strict-readiness``). False: ready once the directory has been read."""

    max_batch_size: PositiveInt = 65_536
    """Most events one request may carry."""

    ort_intra_op_threads: PositiveInt = 1
    """ONNX Runtime intra-op threads per session (1: one worker per core scales best)."""

    model_file: ModelChoice = "recommended"
    """Which ONNX file of each bundle to serve: ``recommended`` (the bundle's own choice: fp32
    unless its int8 passed the export's gate and is faster), ``model.onnx`` (fp32 always) or
    ``model.int8.onnx`` (int8 where the bundle ships it, fp32 elsewhere)."""

    inference_threads: PositiveInt = 1
    """Threads that run ONNX Runtime off the event loop. With 1, one worker is an event loop
    plus one inference at a time: a pool of threads running several inferences at once
    starved the event loop here (1,000-event requests at 8 clients: 1,307-1,402 requests/s
    with anyio's pool, 1,643-1,657 with 2 threads, 1,736-1,902 with 1)."""

    inline_max_events: int = Field(256, ge=0)
    """Requests up to this many events run ONNX Runtime on the event loop: for tiny batches the
    thread hop (~80 us here) costs more than the inference. Larger ones go to the inference
    thread while other scoring requests are in flight, so that their bodies are read while
    this one is scored; alone, a request runs inline too, as there is nothing to overlap with."""

    trigger_window_seconds: float = Field(60.0, gt=0)
    """Sliding window of the ``nae_trigger_fraction`` and ``nae_trigger_rate_hz`` gauges [s]."""

    admin_token: SecretStr | None = None
    """Bearer token for ``POST /admin/reload``; unset disables the admin endpoints (403)."""

    batching_enabled: bool = False
    """Merge concurrent requests for the same bundle into one ONNX Runtime call."""

    batching_max_batch_size: PositiveInt = 512
    """Most events one merged ONNX Runtime call carries."""

    batching_max_queue_delay_us: int = Field(500, ge=0)
    """Longest a request waits for others to join its batch [microseconds]."""

    corked_writes: bool = True
    """Write each response in one system call (``service.http_protocol``, a subclass of a
    uvicorn internal); false runs uvicorn's own httptools protocol."""

    @model_validator(mode="after")
    def _one_body_fits_in_flight(self) -> Settings:
        if self.max_inflight_bytes < self.max_body_bytes:
            raise ValueError(
                f"max_inflight_bytes ({self.max_inflight_bytes}) must be at least "
                f"max_body_bytes ({self.max_body_bytes}), or the largest body is never read"
            )
        return self
