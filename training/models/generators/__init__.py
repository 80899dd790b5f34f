"""The VAE family as generators and scorers of feature tables (issue 11: Z-gamma events).

Six families are named configurations of one network, because they differ in exactly one of
three parts each, and one home per part keeps every formula in one place:

- ``codec``: the in-graph feature codec: continuous features quantile-transformed to a normal
  (or standardised), discrete ones (jet counts) as categories; its inverse turns generated
  values back into physics quantities, with integer counts.
- ``vae``: ``TableVAE``, encoder -> latent -> decoder (a Gaussian per continuous feature, a
  categorical per discrete one), the Gaussian prior (family ``vae``, beta-weighted KL), the
  conditional variant (``cvae_d``: conditioned on the discrete features), generation and the
  anomaly scores.
- ``flow``: a RealNVP normalising flow as the latent prior (``vae_nf``, ``vae_nf_d``).
- ``copula``: a Gaussian-copula prior with learned monotone marginal CDFs (``copula_vae``).
- ``discriminator``: the discriminator on real, reconstructed and generated events
  (``vae_d``, ``vae_nf_d``, ``cvae_d``; Larsen et al. arXiv:1512.09300).
- ``families``: ``build_generator(GeneratorRunConfig)``, the one map from family to parts.
"""
