"""The training loop on tiny seeded toy shards (synthetic 19 x 3 events, labelled as such):
resume equals an uninterrupted run, runs are deterministic, selection and divergence stops."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from training.checkpoint import checkpoint_path, load_checkpoint, load_model
from training.config import (
    DataConfig,
    LangevinConfig,
    ModelConfig,
    RunConfig,
    SamplerConfig,
    TrainConfig,
    with_overrides,
)
from training.data.loaders import load_split
from training.data.shards import Shard, write_shard
from training.errors import NaeError
from training.losses import nae_loss
from training.sampling import slot_floors
from training.selection import RULES, replay, select_by_emd, select_by_energy_balance
from training.train import (
    METRICS_FILE,
    _nae_objective,
    nae_learning_rate,
    train,
    training_steps,
)

torch.set_num_threads(1)  # as training runs (TrainConfig.threads)


@pytest.fixture(scope="module")
def toy_events(tmp_path_factory) -> str:
    """300 seeded synthetic events (1-8 filled slots, exponential pT, normal angles): a toy
    background for exercising the loop, not physics."""
    rng = np.random.default_rng(5)
    particles = np.zeros((300, 19, 4), np.float32)
    filled = np.arange(19) < rng.integers(1, 9, size=(300, 1))
    particles[..., 0] = filled * rng.exponential(30.0, size=(300, 19))
    particles[..., 1:3] = filled[..., None] * rng.normal(size=(300, 19, 2))
    directory = tmp_path_factory.mktemp("toy_events")
    write_shard(
        directory / "toy_seed5_00000.h5",
        Shard({"particles": particles, "label": np.zeros(300, np.int8)}),
    )
    return str(directory)


def _config(directory: str, **train) -> RunConfig:
    chain = LangevinConfig(steps=3, step_size=0.05, noise_std=0.1, metropolis=True)
    return RunConfig(
        name="toy-events-nae",
        data=DataConfig(input="events", train=(directory,)),
        model=ModelConfig(
            family="nae",
            hidden=(16,),
            latent_dim=3,
            spherical=True,
            spectral_norm=True,
            preprocessing="event_scaling",
        ),
        sampler=SamplerConfig(
            mode="on_manifold", n_negatives=16, latent=chain, input=chain, box=(-3.0, 3.0)
        ),
        train=TrainConfig(
            **{
                "ae_epochs": 3,
                "ae_batch_size": 64,
                "nae_iterations": 10,
                "nae_batch_size": 16,
                "checkpoint_every": 4,
                "emd_points": 32,
                "nae_lr": 1e-3,
                **train,
            }
        ),
    )


class _Stop(Exception):
    pass


def _stop_after(units: int):
    done = [0]

    def progress(k: int) -> None:
        done[0] += k
        if done[0] == units:
            raise _Stop

    return progress


def _parameters(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(checkpoint_path(run_dir, "last"))["model"]


def _metrics(run_dir) -> list[dict]:
    lines = (run_dir / METRICS_FILE).read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "cpu_seconds"} for line in lines]


@pytest.mark.parametrize("decay", [None, "cosine"])
def test_resume_continues_bit_identically(toy_events, tmp_path, decay):
    config = _config(toy_events, nae_lr_decay=decay)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    train(config, straight)
    # stop after AE epoch 2, then mid-interval in the NAE phase (iteration 6 of 10)
    for units, resume in ((2, False), (3 + 6, True)):
        with pytest.raises(_Stop):
            train(config, stopped, progress=_stop_after(units), resume=resume)
    summary = train(config, stopped, resume=True)
    a, b = _parameters(straight), _parameters(stopped)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(straight) == _metrics(stopped)
    assert summary.selection == "emd" and summary.selected_step in (4, 8, 10)
    with pytest.raises(NaeError, match="complete"):
        train(config, stopped, resume=True)


def test_a_resume_with_more_nae_iterations_equals_the_longer_run(toy_events, tmp_path):
    config = _config(toy_events, nae_iterations=8)
    longer = with_overrides(config, ["train.nae_iterations=12"])
    straight, extended = tmp_path / "straight", tmp_path / "extended"
    train(longer, straight)
    train(config, extended)
    with pytest.raises(NaeError, match="complete"):
        train(config, extended, resume=True)
    summary = train(longer, extended, resume=True)
    a, b = _parameters(straight), _parameters(extended)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(straight) == _metrics(extended)
    assert summary.selected_step in (4, 8, 12)
    with pytest.raises(NaeError, match="another config"):  # shorter is not an extension
        train(config, extended, resume=True)
    # not the same run continued: a cosine's schedule, an end off the checkpoint grid (10 of 4)
    for name, setting in (("cosine", "train.nae_lr_decay=cosine"), ("off-grid", None)):
        short = with_overrides(config, [setting] if setting else ["train.nae_iterations=10"])
        train(short, tmp_path / name)
        with pytest.raises(NaeError, match="extended exactly"):
            longer = with_overrides(short, ["train.nae_iterations=16"])
            train(longer, tmp_path / name, resume=True)


def test_the_cosine_decay_falls_from_the_learning_rate_to_zero_and_is_what_adam_used(
    toy_events, tmp_path
):
    config = _config(toy_events, nae_lr_decay="cosine")
    n, lr = config.train.nae_iterations, config.train.nae_lr
    rates = [nae_learning_rate(config.train, i) for i in range(n + 1)]
    assert rates[0] == lr and rates[n // 2] == pytest.approx(lr / 2) and rates[n] < 1e-20
    assert all(a > b for a, b in itertools.pairwise(rates))
    constant = config.model_copy(
        update={"train": config.train.model_copy(update={"nae_lr_decay": None})}
    )
    assert {nae_learning_rate(constant.train, i) for i in range(n)} == {lr}
    train(config, tmp_path / "run")
    state = load_checkpoint(checkpoint_path(tmp_path / "run", "last"))
    assert state["optimizer"]["param_groups"][0]["lr"] == rates[n - 1]


def _selected(emds: list[float], error: float, tolerance: float) -> int:
    """The index the checkpoint-by-checkpoint rule ends on for a sequence of EMDs."""
    best = {"nae": float("inf"), "nae_error": 0.0, "nae_iteration": -1}
    for index, emd in enumerate(emds):
        select_by_emd(best, emd, error, index, tolerance)
    metrics = [(index, {"emd": emd, "emd_error": error}) for index, emd in enumerate(emds)]
    assert replay("emd", metrics, tolerance) == best["nae_iteration"]  # the same rule replayed
    return best["nae_iteration"]


def test_emd_selection_takes_the_latest_checkpoint_within_the_noise_of_the_lowest():
    rng = np.random.default_rng(7)
    flat = list(10.0 + 0.1 * rng.standard_normal(40))  # no trend: only noise of sigma 0.1
    error = 0.1 / np.sqrt(2)  # two independent errors of this size combine to 0.1
    chosen = _selected(flat, error, tolerance=2.0)
    low = int(np.argmin(flat))
    assert chosen >= low and flat[chosen] - flat[low] <= 2.0 * 0.1 + 1e-12
    later = [i for i in range(chosen + 1, 40) if flat[i] - flat[low] <= 0.2 + 1e-12]
    assert later == []  # nothing later is within the tolerance
    assert _selected(flat, error, tolerance=0.0) == low  # tolerance 0: the plain argmin
    # a collapse: the EMD falls, then rises far beyond the noise; the selection stays before it
    collapse = [5.0, 4.0, 3.0, 3.05, 2.98, 4.5, 6.0, 8.0]
    assert _selected(collapse, 0.05, tolerance=2.0) == 4
    assert _selected([3.0, 3.1, 3.12, 2.9, 4.0], 0.05, tolerance=2.0) == 3  # a new minimum wins


def _balanced(energies: list[tuple[float | None, float | None]]) -> int:
    """The index the energy-balance rule ends on for a sequence of (E+, E-) interval means."""
    best = {"nae_iteration": -1}
    for index, (e_pos, e_neg) in enumerate(energies):
        select_by_energy_balance(best, e_pos, e_neg, index)
    metrics = [(index, {"e_pos": p, "e_neg": n}) for index, (p, n) in enumerate(energies)]
    assert replay("energy_balance", metrics, 2.0) == best["nae_iteration"]
    return best["nae_iteration"]


def test_energy_balance_selection_takes_the_first_checkpoint_where_e_neg_reaches_e_pos():
    rising = [(5.0, 0.5), (5.2, 1.4), (5.1, 5.1), (6.0, 9.0), (7.0, 3.0), (7.0, 80.0)]
    assert _balanced(rising) == 2  # equal counts as reached; later crossings do not move it
    assert _balanced([(5.0, 0.5), (5.0, 1.0), (6.0, 2.0)]) == 2  # never reached: the last
    assert _balanced([(5.0, 0.5), (None, None), (5.0, 6.0), (5.0, 1.0)]) == 2  # no energies


def test_energy_balance_selects_by_the_logged_energies_and_is_refused_for_pcd(toy_events, tmp_path):
    config = _config(toy_events, selection="energy_balance")
    summary = train(config, tmp_path / "run")
    rows = [row for row in _metrics(tmp_path / "run") if row["stage"] == "nae"]
    reached = [row["step"] for row in rows if row["e_neg"] >= row["e_pos"]]
    assert summary.selection == "energy_balance"
    assert summary.selected_step == (reached[0] if reached else rows[-1]["step"])
    selected = load_checkpoint(summary.selected)
    assert selected["step"] == summary.selected_step
    assert summary.selection_value == selected["metric"]["e_neg"] / selected["metric"]["e_pos"]
    for change in ("sampler.mode=pcd", "train.ae_epochs=0"):
        with pytest.raises(NaeError, match="energy_balance"):
            with_overrides(config, [change])


@pytest.mark.parametrize("rule", RULES)
def test_replaying_a_rule_over_the_logged_checkpoints_gives_the_run_selection(
    toy_events, tmp_path, rule
):
    config = _config(toy_events, selection=rule, nae_iterations=16)
    summary = train(config, tmp_path / "run")
    rows = [(row["step"], row) for row in _metrics(tmp_path / "run") if row["stage"] == "nae"]
    assert replay(rule, rows, config.train.emd_tolerance) == summary.selected_step
    with pytest.raises(ValueError, match="unknown selection rule"):
        replay("lowest_auc", rows, 2.0)


def test_a_seed_gives_the_same_run_and_another_seed_another(toy_events, tmp_path):
    config = _config(toy_events, nae_iterations=4)
    for name in ("a", "b"):
        train(config, tmp_path / name)
    train(with_overrides(config, ["train.seed=2"]), tmp_path / "c")
    a, b, c = (_parameters(tmp_path / name) for name in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_ae_selects_the_lowest_validation_loss_and_writes_every_epoch(toy_events, tmp_path):
    config = with_overrides(_config(toy_events), ["model.family=ae", "train.ae_epochs=4"])
    summary = train(config, tmp_path / "ae")
    losses = {row["step"]: row["validation_loss"] for row in _metrics(tmp_path / "ae")}
    assert summary.selection == "validation_loss"
    assert summary.selected_step == min(losses, key=losses.get)
    best = load_checkpoint(summary.selected)
    assert best["step"] == summary.selected_step and best["stage"] == "ae"
    assert sorted(p.name for p in (tmp_path / "ae" / "checkpoints").glob("epoch-*.pt")) == [
        f"epoch-{i:04d}.pt" for i in range(1, 5)
    ]
    assert training_steps(config) == 4


def test_pca_fits_once(toy_events, tmp_path):
    config = with_overrides(_config(toy_events), ["model.family=pca", "model.spherical=false"])
    summary = train(config, tmp_path / "pca")
    assert summary.selection == "fit" and load_checkpoint(summary.selected)["stage"] == "pca"


@pytest.mark.parametrize(
    ("hold", "message"),
    [
        ("loss.gamma=0", r"NAE iteration \d+: .*(train\.nae_lr|step_size)"),
        ("loss.negative_ratio=1", r"lower loss\.negative_ratio \(now 1\)"),
    ],
)
def test_a_diverging_nae_stops_naming_the_setting(toy_events, tmp_path, hold, message):
    config = with_overrides(
        _config(toy_events), ["train.nae_lr=10.0", "train.divergence_factor=2", hold]
    )
    with pytest.raises(NaeError, match=message):
        train(config, tmp_path / "diverging")


def test_pcd_negatives_of_events_keep_the_datas_slot_structure(toy_events, tmp_path):
    config = with_overrides(
        _config(toy_events),
        ["sampler.mode=pcd", "sampler.snap_empty_slots=true", "model.event_frame=leading_lepton"],
    )
    summary = train(config, tmp_path / "snap")
    model = load_model(tmp_path / "snap")[0]
    with torch.no_grad():
        floor = slot_floors(model.preprocess(load_split(config.data).train))
    negative_pt = load_checkpoint(summary.selected)["samples"]["negative"][..., 0]
    assert ((negative_pt == 0) | (negative_pt >= floor)).all() and (negative_pt > 0).any()
    with pytest.raises(NaeError, match="snap_empty_slots"):
        with_overrides(
            _config(toy_events), ["data.input=features", "sampler.snap_empty_slots=true"]
        )


def test_loss_negative_ratio_replaces_gamma_by_the_relative_one(toy_events):
    e_pos, e_neg = torch.tensor([1e-6, 3e-6]), torch.tensor([4e-6, 1e-5])
    fixed = with_overrides(_config(toy_events), ["loss.gamma=7"])
    relative = with_overrides(fixed, ["loss.negative_ratio=4"])
    assert _nae_objective(fixed, e_pos, e_neg).item() == pytest.approx(
        nae_loss(e_pos, e_neg, gamma=7.0).item()
    )
    assert _nae_objective(relative, e_pos, e_neg).item() == pytest.approx(
        nae_loss(e_pos, e_neg, gamma=1 / (2 * 4 * 2e-6)).item()
    )


def test_a_run_directory_is_not_overwritten(toy_events, tmp_path):
    config = _config(toy_events, nae_iterations=4)
    train(config, tmp_path / "run")
    with pytest.raises(NaeError, match="--resume"):
        train(config, tmp_path / "run")
    with pytest.raises(NaeError, match="another config"):
        train(with_overrides(config, ["train.seed=3"]), tmp_path / "run", resume=True)


def test_an_nae_started_from_a_finished_ae_run_equals_one_that_pre_trained_itself(
    toy_events, tmp_path
):
    nae = _config(toy_events)
    train(nae, tmp_path / "straight")
    ae = with_overrides(nae, ["model.family=ae", "train.nae_iterations=0"])
    train(ae, tmp_path / "ae")
    started = with_overrides(nae, [f"train.init_from={tmp_path / 'ae'}", "train.ae_epochs=0"])
    assert training_steps(started) == nae.train.nae_iterations
    train(started, tmp_path / "started")
    a, b = _parameters(tmp_path / "straight"), _parameters(tmp_path / "started")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _metrics(tmp_path / "straight") == _metrics(tmp_path / "started")
    ae_best = load_checkpoint(checkpoint_path(tmp_path / "started", "ae-best"))["model"]
    source = load_checkpoint(checkpoint_path(tmp_path / "ae", "best"))["model"]
    assert all(torch.equal(ae_best[k], source[k]) for k in source)
    # another seed starts from the same AE with its own chains and batches
    other = train(with_overrides(started, ["train.seed=2"]), tmp_path / "other")
    assert not all(torch.equal(a[k], v) for k, v in _parameters(tmp_path / "other").items())
    assert other.selection == "emd"


def test_init_from_refuses_what_the_nae_would_not_have_pre_trained(toy_events, tmp_path):
    nae = _config(toy_events, nae_iterations=4)
    ae = with_overrides(nae, ["model.family=ae", "train.nae_iterations=0"])
    with pytest.raises(NaeError, match="finished"):
        train(
            with_overrides(nae, [f"train.init_from={tmp_path}", "train.ae_epochs=0"]),
            tmp_path / "x",
        )
    train(ae, tmp_path / "ae")
    start = [f"train.init_from={tmp_path / 'ae'}", "train.ae_epochs=0"]
    for change, match in (
        ("model.hidden=[8]", r"\[model\]"),
        ("data.split_seed=2", "other data"),
    ):
        with pytest.raises(NaeError, match=match):
            train(with_overrides(nae, [change, *start]), tmp_path / change.split("=")[0])
    with pytest.raises(NaeError, match="ae_epochs=0"):
        with_overrides(nae, start[:1])
