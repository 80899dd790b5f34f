"""nae-trigger training package: data -> train -> export.

Modules, in the order data flows (a module imports only modules listed before it):

- ``errors``: ``NaeError`` and its subclasses, translated once by the CLI.
- ``config``: frozen pydantic configuration (data generation, detector, training).
- ``data.particles``: the particle record (``Particles``) and the one pseudorapidity and phi wrap.
- ``data.pythia``: Pythia 8 process cards and the event loop -> particle arrays.
- ``data.veto``: the in-evolution veto of hopeless jet events (a Pythia ``UserHooks``).
- ``data.detector``: tracker and calorimeter response on particle arrays.
- ``data.images``: 40x40 jet images from constituents (numpy only).
- ``data.jets``: FastJet clustering, constituents, substructure features; stores images.
- ``data.events``: the 19x3 (+ class id) trigger format of ADC2021 from particles.
- ``data.zgamma``: the Z-gamma sample's 18 per-event features (a feature-table shard).
- ``data.shards``: the only reader/writer of the HDF5 shard layout (docs/contracts.md,
  contract 1b), and a sample's content hash.
- ``data.generation``: sharded, resumable generation in processes, on Dask, or one slice.
- ``data.convert``: public files (top-tagging landscape, ADC2021) -> shards.
- ``data.report``: efficiencies, cross sections and overlaid histograms of shard directories.
- ``data.inputs``: the input array of each bundle kind from shards, ``.npy`` or public files.
- ``data.loaders``: shards -> torch tensors with a seeded train/validation split.
- ``losses``: reconstruction energies, the NAE losses (torch only, so models may use them).
- ``models.preprocessing``: in-graph standardise, quantile-to-normal, event scaling, pT^n.
- ``models.dense``, ``models.conv``: encoders and decoders (arXiv:2206.14225's CNN).
- ``models.autoencoder``, ``models.vae``, ``models.pca``: the AE/NAE, VAE and PCA families.
- ``models.families``: ``build_model(RunConfig)``, the one map from config to network.
- ``models.generators``: the VAE family as generators of feature tables (codec, TableVAE,
  RealNVP and copula priors, discriminator; ``build_generator``).
- ``sampling``: Langevin chains, Metropolis-Hastings, replay buffer, on-manifold/PCD/CD.
- ``metrics``: AUC, 1/eps_B at eps_S, TPR at FPR with uncertainties; exact EMD (numpy/scipy).
- ``checkpoint``: self-describing checkpoints with RNG states; save, load, resume.
- ``train``: ``train(config, run_dir)``: AE pre-training, NAE phase, EMD/validation selection.
- ``generator_training``: ``train_generator(config, run_dir)`` for the VAE family.
- ``synthesis``: ``nae generate``: a generator's events into shards, and its speed.
- ``fidelity``: KS, W1 and Spearman distances of generated to simulated events, bootstrapped.
- ``calibration``: thresholds at target background efficiencies, Clopper-Pearson intervals,
  rates in Hz (numpy/scipy).
- ``evaluate``: a run's checkpoints on background and signals -> metrics JSON; ``plots``: PNGs.
- ``generator_evaluation``: a generator run's fidelity, speed and scores; ``fidelity_plots``.
- ``export``: torch -> ONNX bundles: parity, int8 and its gate, calibration, provenance.
- ``bundles``: ``nae bundle verify`` / ``score`` through the service's loader and runtime.
- ``cards``: ``nae bundle card`` / ``cards``: a bundle's model card from its provenance, gates
  and the run's metrics.
- ``cli``: the ``nae`` command line; imports everything above lazily.

Nothing heavy is imported here: ``nae serve`` must start without torch, Pythia or FastJet.
"""

__version__ = "0.1.0"
