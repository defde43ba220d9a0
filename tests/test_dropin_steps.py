"""run.steps(loader) is still the loader for the code it is passed to, and run.step() tracks a
loop that is not an iterable: pytorch/examples' mnist `train()` and nanoGPT's `while True:`
run unchanged. Time is driven by hand (manual_clock), so step energies are exact."""

from __future__ import annotations

import pytest
from conftest import step_windows

from tracker import ConfigError, track

FAST = dict(cpu=False, ram=False, rate_hz=50, counter_interval_s=0.2, report_html=False)
WATTS = 300.0   # clocked_h100


def test_steps_is_the_loader_len_attributes_and_a_pass_per_iter(clocked_h100, manual_clock,
                                                                tmp_path):
    class Loader:
        """A loader with the attributes training scripts use."""

        def __init__(self):
            self.dataset = list(range(10))
            self.batch_size = 2
            self.epochs_seen: list[int] = []
            self.sampler = self

        def set_epoch(self, epoch):
            self.epochs_seen.append(epoch)

        def __iter__(self):
            return iter([self.dataset[i:i + 2] for i in range(0, 10, 2)])

        def __len__(self):
            return 5

    loader = Loader()
    with track("loader", output_dir=tmp_path, **FAST) as run:
        steps = run.steps(loader, samples=len)
        assert len(steps) == 5 and steps.dataset is loader.dataset and steps.batch_size == 2
        for epoch in range(3):
            steps.sampler.set_epoch(epoch)
            seen = []
            for batch in steps:                      # each `for` is a new pass
                seen.append(batch)
                manual_clock.sleep(0.1)
            assert seen == list(loader)
        steps.batch_size = 4                         # set on the loader itself
        assert loader.batch_size == 4
    assert loader.epochs_seen == [0, 1, 2]
    summary = run.summary
    assert summary.steps["count"] == 15 and summary.steps["samples"] == 30
    for s in step_windows(run.run_dir):
        assert s["energy_j"] == pytest.approx(WATTS * s["duration_s"], rel=1e-6)


def test_mnist_train_runs_unchanged_on_a_real_dataloader(clocked_h100, manual_clock, tmp_path,
                                                        capsys):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    # pytorch/examples mnist/main.py train(), its shape kept: len(train_loader.dataset),
    # len(train_loader), enumerate(train_loader), a dry-run break
    def train(args, model, device, train_loader, optimizer, epoch):
        model.train()
        for batch_idx, (data, target) in enumerate(train_loader):
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            output = model(data)
            loss = torch.nn.functional.nll_loss(output, target)
            loss.backward()
            optimizer.step()
            manual_clock.sleep(0.05)
            if batch_idx % args["log_interval"] == 0:
                print(f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(train_loader.dataset)} ({100. * batch_idx / len(train_loader):.0f}%)]\tLoss: {loss.item():.6f}")  # noqa: E501 - the line as pytorch/examples has it
                if args["dry_run"]:
                    break

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 8, generator=g), torch.randint(0, 4, (64,), generator=g))
    sampler = DistributedSampler(data, num_replicas=1, rank=0, shuffle=True, seed=0)
    train_loader = DataLoader(data, batch_size=16, sampler=sampler)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LogSoftmax(dim=1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with track("mnist", output_dir=tmp_path, **FAST) as run:
        steps = run.steps(train_loader, samples=lambda b: len(b[0]))
        for epoch in run.epochs(range(1, 3)):
            steps.sampler.set_epoch(epoch)
            train({"log_interval": 2, "dry_run": False}, model, "cpu", steps, optimizer, epoch)
        train({"log_interval": 1, "dry_run": True}, model, "cpu", run.steps(train_loader),
              optimizer, 3)
    out = capsys.readouterr().out
    assert "Train Epoch: 1 [32/64 (50%)]" in out and "Train Epoch: 3 [0/64 (0%)]" in out
    assert sampler.epoch == 2
    summary = run.summary
    # 2 epochs x 4 batches, then the dry run's one step, closed by its break
    assert summary.steps["count"] == 9 and summary.steps["samples"] == 128
    steps_on_disk = step_windows(run.run_dir)
    assert [s["attrs"]["index"] for s in steps_on_disk] == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    epochs = [w for w in summary.windows if w.kind == "epoch"]
    assert [w.name for w in epochs] == ["epoch 0", "epoch 1"]
    assert all(s["parent"] in {w.id for w in epochs} for s in steps_on_disk[:8])
    assert steps_on_disk[8]["parent"] == -1 or steps_on_disk[8]["parent"] is None
    assert steps_on_disk[8]["duration_s"] == pytest.approx(0.05, abs=1e-6)


def test_epochs_keeps_len_and_reiterates(clocked_h100, manual_clock, tmp_path):
    with track("epochs", output_dir=tmp_path, **FAST) as run:
        epochs = run.epochs(range(3))
        assert len(epochs) == 3
        assert list(epochs) == [0, 1, 2] and list(epochs) == [0, 1, 2]
    assert [w.name for w in run.summary.windows if w.kind == "epoch"] == ["epoch 0", "epoch 1",
                                                                          "epoch 2"] * 2


def test_step_context_in_a_while_loop(clocked_h100, manual_clock, tmp_path):
    """nanoGPT's shape: `while True:` with a break, counts known before or inside the step."""
    with track("nanogpt", output_dir=tmp_path, **FAST) as run:
        iter_num = 0
        while True:
            with run.step(samples=12, tokens=12 * 1024) as s:
                manual_clock.sleep(0.1 * (1 + iter_num % 2))
                if iter_num == 3:
                    s.tokens = 5                      # a short last batch, set inside
            iter_num += 1
            if iter_num > 3:
                break
        with run.window("eval", kind="eval"):  # noqa: SIM117
            with run.step(samples=1, index=100):      # a step inside a window: its child
                manual_clock.sleep(0.2)
    summary = run.summary
    assert summary.steps["count"] == 5
    assert summary.steps["samples"] == 4 * 12 + 1
    assert summary.steps["tokens"] == 3 * 12 * 1024 + 5
    steps = step_windows(run.run_dir)
    assert [s["attrs"]["index"] for s in steps] == [0, 1, 2, 3, 100]
    assert [round(s["duration_s"], 6) for s in steps] == [0.1, 0.2, 0.1, 0.2, 0.2]
    for s in steps:
        assert s["energy_j"] == pytest.approx(WATTS * s["duration_s"], rel=1e-6)
    (ev,) = [w for w in summary.windows if w.kind == "eval"]
    assert steps[-1]["parent"] == ev.id


def test_step_context_closes_on_exception_and_never_raises_when_stopped(
        clocked_h100, manual_clock, tmp_path):
    with track("boom", output_dir=tmp_path, **FAST) as run:  # noqa: SIM117
        with pytest.raises(ValueError, match="loss is nan"):
            with run.step(samples=2):
                manual_clock.sleep(0.1)
                raise ValueError("loss is nan")
    assert run.summary.steps["count"] == 1
    with run.step(samples=3):                         # stopped: runs untracked, no error
        pass
    for _ in run.steps(range(3)):
        pass
    assert run.summary.steps["count"] == 1


def test_a_step_left_open_by_stop_is_closed_once(clocked_h100, manual_clock, tmp_path):
    run = track("open", output_dir=tmp_path, **FAST).start()
    ctx = run.step(samples=1)
    with ctx:
        manual_clock.sleep(0.1)
        run.stop()                                    # closes the open step at the end
    assert run.summary.steps["count"] == 1
    assert len(step_windows(run.run_dir)) == 1


def test_bad_counts_are_config_errors_at_the_call(clocked_h100, manual_clock, tmp_path):
    with track("bad", output_dir=tmp_path, **FAST) as run:
        with pytest.raises(ConfigError, match=r"samples must be a count .* got -1"):
            run.step(samples=-1)
        with pytest.raises(ConfigError, match="a function of the batch is for steps"):
            run.step(tokens=len)
        with pytest.raises(ConfigError, match=r"tokens must be a count .* got '8'"):
            run.steps(range(3), tokens="8")
        with pytest.raises(ConfigError, match="steps\\(\\) takes an iterable"):
            run.steps(42)
        # a count function that fails on a batch counts 0 and the loop goes on
        got = list(run.steps(range(3), samples=lambda b: 10 // b))
        assert got == [0, 1, 2]
    assert run.summary.steps["samples"] == 10 + 5


def test_next_and_close_drive_one_pass(clocked_h100, manual_clock, tmp_path):
    """What code written for the old generator does: next() on it, then close()."""
    with track("next", output_dir=tmp_path, **FAST) as run:
        steps = run.steps(iter(int, 1))               # an endless iterator
        for _ in range(4):
            next(steps)
            manual_clock.sleep(0.1)
        steps.close()                                 # closes the fourth step now
        manual_clock.sleep(0.5)
    durations = [round(s["duration_s"], 6) for s in step_windows(run.run_dir)]
    assert durations == [0.1, 0.1, 0.1, 0.1]
