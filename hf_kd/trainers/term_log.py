"""Each loss term's value over the logging window, and the watch for non-finite terms.

Terms are recorded as this process's share of the effective batch's value (`record`), counted once per
optimizer step (`end_step`), and averaged over the steps of a logging window across processes (`means`).
On an accelerator a per-step check for NaN / inf would stall the host, so the first non-finite step of
each term is kept on the device (`watch`) and read at the next logging step, checkpoint or the end
(`raise_if_nonfinite`).
"""

from __future__ import annotations

import torch

from hf_kd.errors import NonFiniteLossError


class TermLog:
    def __init__(self, accelerator, device: torch.device) -> None:
        self.accelerator, self.device = accelerator, device
        self.sums: dict[str, torch.Tensor | float] = {}
        self.counts: dict[str, torch.Tensor | int] = {}
        self.step_presence: dict[str, torch.Tensor | None] = {}  # terms recorded in the step under way
        self.student_loss_total, self.student_loss_steps = 0.0, 0
        self.first_nonfinite: dict[str, torch.Tensor] = {}

    def record(self, name: str, value: torch.Tensor, present: torch.Tensor | None, in_step: bool) -> None:
        """Add this process's share of a term's value in the effective batch to the window.

        Per-row terms are divided by the effective batch's rows, so the shares of the micro-batches and
        processes add up to the effective batch's value; a term computed on all rows (contrastive) is
        recorded once per step. A term counts once per optimizer step (`end_step`); `present` (0 or 1, on
        the device) leaves a step out of the term's mean without a host sync, as the CE terms do for
        effective batches without labelled rows. Outside a step (`in_step` false) a call is a step of its own.
        """
        share = value.detach().float() / self.accelerator.num_processes
        self.sums[name] = self.sums.get(name, 0.0) + share
        if in_step:
            self.step_presence[name] = present
        else:
            self.counts[name] = self.counts.get(name, 0) + (1 if present is None else present)

    def end_step(self) -> None:
        for name, present in self.step_presence.items():
            self.counts[name] = self.counts.get(name, 0) + (1 if present is None else present)
        self.step_presence = {}

    def means(self) -> dict[str, tuple[float, float]]:
        """Each recorded term's (mean, count of steps) over the window, all processes' shares summed; the
        window starts again."""
        names = list(self.sums)
        sums = torch.stack([torch.as_tensor(self.sums[n], dtype=torch.float32, device=self.device) for n in names])
        counts = torch.stack(
            [torch.as_tensor(self.counts.get(n, 0), dtype=torch.float32, device=self.device) for n in names]
        )
        sums = self.accelerator.reduce(sums, reduction="sum")
        self.sums, self.counts = {}, {}
        means = (sums / counts.clamp_min(1)).tolist()
        return {name: (mean, count) for name, mean, count in zip(names, means, counts.tolist(), strict=True)}

    def add_to(self, logs: dict[str, float]) -> None:
        """Each term's window mean into the Trainer's logs. `loss` becomes the mean weighted student loss of the
        window's min steps (the Trainer's own average would count the adversarial methods' max steps as zeros);
        `train_loss` likewise."""
        if ("loss" in logs or "train_loss" in logs) and self.sums:
            window = self.means()
            if "loss" in logs:
                logs.update({name: mean for name, (mean, _) in window.items()})
            mean, count = window.get("loss", (0.0, 0.0))
            self.student_loss_total += mean * count
            self.student_loss_steps += count
        if "train_loss" in logs and self.student_loss_steps:
            logs["train_loss"] = self.student_loss_total / self.student_loss_steps

    def watch(self, prefix: str, terms: dict[str, torch.Tensor], step: int) -> None:
        """Keep, on the device, the first step at which each term was non-finite (-1: never)."""
        at = torch.full((), step, dtype=torch.long, device=self.device)
        for name, value in terms.items():
            first = self.first_nonfinite.get(prefix + name, at.new_full((), -1))
            bad = ~torch.isfinite(value.detach()).all()
            self.first_nonfinite[prefix + name] = torch.where(bad & (first < 0), at, first)

    def raise_if_nonfinite(self) -> None:
        """Read the device-side record (one host sync) and stop if a term went non-finite."""
        if not self.first_nonfinite:
            return
        values = torch.stack(list(self.first_nonfinite.values())).tolist()
        bad = {name: step for name, step in zip(self.first_nonfinite, values, strict=True) if step >= 0}
        if bad:
            first = min(bad.values())
            raise nonfinite_error([name for name, step in bad.items() if step == first], first)


def nonfinite_error(names: list[str], step: int) -> NonFiniteLossError:
    return NonFiniteLossError(
        f"Loss term(s) {', '.join(names)} became non-finite at step {step}: lower the learning rate, check "
        "the data, train in float32, or pass --nonfinite_loss skip to skip such batches."
    )
