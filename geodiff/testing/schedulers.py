"""Common tests every geodiff scheduler passes (the diffusers ``SchedulerCommonTest`` idea).

Subclass :class:`SchedulerTesterMixin` in a pytest class, set ``scheduler_class`` and implement the four
hooks; pytest then collects the ``test_*`` methods below for that scheduler::

    class TestMyScheduler(SchedulerTesterMixin):
        scheduler_class = MyScheduler
        def get_scheduler_config(self): ...
        def make_clean_sample(self, generator): ...     # -> (x0, step_kwargs)
        def draw_prior(self, scheduler, x0, generator, step_kwargs): ...
        def oracle_output(self, scheduler, x0, sample, t, step_kwargs): ...
"""

from __future__ import annotations

import pytest
import torch

from geodiff.errors import GeodiffValueError
from geodiff.io import public_config

__all__ = ["SchedulerTesterMixin"]


class SchedulerTesterMixin:
    scheduler_class: type
    #: inference step counts the oracle loop is run with (None = every training step)
    oracle_num_steps: tuple = (None, 7)
    atol: float = 1e-8

    # ------------------------------------------------------------------------------------- hooks
    def get_scheduler_config(self) -> dict:
        raise NotImplementedError

    def make_clean_sample(self, generator: torch.Generator):
        """Return ``(x0, step_kwargs)`` in float64; ``step_kwargs`` go to ``step`` (e.g. ``batch``)."""
        raise NotImplementedError

    def draw_prior(self, scheduler, x0, generator, step_kwargs):
        raise NotImplementedError

    def oracle_output(self, scheduler, x0, sample, t, step_kwargs):
        """The model output that a perfect denoiser gives at (sample, t) when the truth is ``x0``."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------- helpers
    def make_scheduler(self, **overrides):
        return self.scheduler_class(**{**self.get_scheduler_config(), **overrides})

    def run_reverse(self, scheduler, x0, step_kwargs, seed: int, num_steps=None):
        g = torch.Generator().manual_seed(seed)
        if num_steps is not None:
            scheduler.set_timesteps(num_steps)
        x = self.draw_prior(scheduler, x0, g, step_kwargs)
        for t in scheduler.timesteps:
            out = self.oracle_output(scheduler, x0, x, t, step_kwargs)
            x = scheduler.step(out, t, x, generator=g, **step_kwargs).prev_sample
        return x

    public_config = staticmethod(public_config)

    def one_step_inputs(self, seed: int = 0):
        """A scheduler, its first timestep, a prior sample, the oracle output there and the step kwargs."""
        sched = self.make_scheduler()
        g = torch.Generator().manual_seed(seed)
        x0, kw = self.make_clean_sample(g)
        x = self.draw_prior(sched, x0, g, kw)
        t = sched.timesteps[0]
        return sched, t, x, self.oracle_output(sched, x0, x, t, kw), kw

    # ------------------------------------------------------------------------------------- tests
    def test_config_round_trip(self, tmp_path):
        sched = self.make_scheduler()
        sched.save_pretrained(tmp_path)
        assert (tmp_path / "scheduler_config.json").is_file()
        loaded = self.scheduler_class.from_pretrained(tmp_path)
        assert self.public_config(loaded) == self.public_config(sched)
        torch.testing.assert_close(loaded.alphas_cumprod, sched.alphas_cumprod)
        again = self.scheduler_class.from_config(sched.config)
        assert self.public_config(again) == self.public_config(sched)

    def test_positional_construction_round_trips(self):
        """Arguments given positionally survive ``from_config(sched.config)`` (diffusers alone marks them as
        defaults and drops them)."""
        import inspect

        params = inspect.signature(self.scheduler_class.__init__).parameters
        given = {**{k: p.default for k, p in params.items() if k != "self"}, **self.get_scheduler_config()}
        sched = self.scheduler_class(*given.values())
        again = self.scheduler_class.from_config(sched.config)
        expected = self.public_config(self.make_scheduler())
        assert self.public_config(again) == self.public_config(sched) == expected
        torch.testing.assert_close(again.alphas_cumprod, sched.alphas_cumprod)

    def test_config_records_every_argument(self):
        import inspect

        sched = self.make_scheduler()
        params = [p for p in inspect.signature(self.scheduler_class.__init__).parameters if p != "self"]
        assert set(params) <= set(self.public_config(sched)), "register_to_config missed an argument"
        for key, value in self.get_scheduler_config().items():
            assert sched.config[key] == value

    def test_set_timesteps(self):
        sched = self.make_scheduler()
        T = sched.config.num_train_timesteps
        assert len(sched.timesteps) == T and int(sched.timesteps[0]) == T - 1
        sched.set_timesteps(5)
        ts = sched.timesteps
        assert len(ts) == 5 and int(ts[0]) == T - 1
        assert bool((ts[:-1] > ts[1:]).all()) and int(ts.min()) >= 0
        assert int(sched.previous_timestep(ts[-1])) == -1
        for a, b in zip(ts[:-1], ts[1:], strict=True):
            assert int(sched.previous_timestep(a)) == int(b)
        with pytest.raises(GeodiffValueError, match="num_inference_steps"):
            sched.set_timesteps(T + 1)

    def test_alphas_cumprod_monotone(self):
        ac = self.make_scheduler().alphas_cumprod
        assert ac.dtype == torch.float64
        assert bool((ac[1:] <= ac[:-1]).all()) and 0 < float(ac[-1]) < float(ac[0]) <= 1

    def test_step_shapes_and_tuple(self):
        sched, t, x, out, kw = self.one_step_inputs()
        res = sched.step(out, t, x, generator=torch.Generator().manual_seed(0), **kw)
        assert res.prev_sample.shape == x.shape and res.pred_original_sample.shape == x.shape
        assert res.prev_sample.dtype == x.dtype
        tup = sched.step(out, t, x, generator=torch.Generator().manual_seed(1), return_dict=False, **kw)
        assert isinstance(tup, tuple) and len(tup) == 2

    def test_determinism_with_generator(self):
        sched = self.make_scheduler()
        x0, kw = self.make_clean_sample(torch.Generator().manual_seed(0))
        a = self.run_reverse(sched, x0, kw, seed=3, num_steps=4)
        b = self.run_reverse(sched, x0, kw, seed=3, num_steps=4)
        assert torch.equal(a, b)
        sched.set_timesteps(4)
        t = sched.timesteps[0]
        x = self.draw_prior(sched, x0, torch.Generator().manual_seed(5), kw)
        out = self.oracle_output(sched, x0, x, t, kw)
        r1 = sched.step(out, t, x, generator=torch.Generator().manual_seed(3), **kw).prev_sample
        r2 = sched.step(out, t, x, generator=torch.Generator().manual_seed(4), **kw).prev_sample
        assert not torch.equal(r1, r2), "different seeds gave the same stochastic step"

    def test_oracle_reverse_lands_on_x0(self):
        x0, kw = self.make_clean_sample(torch.Generator().manual_seed(0))
        for n in self.oracle_num_steps:
            sched = self.make_scheduler()
            x = self.run_reverse(sched, x0, kw, seed=1, num_steps=n)
            torch.testing.assert_close(x, x0, atol=self.atol, rtol=0, msg=f"oracle loop with {n} steps")

    def test_bad_timestep_is_a_clear_error(self):
        sched, _, x, out, kw = self.one_step_inputs()
        T = sched.config.num_train_timesteps
        for bad in (T, -1):
            with pytest.raises(ValueError, match="timestep"):
                sched.step(out, bad, x, **kw)

    def test_nan_input_is_a_clear_error(self):
        sched, t, x, out, kw = self.one_step_inputs()
        bad = x.clone()
        bad.view(-1)[0] = float("nan")
        with pytest.raises(ValueError, match="sample"):
            sched.step(out, t, bad, **kw)
        with pytest.raises(ValueError, match="model_output"):
            sched.step(torch.full_like(out, float("nan")), t, x, **kw)
