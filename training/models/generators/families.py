"""``build_generator(config)``: the one map from a generator family to its parts.

| family | prior | discriminator | conditional |
|---|---|---|---|
| ``vae`` | N(0, I) | | |
| ``vae_d`` | N(0, I) | yes | |
| ``vae_nf`` | RealNVP | | |
| ``vae_nf_d`` | RealNVP | yes | |
| ``copula_vae`` | Gaussian copula, learned marginals | | |
| ``cvae_d`` | N(0, I) | yes | on the discrete features |

Built unfitted (codec at identity, fresh weights from torch's global generator); a
checkpoint's state dict fills it in.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from training.config import GeneratorRunConfig
from training.data.zgamma import derive_features
from training.models.generators.codec import FeatureCodec
from training.models.generators.copula import GaussianCopulaPrior
from training.models.generators.flow import FlowPrior
from training.models.generators.vae import GaussianPrior, TableVAE

__all__ = ["ADVERSARIAL_FAMILIES", "build_generator"]

ADVERSARIAL_FAMILIES = frozenset({"vae_d", "vae_nf_d", "cvae_d"})


def build_generator(config: GeneratorRunConfig) -> TableVAE:
    """The network of ``config.model`` for ``config.data``'s features, unfitted."""
    model, data = config.model, config.data
    discrete = [data.features.index(name) for name in data.discrete]
    derived = [data.features.index(name) for name in data.derived]
    derive = (
        partial(derive_features, features=data.features, derived=data.derived) if derived else None
    )
    codec = FeatureCodec(
        len(data.features),
        discrete,
        preprocessing=model.preprocessing,
        n_quantiles=model.n_quantiles,
        n_categories=model.max_categories,
        derived=derived,
        derive=derive,
        relative=[
            (data.features.index(angle), data.features.index(reference))
            for angle, reference in data.relative_phi.items()
        ],
        uniform=data.features.index(data.uniform_phi) if data.uniform_phi else None,
        cartesian=[
            (data.features.index(angle), data.features.index(magnitude))
            for angle, magnitude in data.cartesian.items()
        ],
        reflect=data.features.index(data.reflect) if data.reflect else None,
    )
    return TableVAE(
        codec,
        _prior(config),
        latent_dim=model.latent_dim,
        hidden=model.hidden,
        activation=model.activation,
        conditional=model.family == "cvae_d",
        discriminator_hidden=(
            model.discriminator_hidden if model.family in ADVERSARIAL_FAMILIES else None
        ),
        score=model.score,
    )


def _prior(config: GeneratorRunConfig) -> nn.Module:
    model = config.model
    if model.family in ("vae_nf", "vae_nf_d"):
        return FlowPrior(model.latent_dim, n_layers=model.flow_layers, hidden=model.flow_hidden)
    if model.family == "copula_vae":
        return GaussianCopulaPrior(model.latent_dim, n_components=model.copula_components)
    return GaussianPrior(model.latent_dim)
