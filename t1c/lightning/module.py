"""`T1CModule`: fine-tune a `.t1c` graph with Lightning, and carry it inside the checkpoint.

The graph is imported once into a trainable :class:`~t1c.bridge.GraphExecutor`
(``self.executor``); every batch is encoded into spike trains (:mod:`.encoding`),
unrolled for ``num_steps`` steps with ``run_sequence`` and scored from the output
spikes. Batches that already hold their time steps (event frames from
:class:`~t1c.lightning.EventDataModule`, ``[B, T, ...]``) use ``encoding="sequence"``. The graph the run started from travels inside every checkpoint, so
``T1CModule.load_from_checkpoint(ckpt)`` works after the `.t1c` file is gone.

Evaluation is reproducible whatever the batching: in validation, prediction and
:meth:`T1CModule.predict_with` (the export callback's float/quantized metrics), each
sample's rate spikes come from a seed computed from the sample itself and ``eval_seed``
(:func:`~t1c.lightning.encoding.sample_seeds`), so a sample is encoded the same in a
batch of 1, of 16 or in the whole set, and every executor sees the same spike trains.

Network state is local to each forward call: ``run_sequence`` starts from the zero
state and the executor keeps no state between calls, so every training batch, every
validation batch and every :meth:`T1CModule.predict_with` starts fresh; nothing leaks
between batches, networks or devices.

Example:
    >>> import lightning.pytorch as pl
    >>> from t1c.lightning import DigitsDataModule, T1CModule
    >>> model = T1CModule("mlp_snn.t1c", num_steps=25, lr=2e-3)        # doctest: +SKIP
    >>> pl.Trainer(max_epochs=5).fit(model, DigitsDataModule())         # doctest: +SKIP
    >>> T1CModule.load_from_checkpoint("epoch=4-step=115.ckpt")         # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from t1c import ir
from t1c.bridge import GraphExecutor, ir_to_torch, quantize
from t1c.bridge.exporter import to_ir
from t1c.bridge.modules import LIFModule
from t1c.bridge.neuron_modules import AlphaLIFModule, CubaLIFModule

from .encoding import check_encoding, encode, is_count, sample_seeds

__all__ = [
    "DEFAULT_NUM_STEPS",
    "LOSSES",
    "SPIKING_NODES",
    "T1CModule",
    "graph_from_bytes",
    "graph_to_bytes",
    "neuron_map",
    "resolve_spike_grad",
]

#: Loss names accepted by :class:`T1CModule` (snnTorch's ``functional`` semantics).
LOSSES = ("ce_count", "ce_rate", "mse_count", "ce_membrane")

#: The node types whose output is spikes (what a spike-count loss counts).
SPIKING_NODES = (ir.LIF, ir.CubaLIF, ir.AlphaLIF)

#: Steps a static sample is presented for when ``num_steps`` is not given.
DEFAULT_NUM_STEPS = 25

#: Checkpoint keys under which the source graph (serialized `.t1c` bytes) and its path travel.
CKPT_GRAPH_KEY = "t1c_source_graph"
CKPT_PATH_KEY = "t1c_source_path"


# -- graph (de)serialization ---------------------------------------------------------------
def graph_to_bytes(graph: ir.Graph) -> bytes:
    """The exact bytes of ``graph`` written as a `.t1c` file."""
    with tempfile.TemporaryDirectory(prefix="t1c-") as folder:
        path = Path(folder) / "graph.t1c"
        ir.write(path, graph)
        return path.read_bytes()


def graph_from_bytes(blob: bytes) -> ir.Graph:
    """Read a graph back from :func:`graph_to_bytes`' output (validated like any file)."""
    with tempfile.TemporaryDirectory(prefix="t1c-") as folder:
        path = Path(folder) / "graph.t1c"
        path.write_bytes(bytes(blob))
        return ir.read(path)


def resolve_spike_grad(name: str):
    """A surrogate gradient by name: ``"atan"`` (t1c's exact copy of snnTorch's default) or
    any zero-argument factory in ``snntorch.surrogate`` (``"fast_sigmoid"``, ``"sigmoid"``, ...)."""
    if name == "atan":
        from t1c.bridge.surrogate import atan

        return atan()
    import snntorch.surrogate as surrogate

    factory = getattr(surrogate, name, None) if isinstance(name, str) and not name.startswith("_") else None
    if factory is None or not callable(factory):
        raise ValueError(
            f"spike_grad={name!r} is not a surrogate; use 'atan' or a function of snntorch.surrogate "
            "such as 'fast_sigmoid', 'sigmoid' or 'triangular'"
        )
    try:
        return factory()
    except TypeError as err:
        raise ValueError(
            f"spike_grad={name!r}: snntorch.surrogate.{name}() cannot be built without arguments"
        ) from err


def neuron_map(spike_grad, learn_beta: bool, learn_threshold: bool) -> dict[type, Any]:
    """The ``node_map`` of :func:`~t1c.bridge.ir_to_torch` that builds every neuron node with
    ``spike_grad`` and the learning flags.

    ``learn_beta`` trains the decays a node has: ``LIF``'s ``beta`` (``tau`` in the plain
    form), ``CubaLIF``'s ``alpha`` and ``beta`` (the exact form; the plain form's time
    constants stay fixed); ``AlphaLIF``'s stay fixed (its stored ``tau`` derives from them).
    ``learn_threshold`` trains every neuron's ``v_threshold``.
    """

    def lif(node: ir.LIF) -> LIFModule:
        return LIFModule.from_node(
            node, spike_grad=spike_grad, learn_beta=learn_beta, learn_threshold=learn_threshold
        )

    def cuba(node: ir.CubaLIF) -> CubaLIFModule:
        return CubaLIFModule.from_node(
            node,
            spike_grad=spike_grad,
            learn_alpha=learn_beta and node.alpha is not None,
            learn_beta=learn_beta and node.beta is not None,
            learn_threshold=learn_threshold,
        )

    def alpha(node: ir.AlphaLIF) -> AlphaLIFModule:
        return AlphaLIFModule.from_node(node, spike_grad=spike_grad, learn_threshold=learn_threshold)

    return {ir.LIF: lif, ir.CubaLIF: cuba, ir.AlphaLIF: alpha}


class T1CModule(pl.LightningModule):
    """A LightningModule that fine-tunes a T1C-IR graph as a spiking classifier.

    Args:
        graph: the `.t1c` file to start from, an ``ir.Graph``, or the bytes of a `.t1c`
            file. One ``Input`` node and one ``Output`` node of shape ``[num_classes]``.
            A `.nir` file works too (with ``nir_dt``): it is imported with
            :func:`t1c.nir.from_nir` and exports as `.t1c` like any graph.
        num_steps: time steps each sample is presented for (default
            :data:`DEFAULT_NUM_STEPS`). With ``encoding="sequence"`` the data sets the
            steps: None accepts any number, a number must match every batch.
        encoding: ``"rate"`` (Bernoulli spikes of the intensity), ``"direct"`` (repeated
            input) or ``"sequence"`` (the batch holds its steps: event frames, binned audio).
        loss: ``"ce_count"`` (cross-entropy of spike counts, default), ``"ce_rate"``
            (cross-entropy at every step, averaged), ``"mse_count"`` (spike counts vs
            ``correct_rate``/``incorrect_rate`` targets) or ``"ce_membrane"`` (cross-entropy
            of the output value at every step, averaged; for graphs whose output is not spikes).
        optimizer: a callable ``params -> Optimizer`` (LightningCLI's ``OptimizerCallable``),
            called as ``optimizer(params, lr=lr)`` (``optimizer(params)`` if it takes no
            ``lr``). It is not saved in the checkpoint's hparams: pass it again to
            :meth:`load_from_checkpoint` to continue training with a non-default optimizer.
        lr: learning rate; it wins over an ``lr`` configured inside ``optimizer``.
        qat: train with fake-quantized weights (:func:`t1c.bridge.quantize.enable_qat`).
        qat_weight_bits: weight width for Affine/Conv2d (and CubaLIF's one-to-one ``w_rec``)
            in QAT (SpikingAffine uses its own).
        spike_grad: surrogate gradient name (:func:`resolve_spike_grad`).
        correct_rate, incorrect_rate: firing-rate targets of ``"mse_count"``.
        learn_beta, learn_threshold: also train the neurons' decays / thresholds
            (:func:`neuron_map` says which decays each neuron type has).
        eval_seed: global seed of the rate encoding in validation, prediction and
            :meth:`predict_with`; mixed with a key of each sample, so a sample's spikes do
            not depend on its batch, and validation sees the same spikes every epoch.
        time_first: ``encoding="sequence"`` only: batches are ``[T, B, ...]`` instead of
            ``[B, T, ...]`` (tonic's ``PadTensors(batch_first=True)`` gives the latter).
        grad_checkpoint_steps: in training, sequences longer than this run in chunks of
            this many steps, each chunk's forward pass recomputed during backward (gradient
            checkpointing): activations are kept for one chunk at a time, for one more
            forward pass. The default keeps an SHD-sized step (T=500) below snnTorch's peak
            memory and leaves short sequences (T <= 100) untouched; None: never. Graphs with
            a BatchNorm in training mode always run unchunked (its statistics span all steps).
        nir_dt: the time step a `.nir` ``graph`` is discretized at (NIR's time unit,
            e.g. ``1e-3``); required for `.nir` files, unused otherwise.

    With ``encoding="sequence"``, each step of a sample must have the graph's input shape;
    when the graph's input is 1-D, steps are flattened first (SHD frames ``[1, 700]`` feed
    an Input of shape ``[700]``, as ``nn.Flatten`` would).

    The graph the run started from is kept as :attr:`source_graph` (and
    :attr:`source_path`) and stored in every checkpoint under ``"t1c_source_graph"``.
    """

    def __init__(
        self,
        graph: str | os.PathLike | ir.Graph | bytes,
        num_steps: int | None = None,
        encoding: str = "rate",
        loss: str = "ce_count",
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr: float = 1e-3,
        qat: bool = False,
        qat_weight_bits: int = 8,
        spike_grad: str = "atan",
        correct_rate: float = 0.8,
        incorrect_rate: float = 0.2,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        eval_seed: int = 0,
        time_first: bool = False,
        grad_checkpoint_steps: int | None = 100,
        nir_dt: float | None = None,
    ) -> None:
        super().__init__()
        self._check_args(num_steps, encoding, loss, lr, qat_weight_bits, correct_rate, incorrect_rate)
        self.source_graph, self.source_path = self._read_graph(graph, nir_dt)
        # hparams record where the graph came from (a path or None), never the graph itself,
        # which travels in the checkpoint (on_save_checkpoint). save_hyperparameters reads the
        # __init__ arguments from this frame's locals, hence the rebinding.
        graph = self.source_path
        self.save_hyperparameters(ignore=["optimizer"])
        self.optimizer = optimizer
        self.spike_grad = resolve_spike_grad(spike_grad)
        if num_steps is None and encoding != "sequence":
            num_steps = DEFAULT_NUM_STEPS
        self.num_steps, self.encoding, self.loss_name = num_steps, encoding, loss
        self.time_first = bool(time_first)
        if grad_checkpoint_steps is not None and not is_count(grad_checkpoint_steps):
            raise ValueError(
                f"T1CModule(grad_checkpoint_steps={grad_checkpoint_steps!r}): must be None or a positive integer"
            )
        self.grad_checkpoint_steps = grad_checkpoint_steps

        self.input_name, self.output_name = self._io_names(self.source_graph)
        self.input_shape = tuple(int(d) for d in self.source_graph.nodes[self.input_name].shape)
        out_shape = self.source_graph.output_shapes[self.output_name]
        if len(out_shape) != 1:
            raise ValueError(
                f"T1CModule classifies from a 1-D output, but Output node '{self.output_name}' has "
                f"shape {list(out_shape)}; end the graph with [num_classes] outputs"
            )
        self.num_classes = int(out_shape[0])
        self.output_is_spikes = self._feeds_spikes(self.source_graph, self.output_name)
        if loss != "ce_membrane" and not self.output_is_spikes:
            rank_zero_warn(
                f"T1CModule(loss={loss!r}): the output of '{self.output_name}' is not spikes (no LIF feeds it); "
                "loss='ce_membrane' is meant for such graphs"
            )

        neurons = neuron_map(self.spike_grad, learn_beta, learn_threshold)
        # ir_to_torch returns the deployed function (eval mode); a module that trains starts in
        # training mode (Lightning keeps submodules' modes as they are).
        self.executor: GraphExecutor = ir_to_torch(self.source_graph, node_map=neurons).train()
        if qat:
            quantize.enable_qat(self.executor, qat_weight_bits)
        self.example_input_array = self._example_input()
        self.train_acc = MulticlassAccuracy(self.num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(self.num_classes, average="micro")

    # -- construction helpers ------------------------------------------------------------
    @staticmethod
    def _check_args(num_steps, encoding, loss, lr, qat_weight_bits, correct_rate, incorrect_rate) -> None:
        if num_steps is not None and not is_count(num_steps):
            raise ValueError(
                f"T1CModule(num_steps={num_steps!r}): must be a positive integer (or None: "
                f"{DEFAULT_NUM_STEPS} for static inputs, the data's steps with encoding='sequence')"
            )
        check_encoding(encoding)
        if loss not in LOSSES:
            raise ValueError(f"T1CModule(loss={loss!r}): must be one of {list(LOSSES)}")
        if not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"T1CModule(lr={lr!r}): must be a positive number")
        if (
            isinstance(qat_weight_bits, bool)
            or not isinstance(qat_weight_bits, int)
            or not 1 <= qat_weight_bits <= 32
        ):
            raise ValueError(f"T1CModule(qat_weight_bits={qat_weight_bits!r}): must be an integer in 1..32")
        if not 0.0 <= incorrect_rate <= correct_rate <= 1.0:
            raise ValueError(
                f"T1CModule(correct_rate={correct_rate!r}, incorrect_rate={incorrect_rate!r}): "
                "need 0 <= incorrect_rate <= correct_rate <= 1"
            )

    @staticmethod
    def _read_graph(graph: Any, nir_dt: float | None = None) -> tuple[ir.Graph, str | None]:
        if isinstance(graph, ir.Graph):
            graph.validate()
            return graph, None
        if isinstance(graph, (bytes, bytearray, memoryview)):
            return graph_from_bytes(bytes(graph)), None
        if isinstance(graph, (str, os.PathLike)):
            path = Path(graph)
            if not path.is_file():
                raise FileNotFoundError(
                    f"T1CModule(graph={str(graph)!r}): no such .t1c file; to restore a trained model use "
                    "T1CModule.load_from_checkpoint(ckpt), which needs no .t1c file"
                )
            if path.suffix.lower() == ".nir":  # NIR model: imported exactly (t1c.nir, docs/nir.md)
                if nir_dt is None:
                    raise ValueError(
                        f"T1CModule(graph={str(graph)!r}): a .nir graph needs nir_dt, the time step its "
                        "neurons are discretized at, e.g. T1CModule('model.nir', nir_dt=1e-3)"
                    )
                from t1c.nir import from_nir

                return from_nir(path, dt=nir_dt), str(path)
            return ir.read(path), str(path)
        raise TypeError(
            f"T1CModule(graph=...) takes a .t1c path, an ir.Graph or .t1c bytes, got {type(graph).__name__}"
        )

    @staticmethod
    def _io_names(graph: ir.Graph) -> tuple[str, str]:
        if len(graph.input_names) != 1 or len(graph.output_names) != 1:
            raise ValueError(
                f"T1CModule needs a graph with one Input and one Output node, got inputs "
                f"{graph.input_names} and outputs {graph.output_names}"
            )
        return graph.input_names[0], graph.output_names[0]

    @staticmethod
    def _feeds_spikes(graph: ir.Graph, output: str) -> bool:
        """Whether the Output node receives spikes (only neurons, :data:`SPIKING_NODES`, feed it)."""
        preds = graph.predecessors(output)
        return bool(preds) and all(isinstance(graph.nodes[p], SPIKING_NODES) for p in preds)

    def _example_input(self) -> Tensor:
        """A zero batch of one sample in the layout ``forward`` takes."""
        if self.encoding != "sequence":
            return torch.zeros(1, *self.input_shape)
        steps = self.num_steps or 1
        return (
            torch.zeros(steps, 1, *self.input_shape)
            if self.time_first
            else torch.zeros(1, steps, *self.input_shape)
        )

    # -- the public helpers (also used by the T1CExport callback) ------------------------
    def encode(self, x: Tensor, generator: torch.Generator | None = None, seed: int | None = None) -> Tensor:
        """Encode a batch as ``[T, B, *input_shape]``.

        Args:
            x: a static batch ``[B, *input_shape]``, or with ``encoding="sequence"`` a batch
                with its steps ``[B, T, ...]`` (``[T, B, ...]`` when ``time_first``).
            generator: seeded generator for the rate spikes of the whole batch (training
                draws from torch's global random state when None).
            seed: a global seed for per-sample rate spikes (:func:`~t1c.lightning.encoding.sample_seeds`):
                each sample's spikes then depend only on the sample and ``seed``.
        """
        if self.encoding == "sequence":
            return self._steps(encode(x, self.num_steps, "sequence", time_first=self.time_first))
        seeds = None if seed is None or self.encoding != "rate" else sample_seeds(x, seed)
        return encode(x, self.num_steps, self.encoding, generator=generator, seeds=seeds)

    def _takes_step(self, step_shape: tuple[int, ...]) -> bool:
        """Whether a time step of this shape feeds the graph's Input (1-D inputs take it flattened)."""
        return tuple(step_shape) == self.input_shape or (
            len(self.input_shape) == 1 and math.prod(step_shape) == self.input_shape[0]
        )

    def _steps(self, xs: Tensor) -> Tensor:
        """Time-first steps ``[T, B, ...]`` with the graph's input shape (1-D inputs flattened)."""
        step_shape = tuple(xs.shape[2:])
        if step_shape == self.input_shape:
            return xs
        if self._takes_step(step_shape):
            return xs.reshape(*xs.shape[:2], -1)
        layout = "[T, B, ...]" if self.time_first else "[B, T, ...]"
        raise ValueError(
            f"T1CModule(encoding='sequence'): each time step of the batch has shape {list(step_shape)} "
            f"(batch {layout}), but the graph's Input '{self.input_name}' takes {list(self.input_shape)}; "
            "frame the events to that shape (sensor size, polarities) or export the model with that input"
        )

    def logits(self, ys: Tensor) -> Tensor:
        """Class scores ``[B, classes]`` from outputs per step ``[T, B, classes]``.

        Spike counts over time when the output is spikes; the mean output over time otherwise.
        """
        return class_scores(ys, self.output_is_spikes)

    @torch.no_grad()
    def predict_with(self, executor: torch.nn.Module, x: Tensor, seed: int | None = None) -> Tensor:
        """Predicted classes ``[B]`` of any executor on deterministically encoded inputs.

        Each sample's rate spikes are drawn from a seed made of the sample itself and
        ``seed`` (default ``eval_seed``), so the live executor, a re-imported file and a
        quantized copy see exactly the same spike trains, whatever the batch size, and
        their predictions are comparable one to one. Sequences (``encoding="sequence"``)
        are used as they are. Ties between classes go to the lowest index.

        Args:
            executor: anything with ``run_sequence(xs) -> (ys, state)``, e.g. ``self.executor``,
                ``t1c.bridge.load(path)`` or ``quantize.quantize_executor(self.executor)``.
            x: a batch as :meth:`encode` takes it.
            seed: global encoding seed.

        The executor runs in eval mode (the deployed function: no Dropout, BatchNorm on its
        running statistics, which stay untouched); each submodule's mode is restored afterwards.
        """
        seed = self.hparams.eval_seed if seed is None else seed
        x = x.to(_device_of(executor, x.device))
        with eval_mode(executor):
            ys, _ = executor.run_sequence(self.encode(x, seed=int(seed)))
        return self.logits(ys).argmax(-1)

    def export_graph(self) -> ir.Graph:
        """The current network as an ``ir.Graph``: the source topology with trained parameters.

        With QAT on, the exported weights are the fake-quantized ones (on the grid).
        """
        executor = self.executor
        if quantize.qat_enabled(executor):
            executor = quantize.disable_qat(copy.deepcopy(executor))
        sample = torch.zeros(1, *self.input_shape, device=_device_of(executor, torch.device("cpu")))
        graph = to_ir(executor, sample)
        return graph

    # -- forward and losses --------------------------------------------------------------
    def forward(self, x: Tensor, generator: torch.Generator | None = None, seed: int | None = None) -> Tensor:
        """Outputs per step ``[T, B, classes]`` for a batch ``x``, from the zero state (arguments of :meth:`encode`)."""
        xs = self.encode(x, generator, seed)
        chunk = self.grad_checkpoint_steps
        if chunk is None or xs.shape[0] <= chunk or not torch.is_grad_enabled() or self._batch_statistics():
            ys, _ = self.executor.run_sequence(xs)
            return ys
        from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

        outs, state = [], None
        # Recomputation runs whole chunks: stopping it early raises through the executor's loop.
        with set_checkpoint_early_stop(False):
            for part in xs.split(chunk):  # the state carried between chunks: the same steps as one run
                ys, state = checkpoint(self.executor.run_sequence, part, state, use_reentrant=False)
                outs.append(ys)
        return torch.cat(outs)

    def _batch_statistics(self) -> bool:
        """Whether a BatchNorm trains on batch statistics: chunks would change them and a
        recomputed chunk would update the running ones twice, so such graphs run unchunked."""
        return any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in self.executor.modules()
        )

    def compute_loss(self, ys: Tensor, y: Tensor) -> Tensor:
        """The configured loss of outputs per step ``ys [T, B, C]`` against labels ``y [B]``."""
        name = self.loss_name
        if name == "ce_count":
            return F.cross_entropy(ys.sum(0), y)
        if name in ("ce_rate", "ce_membrane"):
            steps = ys.shape[0]
            return F.cross_entropy(ys.flatten(0, 1), y.repeat(steps), reduction="sum") / (steps * y.shape[0])
        steps = ys.shape[0]  # mse_count, snntorch.functional.mse_count_loss
        on, off = int(steps * self.hparams.correct_rate), int(steps * self.hparams.incorrect_rate)
        target = torch.full_like(ys[0], float(off))
        target.scatter_(1, y.unsqueeze(1), float(on))
        return F.mse_loss(ys.sum(0), target) / steps

    # -- Lightning hooks, in the order the Trainer calls them ----------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.executor.parameters() if p.requires_grad]
        try:
            return self.optimizer(params, lr=self.hparams.lr)
        except TypeError as err:
            if "lr" not in str(err):
                raise
            return self.optimizer(params)  # a partial that already fixes lr

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        ys = self(x)
        loss = self.compute_loss(ys, y)
        self.train_acc(self.logits(ys), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, batch_size=len(y))
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        ys = self(x, seed=int(self.hparams.eval_seed))
        self.val_acc(self.logits(ys), y)
        self.log("val_loss", self.compute_loss(ys, y), on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("val_acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(y))

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.predict_with(self.executor, x)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CKPT_GRAPH_KEY] = graph_to_bytes(self.source_graph)
        checkpoint[CKPT_PATH_KEY] = self.source_path

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        blob = checkpoint.get(CKPT_GRAPH_KEY)
        if blob is None:
            return
        stored = graph_from_bytes(blob)
        diff = ir.topology_diff(stored, self.source_graph)
        if diff:
            raise ValueError(
                "this checkpoint was trained from a graph with a different topology than T1CModule's: "
                + "; ".join(diff[:5])
                + " (load it with T1CModule.load_from_checkpoint(ckpt), which rebuilds its own graph)"
            )

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: str | os.PathLike | IO,
        map_location: Any = None,
        hparams_file: str | os.PathLike | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> T1CModule:
        """Rebuild a trained module from a checkpoint alone: the source `.t1c` is inside it.

        Arguments as :meth:`lightning.pytorch.LightningModule.load_from_checkpoint`; pass
        ``graph=`` to override the stored graph (it must have the same topology).
        """
        from lightning.fabric.utilities.cloud_io import _load as pl_load

        if not isinstance(checkpoint_path, (str, os.PathLike)):  # a file object: read it once
            checkpoint_path = io.BytesIO(checkpoint_path.read())
        checkpoint = pl_load(checkpoint_path, map_location="cpu", weights_only=kwargs.get("weights_only"))
        if isinstance(checkpoint_path, io.BytesIO):
            checkpoint_path.seek(0)
        blob = None if "graph" in kwargs else checkpoint.get(CKPT_GRAPH_KEY)
        # The stored graph is handed to __init__ as a temporary .t1c path, so that any
        # instantiator (LightningCLI's parses the arguments against the signature) accepts it.
        with tempfile.TemporaryDirectory(prefix="t1c-ckpt-") as folder:
            if blob is not None:
                kwargs["graph"] = str(Path(folder) / "source_graph.t1c")
                Path(kwargs["graph"]).write_bytes(bytes(blob))
            model = super().load_from_checkpoint(
                checkpoint_path, map_location, hparams_file, strict, **kwargs
            )
        if blob is not None:
            model.source_path = checkpoint.get(CKPT_PATH_KEY)
            model.hparams["graph"] = model.source_path
        return model


def class_scores(ys: Tensor, spikes: bool) -> Tensor:
    """Class scores ``[B, classes]`` from outputs per step ``[T, B, classes]``: spike counts over
    time (``spikes``), else the mean output over time (:meth:`T1CModule.logits`)."""
    return ys.sum(0) if spikes else ys.mean(0)


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """``module`` in eval mode inside the block; every submodule's own mode restored afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _device_of(module: torch.nn.Module, default: torch.device) -> torch.device:
    """The device of a module's first parameter or buffer (``default`` when it has none)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return default
