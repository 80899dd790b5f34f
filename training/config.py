"""Typed configuration, in one place. Every model is frozen; defaults name their source.

Data generation: ``DetectorConfig``, ``ImageConfig``, ``JetVetoConfig``, ``JetSampleConfig``,
``EventSampleConfig``, ``ZgammaSampleConfig``.
Training: ``DataConfig``, ``ModelConfig``, ``LangevinConfig``, ``SamplerConfig``, ``LossConfig``,
``TrainConfig``, joined in ``RunConfig``; ``load_run_config`` reads a TOML recipe and applies
``--set`` overrides, ``config_to_toml`` writes one back.
Generators (the VAE family on feature tables, ``nae train`` / ``nae generate``):
``TableDataConfig``, ``GeneratorModelConfig``, ``GeneratorTrainConfig``, joined in
``GeneratorRunConfig``; ``load_config`` reads either kind of recipe.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from training.errors import NaeError, require

__all__ = [
    "JET_FEATURES",
    "ZGAMMA_DERIVED",
    "ZGAMMA_DISCRETE",
    "ZGAMMA_FEATURES",
    "DataConfig",
    "DetectorConfig",
    "EventProcess",
    "EventSampleConfig",
    "GeneratorModelConfig",
    "GeneratorRunConfig",
    "GeneratorTrainConfig",
    "ImageConfig",
    "JetProcess",
    "JetSampleConfig",
    "JetVetoConfig",
    "LangevinConfig",
    "LossConfig",
    "ModelConfig",
    "RunConfig",
    "SamplerConfig",
    "TableDataConfig",
    "TrainConfig",
    "ZgammaProcess",
    "ZgammaSampleConfig",
    "config_to_toml",
    "load_config",
    "load_run_config",
    "with_overrides",
]


# The jet shard layout (docs/contracts.md, contract 1b; training/data/shards.py checks every write).
SHARD_IMAGE_PIXELS = 40
SHARD_CONSTITUENTS = 200


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DetectorConfig(_Frozen):
    """A simple detector: tracker, ECAL and HCAL towers.

    Tracks follow the CMS Delphes card (delphes_card_CMS.tcl) in spirit: |eta| < 2.5, 95%
    efficient. The calorimeter granularity is that of the Delphes ATLAS card's HCAL, 0.1 x 10
    degrees (eta x phi), used for the ECAL too (as, to our knowledge, in that card before
    Delphes 3.4.2), with the ATLAS card's HCAL resolution (52%, 3%): close to the detector of
    the top-tagging landscape sample (arXiv:1902.09914). CMS-like 0.0174 ECAL and 0.087 HCAL
    towers gave a detector-level tau32 AUC of 0.946 (truth level 0.957), above the 0.75-0.92
    of Delphes-level studies; see docs/data.md, "Detector model". Calorimeters reach
    |eta| < 4.9. Resolutions are sigma/E = stochastic/sqrt(E) (+) constant (added in
    quadrature), tracks sigma(pT)/pT = constant (+) slope * pT.
    """

    track_eta_max: float = Field(2.5, description="tracker acceptance |eta|")
    track_pt_min_gev: float = Field(0.5, description="tracks below this pT are not reconstructed")
    track_efficiency: float = Field(0.95, ge=0.0, le=1.0, description="per-track efficiency")
    track_resolution_constant: float = Field(0.01, description="sigma(pT)/pT constant term")
    track_resolution_slope_per_gev: float = Field(1.5e-4, description="sigma(pT)/pT per GeV")
    calo_eta_max: float = Field(4.9, description="calorimeter acceptance |eta|")
    ecal_cell_eta: float = Field(0.1, description="ECAL tower size in eta")
    ecal_cell_phi: float = Field(0.1745, description="ECAL tower size in phi [rad] (10 deg)")
    hcal_cell_eta: float = Field(0.1, description="HCAL tower size in eta")
    hcal_cell_phi: float = Field(0.1745, description="HCAL tower size in phi [rad] (10 deg)")
    ecal_stochastic: float = Field(0.03, description="ECAL sigma/E stochastic term [sqrt(GeV)]")
    ecal_constant: float = Field(0.005, description="ECAL sigma/E constant term")
    hcal_stochastic: float = Field(0.52, description="HCAL sigma/E stochastic term [sqrt(GeV)]")
    hcal_constant: float = Field(0.03, description="HCAL sigma/E constant term")
    ecal_threshold_gev: float = Field(0.5, description="ECAL towers below this energy are dropped")
    hcal_threshold_gev: float = Field(1.0, description="HCAL towers below this energy are dropped")


class ImageConfig(_Frozen):
    """Jet images as in arXiv:2206.14225 (NAE for jets): 40 x 40 pixels over +-0.8 in eta, phi."""

    n_pixels: int = Field(SHARD_IMAGE_PIXELS, description="pixels per side")
    half_width: float = Field(0.8, description="image spans +-half_width in eta and phi")
    pt_power: float = Field(
        1.0, description="pixel intensity ~ pT^n; n < 1 softens the core (arXiv:2206.14225)"
    )


class JetVetoConfig(_Frozen):
    """The in-evolution veto (training/data/veto.py): when Pythia's interleaved MPI/ISR/FSR
    evolution passes ``scale_gev``, an event whose partons have no anti-kT ``radius`` jet with
    |eta| < ``eta_max`` above ``pt_fraction`` x the window's lower edge is dropped. The defaults
    lose fewer than 0.5% of window jets (95% upper limit) and are measured in docs/data.md,
    "The in-evolution veto" (benchmarks/veto.py)."""

    scale_gev: float = Field(50.0, gt=0.0, description="evolution pT at which the veto looks")
    radius: float = Field(1.0, gt=0.0, description="anti-kT R of the parton-level jets")
    eta_max: float = Field(2.5, gt=0.0, description="|eta| acceptance of those jets")
    pt_fraction: float = Field(
        0.8, ge=0.0, description="threshold / pt_min_gev: veto below this parton-level jet pT"
    )


JetProcess = Literal["qcd", "top", "dark"]
# Process defaults that differ from JetVetoConfig's (measured: docs/data.md, benchmarks/veto.py).
VETO_BY_PROCESS: dict[str, JetVetoConfig | None] = {
    "top": JetVetoConfig(pt_fraction=0.9),
    "dark": None,
}
EventProcess = Literal[
    "w", "z", "tt", "sm", "qcd", "zprime_mumu", "a_4l", "h_tautau", "hplus_taunu"
]


class JetSampleConfig(_Frozen):
    """One jet sample: the top-tagging landscape selection (arXiv:1902.09914, section 2)."""

    process: JetProcess
    detector: DetectorConfig | None = Field(
        default_factory=DetectorConfig, description="None gives truth-level jets"
    )
    image: ImageConfig = Field(default_factory=ImageConfig)
    jet_radius: float = Field(0.8, description="anti-kT R")
    pt_min_gev: float = Field(550.0, description="leading-jet pT window, lower edge")
    pt_max_gev: float = Field(650.0, description="leading-jet pT window, upper edge")
    eta_max: float = Field(2.0, description="leading-jet |eta| cut")
    n_constituents: int = Field(
        SHARD_CONSTITUENTS, description="constituents kept per jet (zero-padded)"
    )
    pthat_min_gev: float | None = Field(
        None,
        description="qcd, top: Pythia PhaseSpace:pTHatMin; None gives 0.55 x pt_min_gev, which "
        "does not sculpt the window (docs/data.md); higher is faster but loses jets",
    )
    veto: JetVetoConfig | None = Field(
        default_factory=JetVetoConfig,
        description="stop hopeless events inside Pythia's evolution; None turns it off "
        "(defaults per process: VETO_BY_PROCESS; dark: off, not measured)",
    )
    r_inv: float = Field(0.3, ge=0.0, le=1.0, description="dark: invisible fraction")
    dark_hadron_mass_gev: float = Field(10.0, description="dark: dark-meson mass")
    zprime_mass_gev: float = Field(1500.0, description="dark: Z' mass")

    @model_validator(mode="after")
    def _fits_the_shard_layout(self) -> JetSampleConfig:
        """Refuse at once what write_shard would refuse after all the Pythia work."""
        if self.image.n_pixels != SHARD_IMAGE_PIXELS:
            raise ValueError(
                f"image.n_pixels = {self.image.n_pixels}: jet shards hold "
                f"{SHARD_IMAGE_PIXELS} x {SHARD_IMAGE_PIXELS} images (docs/data.md, 'Storage'); "
                "make other images from the stored constituents (images_from_constituents)"
            )
        if self.n_constituents != SHARD_CONSTITUENTS:
            raise ValueError(
                f"n_constituents = {self.n_constituents}: jet shards hold "
                f"{SHARD_CONSTITUENTS} constituents per jet (the top-tagging landscape layout)"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _process_default_veto(cls, data: Any) -> Any:
        """Each process's measured veto (docs/data.md, "The in-evolution veto"): top's
        parton-level jets sit higher than QCD's, so its threshold can be higher; dark is not
        measured and runs without. An explicit value still wins."""
        if isinstance(data, dict) and data.get("process") in VETO_BY_PROCESS:
            return {"veto": VETO_BY_PROCESS[data["process"]], **data}
        return data


class EventSampleConfig(_Frozen):
    """One event sample in the ADC2021 19-row trigger format (arXiv:2107.02157)."""

    process: EventProcess
    detector: DetectorConfig | None = Field(
        default_factory=DetectorConfig, description="None gives truth-level objects"
    )
    lepton_filter_pt_gev: float | None = Field(
        23.0,
        description="keep events with a lepton above this pT; None turns the filter off. "
        "Default None for qcd, whose filter efficiency (~1e-4) is out of reach by brute force",
    )
    jet_radius: float = Field(0.4, description="anti-kT R for event jets")
    jet_pt_min_gev: float = Field(15.0, description="jets below this pT are not stored")
    jet_eta_max: float = Field(4.0, description="jet |eta| acceptance")
    electron_pt_min_gev: float = Field(3.0)
    muon_pt_min_gev: float = Field(3.0)
    lepton_eta_max: float = Field(2.5)
    isolation_cone: float = Field(0.3, description="isolation cone radius")
    isolation_max: float = Field(0.45, description="max sum pT in cone / lepton pT")
    zprime_mass_gev: float = Field(
        50.0, gt=0.0, description="zprime_mumu: Z' mass (ADC2021, arXiv:2107.02157)"
    )

    @model_validator(mode="before")
    @classmethod
    def _qcd_unfiltered_by_default(cls, data: Any) -> Any:
        """QCD is offered unfiltered (docs/data.md); an explicit filter value still wins."""
        if isinstance(data, dict) and data.get("process") == "qcd":
            return {"lepton_filter_pt_gev": None, **data}
        return data


ZgammaProcess = Literal["zgamma", "h_zgamma"]
# The 18 per-event features of the Z-gamma study (Stevenson, "The assessment of different VAE
# derivatives ... in Z-gamma final state background data", 2022), in the order stored and
# modelled: the Z-gamma system, the dilepton system, MET, jet counts and angles.
ZGAMMA_FEATURES: tuple[str, ...] = (
    "m_llg",
    "pt_llg",
    "eta_llg",
    "phi_llg",
    "e_llg",
    "pt_ll",
    "eta_ll",
    "phi_ll",
    "e_ll",
    "m_ll",
    "dr_ll",
    "met",
    "met_phi",
    "n_jets",
    "n_central_jets",
    "dphi_ll",
    "dphi_met_llg",
    "pt_ll_over_m_llg",
)
ZGAMMA_DISCRETE: tuple[str, ...] = ("n_jets", "n_central_jets")  # integer counts
# Exact functions of other features (training.data.zgamma.IDENTITIES), which the study's
# generators compute instead of drawing them (data.derived in the zgamma-* recipes).
ZGAMMA_DERIVED: tuple[str, ...] = ("e_llg", "e_ll", "pt_ll_over_m_llg", "dphi_met_llg")


class ZgammaSampleConfig(_Frozen):
    """One Z-gamma sample (``nae data zgamma``): two isolated opposite-sign same-flavour leptons
    (ee or mumu) and an isolated photon, stored as the 18 ``ZGAMMA_FEATURES``.

    ``zgamma``: Pythia's ``WeakBosonAndParton:ffbar2gmZgm`` (f fbar -> gamma*/Z gamma) with
    gamma*/Z -> ee, mumu. ``h_zgamma``: a heavy neutral scalar -> Z gamma (Pythia's SM-like
    h0, PDG 25, re-massed, its decay table reduced to the gamma Z0 channel, width forced).
    Selection cuts follow the ATLAS/CMS Z-gamma analyses in spirit (leading/subleading lepton
    pT, photon pT, Delta R(l, gamma) > 0.4); isolation as for the event format's leptons.
    """

    process: ZgammaProcess
    detector: DetectorConfig | None = Field(
        default_factory=DetectorConfig, description="None gives truth-level objects"
    )
    electrons_in_ecal: bool = Field(
        True,
        description="measure tracked electrons' energy with the ECAL resolution (their "
        "direction from the track), as electron reconstruction does; False: the track's pT",
    )
    pthat_min_gev: float = Field(
        15.0,
        gt=0.0,
        description="zgamma: PhaseSpace:pTHatMin, the photon pT at leading order; below "
        "photon_pt_min_gev so ISR recoil does not sculpt the photon spectrum at the cut",
    )
    z_mass_min_gev: float = Field(
        40.0, gt=0.0, description="23:mMin: gamma*/Z mass floor (as the z events' mHat > 40)"
    )
    scalar_mass_gev: float = Field(300.0, gt=91.2, description="h_zgamma: scalar mass")
    scalar_width_gev: float = Field(
        1.0,
        gt=0.0,
        description="h_zgamma: forced width (narrow against the ~1.5% m_llg resolution; an "
        "SM-like h0 of this mass would be several GeV wide)",
    )
    lepton_pt_min_gev: tuple[float, float] = Field(
        (25.0, 15.0), description="leading, subleading lepton pT of the pair"
    )
    lepton_eta_max: float = Field(2.5, description="lepton |eta| (tracker acceptance)")
    photon_pt_min_gev: float = Field(20.0, description="photon pT")
    photon_eta_max: float = Field(
        2.5, description="photon |eta| (inside the tracker, so its isolation sees tracks)"
    )
    photon_lepton_dr_min: float = Field(
        0.4, ge=0.0, description="photon kept only Delta R > this from both leptons (removes FSR)"
    )
    isolation_cone: float = Field(0.3, description="isolation cone radius (as for leptons)")
    isolation_max: float = Field(0.45, description="max sum pT in cone / object pT")
    jet_radius: float = Field(0.4, description="anti-kT R for jets")
    jet_pt_min_gev: float = Field(30.0, description="jets counted above this pT")
    jet_eta_max: float = Field(4.5, description="jets counted within this |eta|")
    central_jet_eta_max: float = Field(2.5, description="central jets: within this |eta|")

    @model_validator(mode="after")
    def _ordered_lepton_cuts(self) -> ZgammaSampleConfig:
        leading, subleading = self.lepton_pt_min_gev
        if subleading > leading:
            raise ValueError(
                f"lepton_pt_min_gev = {list(self.lepton_pt_min_gev)}: give (leading, "
                "subleading) with leading >= subleading"
            )
        return self


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def with_overrides(config: ConfigT, assignments: Sequence[str]) -> ConfigT:
    """``config`` with ``--set key.sub=value`` assignments applied, validated again.

    Values arrive as strings and pydantic converts them to each field's type, so
    ``detector.hcal_cell_eta=0.1`` works and ``detector.hcal_cell_eta=big`` is refused with a
    message that names the key. A value in brackets is a TOML array: ``model.hidden=[64, 32]``.
    """
    data = config.model_dump()
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        *sections, leaf = key.strip().split(".")
        node = data
        for section in sections:
            node = node.get(section) if isinstance(node, dict) else None
        if not sep or not isinstance(node, dict) or leaf not in node:
            known = sorted(node) if isinstance(node, dict) else "a section such as detector"
            raise NaeError(f"--set {assignment!r}: expected key=value with key in {known}")
        node[leaf] = _override_value(assignment, value.strip())
    try:
        return type(config).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or " ".join(assignments)
        raise NaeError(f"--set {where}: {first['msg'].removeprefix('Value error, ')}") from None


# ---------------------------------------------------------------------------------------------
# Training: what ``nae train CONFIG`` reads. Recipes live in training/configs/*.toml.

InputKind = Literal["images", "features", "events"]
ModelFamily = Literal["ae", "nae", "vae", "pca"]
Architecture = Literal["dense", "conv", "conv20"]
Preprocessing = Literal["none", "standardise", "quantile", "event_scaling"]
EventFrame = Literal["lab", "leading_lepton"]
Activation = Literal["prelu", "relu", "leaky_relu", "silu"]
SamplingMode = Literal["on_manifold", "pcd", "cd"]
NaeSelection = Literal["emd", "energy_balance"]
InitialDistribution = Literal["gaussian", "uniform"]
NaeLoss = Literal["nae", "logcosh"]
VaeScore = Literal["reconstruction", "kl", "mu2"]
Optimizer = Literal["adam", "adamw"]

# Eight features of docs/data.md covering mass, prong structure and radiation pattern; our
# pick for the CMS-study-like dense NAE (its 8-10-10-6-10-10-8 network takes eight).
JET_FEATURES: tuple[str, ...] = (
    "msd",
    "tau21",
    "tau32",
    "c2_b1",
    "d2_b1",
    "ptd",
    "major_axis",
    "minor_axis",
)
_CONFIGS_DIR = Path(__file__).parent / "configs"


class DataConfig(_Frozen):
    """Which shards a run trains on, which of their datasets is the input, and the split.

    ``input``: ``images`` (N, 40, 40) unit sum; ``features`` (N, k), the named
    ``features/<name>`` datasets in ``features`` order; ``events`` (N, 19, 3), the pT [GeV], eta,
    phi columns of ``particles`` (the class id is implied by the row). ``background`` and
    ``signals`` are the test samples ``nae evaluate`` uses when none are given on its command
    line (the layout of docs/data.md, "Training samples").
    """

    input: InputKind = Field(description="images | features | events")
    train: tuple[str, ...] = Field(min_length=1, description="shard directories to train on")
    features: tuple[str, ...] = Field(
        JET_FEATURES, min_length=1, description="input = features: dataset names, in order"
    )
    validation_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="held out for AE model selection (common practice)"
    )
    max_events: int = Field(0, ge=0, description="use the first N rows only; 0: all")
    split_seed: int = Field(1, ge=0, description="seed of the train/validation permutation")
    background: str = Field("", description="test background directory for nae evaluate")
    signals: dict[str, str] = Field(
        default_factory=dict, description="test signal name -> directory for nae evaluate"
    )


class ModelConfig(_Frozen):
    """The network and the preprocessing it carries in its graph.

    ``architecture``: ``dense`` (widths ``hidden``, mirrored decoder; any input, flattened);
    ``conv``: the CNN of arXiv:2206.14225 on 40 x 40 images; ``conv20``: the same CNN on the image
    sum-pooled to 20 x 20 inside the model (no max-pool, no upsampling: several times cheaper).
    Defaults are the CMS semi-visible-jet NAE's dense 8-10-10-6-10-10-8 network (issue 8, item 1).
    """

    family: ModelFamily = Field(description="ae | nae | vae | pca")
    architecture: Architecture = Field("dense", description="dense | conv | conv20")
    hidden: tuple[int, ...] = Field(
        (10, 10), description="dense encoder widths; decoder mirrors them (CMS study: 10, 10)"
    )
    latent_dim: int = Field(
        6, ge=1, description="latent size (CMS study 6; arXiv:2206.14225 CNN 3); PCA components"
    )
    spherical: bool = Field(
        False, description="L2-normalise the latent onto the sphere (arXiv:2206.14225: on)"
    )
    spectral_norm: bool = Field(
        False, description="spectral normalisation of hidden layers (arXiv:2206.14225 config: on)"
    )
    activation: Activation = Field("prelu", description="hidden activation (arXiv:2206.14225)")
    preprocessing: Preprocessing = Field(
        "standardise",
        description="features: standardise | quantile (to a normal, the CMS study); events: "
        "event_scaling; images: none",
    )
    event_frame: EventFrame = Field(
        "lab",
        description="events: lab (phi, eta as stored) | leading_lepton (phi relative to the "
        "leading lepton, eta flipped to its hemisphere: the azimuthal and z -> -z symmetries)",
    )
    n_quantiles: int = Field(
        1000, ge=2, description="quantile preprocessing: stored quantiles (sklearn's default)"
    )
    pt_power: float = Field(
        1.0, gt=0.0, description="images: pixel -> pixel^n, renormalised (arXiv:2206.14225)"
    )
    image_smoothing: float = Field(
        0.0,
        ge=0.0,
        description="images: Gaussian filter sigma in pixels, 0 = off (the GaussianFilter "
        "augmentation of arXiv:2206.14225's code, heidelberg-hepml/normalized-autoencoders)",
    )
    vae_score: VaeScore = Field(
        "mu2", description="vae: score forward returns (mu2: the CMS AXOL1TL trigger's)"
    )


class LangevinConfig(_Frozen):
    """One Langevin chain: x <- clamp(x - step_size/T * clip(grad E) + noise_std_t * xi).

    ``noise_anneal`` gives noise_std_t = noise_std / (1 + t) at step t (Yoon et al.,
    arXiv:2105.05735, code). ``grad_clip`` limits each sample's gradient L2 norm (0: off).
    ``metropolis`` accepts each step with the Metropolis-Hastings probability of the proposal
    actually made (MALA), so the chain targets exp(-E/T) for any step size and noise.
    """

    steps: int = Field(10, ge=0, description="chain length (measured here, docs/results.md)")
    step_size: float = Field(1.0, ge=0.0, description="drift coefficient")
    noise_std: float = Field(0.01, ge=0.0, description="noise standard deviation")
    noise_anneal: bool = Field(False, description="noise_std / (1 + t)")
    temperature: float = Field(1.0, gt=0.0, description="T of exp(-E/T)")
    grad_clip: float = Field(0.0, ge=0.0, description="per-sample gradient norm limit; 0: off")
    metropolis: bool = Field(False, description="Metropolis-Hastings correction")


class SamplerConfig(_Frozen):
    """How the NAE draws negative samples.

    ``on_manifold`` (Yoon et al. arXiv:2105.05735): a latent chain from the replay buffer (or a
    fresh point) is decoded and refined by an input chain. ``pcd``: persistent input-space
    chains from the buffer (or fresh points in ``box``), the CMS study's choice. ``cd``: input
    chains started at the positive batch. Input chains stay inside the model's domain (pixels
    in [0, 1], event pT >= 0) intersected with ``box`` (standardised features: [-3, 3]), or,
    with ``input_total``, on the simplex of non-negative inputs with that sum: a unit-sum image
    chain that may leave the simplex wanders to bright, diffuse images no jet makes
    (docs/results.md, sessions 16-17).
    """

    mode: SamplingMode = Field("on_manifold", description="on_manifold | pcd | cd")
    latent: LangevinConfig = Field(
        default_factory=LangevinConfig, description="the latent chain (on_manifold only)"
    )
    input: LangevinConfig = Field(default_factory=LangevinConfig, description="the input chain")
    n_negatives: int = Field(
        128, ge=1, description="negative samples per iteration (measured here, docs/results.md)"
    )
    buffer_size: int = Field(10_000, ge=1, description="replay buffer (arXiv:2206.14225 config)")
    replay_ratio: float = Field(
        0.95, ge=0.0, le=1.0, description="chains restarted from the buffer (arXiv:2206.14225)"
    )
    initial: InitialDistribution = Field(
        "gaussian",
        description="fresh chain starts: gaussian (projected on spherical latents) "
        "or uniform in the box (arXiv:2206.14225 config: gaussian)",
    )
    box: tuple[float, float] = Field(
        (-math.inf, math.inf), description="input-chain bounds (CMS wnae example: [-3, 3])"
    )
    chunk_size: int = Field(
        256, ge=1, description="chains run this many samples at a time (measured here)"
    )
    snap_empty_slots: bool = Field(
        False,
        description="events: an input-chain slot whose scaled pT falls below the smallest of "
        "its row in the training data becomes empty, as every reconstructed object passes a "
        "pT threshold (docs/results.md, session 19)",
    )
    input_total: float | None = Field(
        None,
        gt=0.0,
        description="project every input-chain state onto the non-negative inputs summing to "
        "this (1.0: unit-sum jet images, whose pixels lie on a simplex) instead of clamping "
        "only; unset: clamp to the domain (arXiv:2206.14225)",
    )


class LossConfig(_Frozen):
    """``nae``: E+ - E- + gamma mean(E-^2) (arXiv:2206.14225, gamma = 1); ``logcosh``:
    log cosh(E+ - E-) + alpha E+ (the CMS semi-visible-jet study). Energies are batch means."""

    kind: NaeLoss = Field("nae", description="nae | logcosh")
    gamma: float = Field(1.0, ge=0.0, description="nae: weight of mean(E-^2) (arXiv:2206.14225)")
    alpha: float = Field(
        1.0, ge=0.0, description="logcosh: weight of E+ (CMS study form; 1 is not tuned here)"
    )
    negative_ratio: float | None = Field(
        None,
        gt=0.0,
        description="nae: gamma = 1 / (2 k E+) with k this ratio and E+ the batch's (detached), "
        "which holds E- near k E+ at any energy scale (images: E ~ 1e-6, where a fixed gamma "
        "needs tuning); unset: loss.gamma (arXiv:2206.14225)",
    )
    l2_weight: float = Field(
        1e-8, ge=0.0, description="weight-norm penalty (arXiv:2206.14225 config l2_norm_reg)"
    )
    kl_weight: float = Field(
        1.0,
        ge=0.0,
        description="vae: weight of the KL term against the energy, a mean over the D inputs; "
        "the ELBO of a unit-variance Gaussian decoder is 2 / D (a weight of 1 on 8 features "
        "collapsed the posterior here: docs/results.md)",
    )


class TrainConfig(_Frozen):
    """Optimisation: AE pre-training epochs (validation-loss selection), then NAE iterations
    (one positive batch and one set of negatives each; EMD selection every
    ``checkpoint_every``)."""

    ae_epochs: int = Field(100, ge=0, description="AE epochs (arXiv:2206.14225 config: 100)")
    ae_batch_size: int = Field(512, ge=1, description="AE batch (measured here)")
    ae_lr: float = Field(1e-3, gt=0.0, description="AE learning rate (arXiv:2206.14225)")
    nae_iterations: int = Field(0, ge=0, description="NAE iterations (nae family only)")
    nae_batch_size: int = Field(128, ge=1, description="positive batch per NAE iteration")
    nae_lr: float = Field(1e-5, gt=0.0, description="NAE learning rate (arXiv:2206.14225)")
    nae_lr_decay: Literal["cosine"] | None = Field(
        None,
        description="cosine: the NAE learning rate falls as cos to 0 at nae_iterations, so a run "
        "settles instead of drifting past its best state; unset: constant (arXiv:2206.14225)",
    )
    optimizer: Optimizer = Field("adam", description="adam (arXiv:2206.14225) | adamw (CMS)")
    checkpoint_every: int = Field(
        100, ge=1, description="NAE iterations between checkpoints, metrics and EMD"
    )
    emd_points: int = Field(
        256, ge=2, description="positive and negative samples in each EMD (exact, O(N^3))"
    )
    emd_tolerance: float = Field(
        2.0,
        ge=0.0,
        description="select the latest NAE checkpoint whose EMD is within this many standard "
        "errors of the lowest (0: the lowest itself); measured here: the EMD is flat within its "
        "noise while the NAE still improves (docs/results.md)",
    )
    selection: NaeSelection = Field(
        "emd",
        description="NAE checkpoint selection without signal labels: emd (the CMS study's "
        "stopping rule, with emd_tolerance) | energy_balance (the first checkpoint whose mean "
        "E- has reached its mean E+, the NAE's fixed point; else the last; on_manifold chains "
        "from a trained AE only: docs/results.md)",
    )
    divergence_factor: float = Field(
        100.0, gt=1.0, description="stop when E+ or E- exceed this x their value at NAE start"
    )
    threads: int = Field(1, ge=1, description="torch threads (1: measured best here)")
    seed: int = Field(1, ge=0, description="seed of weights, batches and chains")
    init_from: str | None = Field(
        None,
        description="a finished AE run directory whose selected AE starts the NAE stage in place "
        "of pre-training (nae family, train.ae_epochs = 0; same model and data sections)",
    )


class RunConfig(_Frozen):
    """One training run: everything ``train`` needs, saved with every checkpoint."""

    name: str = Field(min_length=1, description="recipe name, e.g. jets-qcd-image-nae")
    data: DataConfig = Field(description="what to train on")
    model: ModelConfig = Field(description="the network and its preprocessing")
    sampler: SamplerConfig = Field(default_factory=SamplerConfig, description="NAE negatives")
    loss: LossConfig = Field(default_factory=LossConfig, description="loss weights")
    train: TrainConfig = Field(default_factory=TrainConfig, description="optimisation")

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        """Refuse combinations that would fail (or silently mean nothing) later in the run."""
        kind, model = self.data.input, self.model
        allowed = {
            "images": ("none",),
            "features": ("standardise", "quantile", "none"),
            "events": ("event_scaling", "none"),
        }[kind]
        if model.preprocessing not in allowed:
            raise ValueError(
                f"model.preprocessing={model.preprocessing!r} does not apply to {kind}; "
                f"use one of {list(allowed)}"
            )
        if model.architecture != "dense" and kind != "images":
            raise ValueError(
                f"model.architecture={model.architecture!r} needs data.input='images'; "
                "use 'dense' for features and events"
            )
        if model.family == "pca" and model.architecture != "dense":
            raise ValueError("model.family='pca' takes model.architecture='dense'")
        if model.pt_power != 1.0 and kind != "images":
            raise ValueError("model.pt_power reweights images; leave it at 1 for " + kind)
        if self.sampler.snap_empty_slots and kind != "events":
            raise ValueError("sampler.snap_empty_slots applies to data.input='events' only")
        if model.family == "nae" and self.train.nae_iterations == 0:
            raise ValueError("model.family='nae' needs train.nae_iterations > 0")
        if self.train.selection == "energy_balance" and (
            self.sampler.mode != "on_manifold"
            or (self.train.ae_epochs == 0 and self.train.init_from is None)
        ):
            raise ValueError(
                "train.selection='energy_balance' needs on_manifold chains from a trained AE "
                "(PCD and CD negatives start far above the data, so E- >= E+ holds at once); "
                "use train.selection='emd'"
            )
        if self.train.init_from is not None:
            if model.family != "nae":
                raise ValueError("train.init_from starts an NAE stage; it needs model.family='nae'")
            if self.train.ae_epochs != 0:
                raise ValueError(
                    "train.init_from replaces AE pre-training: also set train.ae_epochs=0"
                )
        if model.family in ("ae", "vae") and self.train.ae_epochs == 0:
            raise ValueError(f"model.family={model.family!r} needs train.ae_epochs > 0")
        if model.spherical and model.family not in ("ae", "nae"):
            raise ValueError(f"model.spherical applies to ae and nae, not {model.family!r}")
        return self


# ---------------------------------------------------------------------------------------------
# Generators: the VAE family on feature tables (Z-gamma, issue 11). Recipes:
# training/configs/zgamma-*.toml, told apart from the models above by data.input = "table".

GeneratorFamily = Literal["vae", "vae_d", "vae_nf", "vae_nf_d", "copula_vae", "cvae_d"]
GeneratorScore = Literal["reconstruction", "kl", "mu2", "latent_nll", "discriminator"]
TablePreprocessing = Literal["quantile", "standardise"]
_ADVERSARIAL = ("vae_d", "vae_nf_d", "cvae_d")
_MAX_COMBINATIONS = 4096  # decoder outputs for the discrete features' joint categorical


class TableDataConfig(_Frozen):
    """Feature-table shards (``features/<name>`` per event) to train a generator on.

    ``discrete`` names the integer features (jet counts), which the model treats as
    categories. ``derived`` names features that are exact functions of others
    (``training.data.zgamma.IDENTITIES``): the generator computes them from its draws of
    their inputs instead of modelling them, and its scores ignore them. ``relative_phi``:
    azimuthal angles modelled as their wrapped difference to a reference angle;
    ``uniform_phi``: an angle (the reference) drawn uniform at generation instead of modelled,
    as the events' rotation symmetry says. ``cartesian``: an (angle, magnitude) pair, such as
    MET and its angle to the Z-gamma system, modelled as the 2-vector's components (after the
    ``relative_phi`` frame), so that a magnitude that depends on the direction is a shift of a
    component, which a Gaussian decoder can make, not a correlation of |angle| with the
    magnitude, which it loses. ``reflect``: a ``relative_phi`` angle whose sign is drawn at
    generation, the others' signs following it (the events are symmetric under negating every
    azimuth), so that the model sees its absolute value. ``inject`` /
    ``inject_fraction``: signal events from another sample mixed in so that they make up that
    fraction of the rows (a contaminated background, as real data would be), before the
    train/validation split, which then holds signal too, as data would."""

    input: Literal["table"] = Field(description="table: one row of named features per event")
    train: tuple[str, ...] = Field(min_length=1, description="shard directories to train on")
    features: tuple[str, ...] = Field(ZGAMMA_FEATURES, min_length=2, description="in order")
    discrete: tuple[str, ...] = Field(ZGAMMA_DISCRETE, description="integer-valued features")
    derived: tuple[str, ...] = Field(
        (), description="features computed from others, not modelled (recipes: ZGAMMA_DERIVED)"
    )
    relative_phi: dict[str, str] = Field(
        default_factory=dict,
        description="angle -> reference angle: modelled as their wrapped difference",
    )
    uniform_phi: str = Field(
        "", description="an angle drawn uniform at generation, not modelled (rotation symmetry)"
    )
    cartesian: dict[str, str] = Field(
        default_factory=dict,
        description="angle -> magnitude: the pair modelled as the 2-vector (m cos, m sin)",
    )
    reflect: str = Field(
        "", description="a relative angle whose sign is drawn at generation (reflection symmetry)"
    )
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="held out per epoch")
    max_events: int = Field(0, ge=0, description="use the first N rows only; 0: all")
    split_seed: int = Field(1, ge=0, description="seed of the train/validation permutation")
    inject: str = Field("", description="signal shard directory mixed into training")
    inject_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="signal rows / training rows (0.001, 0.01, 0.05)"
    )
    background: str = Field("", description="held-out background for nae evaluate")
    signals: dict[str, str] = Field(default_factory=dict, description="name -> directory")

    @model_validator(mode="after")
    def _consistent(self) -> TableDataConfig:
        unknown = sorted(set(self.discrete) - set(self.features))
        if unknown:
            raise ValueError(f"data.discrete names {unknown}, which data.features lacks")
        if len(self.discrete) == len(self.features):
            raise ValueError("data.features needs at least one continuous feature")
        self._check_modelled()
        if bool(self.inject) != (self.inject_fraction > 0):
            raise ValueError("data.inject and data.inject_fraction > 0 go together")
        return self

    def _check_modelled(self) -> None:
        from training.data.zgamma import IDENTITIES  # imports this module

        unknown = sorted(set(self.derived) - set(IDENTITIES))
        if unknown:
            raise ValueError(f"data.derived: no formula for {unknown}; known: {sorted(IDENTITIES)}")
        for name in self.derived:
            if name not in self.features or name in self.discrete:
                raise ValueError(f"data.derived: {name!r} is not a continuous data.features entry")
            for source in IDENTITIES[name][0]:
                if source not in self.features or source in self.derived:
                    raise ValueError(
                        f"data.derived: {name!r} needs {source!r} among the modelled features"
                    )
        for angle, reference in self.relative_phi.items():
            for name in (angle, reference):
                if name not in self.features or name in self.discrete or name in self.derived:
                    raise ValueError(f"data.relative_phi: {name!r} is not a modelled feature")
            if reference in self.relative_phi:
                raise ValueError(f"data.relative_phi: the reference {reference!r} is relative")
        if self.uniform_phi:
            fixed = set(self.discrete) | set(self.derived) | set(self.relative_phi)
            if self.uniform_phi not in self.features or self.uniform_phi in fixed:
                raise ValueError(f"data.uniform_phi: {self.uniform_phi!r} is not a free angle")
        paired = [name for pair in self.cartesian.items() for name in pair]
        fixed = set(self.discrete) | set(self.derived) | {self.uniform_phi}
        for angle, magnitude in self.cartesian.items():
            for name in (angle, magnitude):
                if name not in self.features or name in fixed:
                    raise ValueError(f"data.cartesian: {name!r} is not a modelled feature")
                if paired.count(name) > 1 or name in self.relative_phi.values():
                    raise ValueError(f"data.cartesian: {name!r} is in two pairs or a reference")
        references = set(self.relative_phi.values())
        if self.reflect and (
            self.reflect not in self.relative_phi or references != {self.uniform_phi}
        ):
            raise ValueError(
                "data.reflect needs a relative_phi angle and every relative_phi angle relative "
                "to uniform_phi (so that negating them all is a symmetry)"
            )
        if len(self.features) - len(self.discrete) - len(self.derived) - bool(self.uniform_phi) < 1:
            raise ValueError("data.features needs at least one modelled continuous feature")


class GeneratorModelConfig(_Frozen):
    """A VAE-family generator (training/models/generators/).

    ``vae``: Gaussian prior, beta-weighted KL. ``vae_nf``: a RealNVP prior on the latent
    (learned jointly). ``copula_vae``: a Gaussian-copula prior with learned monotone marginal
    CDFs (the latent, through them, is uniform). ``*_d``: a discriminator on real,
    reconstructed and generated events, with the encoder, decoder and discriminator each on
    its own optimiser (Larsen et al., arXiv:1512.09300, the study's VAE+D). ``cvae_d``:
    conditioned on the discrete features, whose joint frequencies are drawn at generation.
    Defaults are our choice for 18 features, not tuned beyond docs/results-vae.md.
    """

    family: GeneratorFamily = Field(description="vae | vae_d | vae_nf | vae_nf_d | ...")
    hidden: tuple[int, ...] = Field((128, 128), min_length=1, description="encoder widths")
    latent_dim: int = Field(8, ge=1, description="latent size")
    activation: Activation = Field("silu", description="hidden activation")
    preprocessing: TablePreprocessing = Field(
        "quantile", description="continuous features: quantile (to a normal) | standardise"
    )
    n_quantiles: int = Field(1000, ge=2, description="quantile preprocessing: stored quantiles")
    max_categories: int = Field(
        8, ge=2, description="discrete features: values 0..K-1, larger ones in the last"
    )
    beta: float = Field(1.0, ge=0.0, description="KL weight (beta-VAE; 1: the ELBO)")
    flow_layers: int = Field(6, ge=1, description="vae_nf*: RealNVP coupling layers")
    flow_hidden: int = Field(64, ge=1, description="vae_nf*: coupling network width")
    copula_components: int = Field(
        8, ge=1, description="copula_vae: logistic components per marginal CDF"
    )
    discriminator_hidden: tuple[int, ...] = Field((64, 64), min_length=1)
    adversarial_weight: float = Field(
        0.05, ge=0.0, description="*_d: weight of the decoder's fool-the-discriminator term"
    )
    score: GeneratorScore = Field(
        "reconstruction", description="what forward (and the exported bundle) returns"
    )

    @model_validator(mode="after")
    def _score_exists(self) -> GeneratorModelConfig:
        if self.score == "discriminator" and self.family not in _ADVERSARIAL:
            raise ValueError(
                f"model.score = 'discriminator' needs a family with one {list(_ADVERSARIAL)}"
            )
        if self.family in ("vae_nf", "vae_nf_d") and self.latent_dim < 2:
            raise ValueError("a RealNVP prior couples halves of the latent: latent_dim >= 2")
        return self


class GeneratorTrainConfig(_Frozen):
    """Optimisation of a generator: epochs of minibatches, one Adam(W) per network part."""

    epochs: int = Field(100, ge=1, description="epochs; the lowest validation loss is selected")
    batch_size: int = Field(512, ge=1, description="events per step")
    lr: float = Field(1e-3, gt=0.0, description="encoder, decoder and prior learning rate")
    discriminator_lr: float = Field(2e-4, gt=0.0, description="*_d: discriminator rate")
    optimizer: Optimizer = Field("adam", description="adam | adamw")
    kl_warmup_epochs: int = Field(
        5, ge=0, description="beta ramps linearly from 0 over these epochs (avoids collapse)"
    )
    threads: int = Field(1, ge=1, description="torch threads")
    seed: int = Field(1, ge=0, description="seed of weights, batches and sampling")


class GeneratorRunConfig(_Frozen):
    """One generator training run, saved with every checkpoint."""

    name: str = Field(min_length=1, description="recipe name, e.g. zgamma-vae")
    data: TableDataConfig
    model: GeneratorModelConfig
    train: GeneratorTrainConfig = Field(default_factory=GeneratorTrainConfig)

    @model_validator(mode="after")
    def _joint_categories_fit(self) -> GeneratorRunConfig:
        """The decoder's joint categorical has max_categories ** len(discrete) outputs."""
        combinations = self.model.max_categories ** len(self.data.discrete)
        if combinations > _MAX_COMBINATIONS:
            raise ValueError(
                f"model.max_categories ** len(data.discrete) = {combinations} joint categories,"
                f" more than {_MAX_COMBINATIONS}: lower model.max_categories"
            )
        return self


def _override_value(assignment: str, value: str) -> Any:
    if not value.startswith("["):
        return value
    try:
        return tomllib.loads(f"value = {value}")["value"]
    except tomllib.TOMLDecodeError:
        raise NaeError(
            f"--set {assignment!r}: {value} is not a TOML array such as [64, 32]"
        ) from None


def load_run_config(source: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """A ``RunConfig`` from a TOML file, or from a recipe name in training/configs/, with
    ``--set key=value`` overrides applied; errors name the bad key or the known recipes."""
    path, data = _read_recipe(source)
    return with_overrides(_validated(RunConfig, data, path), overrides)


def load_config(
    source: str | Path, overrides: Sequence[str] = ()
) -> RunConfig | GeneratorRunConfig:
    """What ``nae train`` reads: a ``GeneratorRunConfig`` when the recipe's ``data.input`` is
    ``"table"`` (the VAE-family generators on feature tables), else a ``RunConfig``."""
    path, data = _read_recipe(source)
    section = data.get("data")
    table = isinstance(section, dict) and section.get("input") == "table"
    config = _validated(GeneratorRunConfig if table else RunConfig, data, path)
    return with_overrides(config, overrides)


def _read_recipe(source: str | Path) -> tuple[Path, dict[str, Any]]:
    path = Path(source)
    if not path.is_file():
        recipe = _CONFIGS_DIR / f"{source}.toml"
        if not recipe.is_file():
            known = sorted(p.stem for p in _CONFIGS_DIR.glob("*.toml"))
            raise NaeError(f"config {str(source)!r}: no such file or recipe; recipes: {known}")
        path = recipe
    try:
        return path, tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise NaeError(f"{path}: not valid TOML ({exc})") from None


def _validated(kind: type[ConfigT], data: dict[str, Any], path: Path) -> ConfigT:
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise NaeError(f"{path}: {where}: {first['msg']}") from None


def config_to_toml(config: BaseModel) -> str:
    """The TOML text of a config (what a run writes to ``run_dir/config.toml``); it loads back
    to an equal config. Infinite bounds are TOML's ``inf``; unset optional fields (None, which
    TOML cannot write) are left out and come back as their default."""
    tomli_w = require("tomli_w", "train")
    return tomli_w.dumps(config.model_dump(mode="python", exclude_none=True))
