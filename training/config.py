"""Typed configuration, in one place. Every model is frozen; defaults name their source.

Data generation: ``DetectorConfig``, ``ImageConfig``, ``JetSampleConfig``, ``EventSampleConfig``.
Training configs join this module when the training package lands.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from training.errors import NaeError

__all__ = [
    "DetectorConfig",
    "EventProcess",
    "EventSampleConfig",
    "ImageConfig",
    "JetProcess",
    "JetSampleConfig",
    "with_overrides",
]


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

    n_pixels: int = Field(40, description="pixels per side")
    half_width: float = Field(0.8, description="image spans +-half_width in eta and phi")
    pt_power: float = Field(
        1.0, description="pixel intensity ~ pT^n; n < 1 softens the core (arXiv:2206.14225)"
    )


JetProcess = Literal["qcd", "top", "dark"]
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
    n_constituents: int = Field(200, description="constituents kept per jet (zero-padded)")
    pthat_min_gev: float | None = Field(
        None,
        description="qcd, top: Pythia PhaseSpace:pTHatMin; None gives 0.55 x pt_min_gev, which "
        "does not sculpt the window (docs/data.md); higher is faster but loses jets",
    )
    r_inv: float = Field(0.3, ge=0.0, le=1.0, description="dark: invisible fraction")
    dark_hadron_mass_gev: float = Field(10.0, description="dark: dark-meson mass")
    zprime_mass_gev: float = Field(1500.0, description="dark: Z' mass")


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


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def with_overrides(config: ConfigT, assignments: Sequence[str]) -> ConfigT:
    """``config`` with ``--set key.sub=value`` assignments applied, validated again.

    Values arrive as strings and pydantic converts them to each field's type, so
    ``detector.hcal_cell_eta=0.1`` works and ``detector.hcal_cell_eta=big`` is refused with a
    message that names the key.
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
        node[leaf] = value.strip()
    try:
        return type(config).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise NaeError(f"--set {where}: {first['msg']}") from None
