"""Build the network of a ``RunConfig`` and fit its preprocessing: the one place that maps
``ModelConfig`` (family, architecture, preprocessing) onto the modules of this package.

``build_model`` gives an unfitted network (preprocessing at identity, fresh weights from
torch's global generator); a checkpoint's state dict fills it in, so building and loading
never need the training data.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from training.config import DataConfig, RunConfig
from training.models.autoencoder import Autoencoder
from training.models.conv import ConvDecoder, ConvEncoder
from training.models.dense import DenseDecoder, DenseEncoder, image_input_scale
from training.models.pca import PCA
from training.models.preprocessing import (
    EventScaling,
    ImageReweighting,
    QuantileToNormal,
    Standardise,
)
from training.models.vae import VariationalAutoencoder

__all__ = ["Model", "build_model", "fit_preprocessing", "input_shape"]

Model = Autoencoder | VariationalAutoencoder | PCA
EVENT_ROWS, EVENT_COLUMNS = 19, 3  # ADC2021 rows; pT, eta, phi
IMAGE_PIXELS = 40


def input_shape(data: DataConfig) -> tuple[int, ...]:
    """The raw input shape without the batch axis: (40, 40), (k,) or (19, 3)."""
    return {
        "images": (IMAGE_PIXELS, IMAGE_PIXELS),
        "features": (len(data.features),),
        "events": (EVENT_ROWS, EVENT_COLUMNS),
    }[data.input]


def build_model(config: RunConfig) -> Model:
    """The network ``config.model`` describes, for ``config.data``'s input, unfitted."""
    model, kind = config.model, config.data.input
    shape = input_shape(config.data)
    pooled = model.architecture == "conv20"
    u_shape = (IMAGE_PIXELS // 2,) * 2 if pooled else shape
    preprocessing = _preprocessing(config, shape, pooled)
    masked = kind == "events"
    if model.family == "pca":
        return PCA(
            preprocessing,
            input_shape=shape,
            u_shape=u_shape,
            n_components=model.latent_dim,
            masked=masked,
        )
    n_codes = 2 * model.latent_dim if model.family == "vae" else model.latent_dim
    options = {"activation": model.activation, "spectral_norm": model.spectral_norm}
    if model.architecture == "dense":
        scale = image_input_scale(math.prod(u_shape)) if kind == "images" else 1.0
        encoder = DenseEncoder(u_shape, model.hidden, n_codes, input_scale=scale, **options)
        decoder = DenseDecoder(
            u_shape, model.hidden, model.latent_dim, sigmoid=kind == "images", **options
        )
    else:
        encoder = ConvEncoder(n_codes, pooled=pooled, **options)
        decoder = ConvDecoder(model.latent_dim, pooled=pooled, **options)
    if model.family == "vae":
        return VariationalAutoencoder(
            preprocessing,
            encoder,
            decoder,
            input_shape=shape,
            latent_dim=model.latent_dim,
            masked=masked,
            score=model.vae_score,
        )
    return Autoencoder(
        preprocessing,
        encoder,
        decoder,
        input_shape=shape,
        latent_dim=model.latent_dim,
        spherical=model.spherical,
        masked=masked,
        domain=_domain(kind, u_shape),
    )


def fit_preprocessing(model: Model, x: np.ndarray) -> Model:
    """Fit ``model``'s preprocessing on raw training inputs ``x`` (N, *input_shape)."""
    if hasattr(model.preprocessing, "fit"):
        model.preprocessing.fit(x)
    return model


def _preprocessing(config: RunConfig, shape: tuple[int, ...], pooled: bool) -> nn.Module:
    choice = config.model.preprocessing
    if config.data.input == "images":
        return ImageReweighting(
            pt_power=config.model.pt_power, pool=pooled, smoothing=config.model.image_smoothing
        )
    if choice == "standardise":
        return Standardise(shape[0])
    if choice == "quantile":
        return QuantileToNormal(shape[0], config.model.n_quantiles)
    if choice == "event_scaling":
        return EventScaling(shape[0], frame=config.model.event_frame)
    return nn.Identity()


def _domain(kind: str, u_shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds of the preprocessed input: pixels in [0, 1] (the decoder's sigmoid range), event
    pT >= 0 (0 is an empty slot), features unbounded (the sampler's box applies)."""
    low = torch.full(u_shape, -math.inf)
    high = torch.full(u_shape, math.inf)
    if kind == "images":
        low.fill_(0.0)
        high.fill_(1.0)
    elif kind == "events":
        low[:, 0] = 0.0
    return low, high
