"""Batches whose rows use different LoRA adapters, at one pair of matmuls per layer.

peft serves such a batch (`generate(adapter_names=...)`) by looping, in every adapted layer, over the
adapters present: it gathers that adapter's rows, runs its two small matmuls and adds the result
back into those rows. Each of those is a small op, and on a CPU a small op's dispatch costs about as
much as its arithmetic: with every linear layer of SmolLM2-135M adapted (210 of them), two adapters
cost about 1 600 extra ops per decoding step, far more than the forward pass itself has.

Here the adapters of one batch are stacked instead: their A matrices one above the other
([sum of ranks, in]), their B matrices side by side with each one's scaling folded in
([out, sum of ranks]), and a 0/1 mask per row keeps each row to its own adapter's slice of the rank
dimension (all zeros for a row on the base model):

    delta = ((x @ A.T) * mask) @ B.T

Three ops per layer (two when every row is on one adapter), however many adapters the batch holds;
the masked-out slots add exact zeros. For the batch, each peft LoRA layer's forward is replaced by
its base layer plus that delta (a layer no adapter of the batch adapts runs its base layer alone),
so peft still loads, names and evicts the adapters but its per-layer Python is skipped (with
peft's forward and a hook adding the delta, a three-token request on one adapter took 0.26 s
where the base model took 0.20 s, on a 2-core CPU). Adapters this cannot express (DoRA and other
variants, trained biases, modules_to_save, non-Linear layers) are left to peft's `adapter_names`
path (`stackable`).
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import ExitStack, contextmanager


def stackable(model, name: str) -> bool:
    """Whether adapter `name` of the PeftModel `model` is plain LoRA on Linear layers only."""
    from peft.tuners.lora.layer import Linear, LoraLayer

    config = model.peft_config[name]
    if (
        config.bias != "none"
        or config.modules_to_save
        or getattr(config, "trainable_token_indices", None)
        or getattr(config, "lora_bias", False)
    ):
        return False
    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and name in m.lora_A]
    return bool(layers) and all(type(m) is Linear and name not in m.lora_variant for m in layers)


class StackedLora:
    """The stacked weights of the adapter sets recent batches used, for one PeftModel.

    Each adapter's per-layer A and scaled B are prepared once; a set's stack is then one
    concatenation per layer and matrix, and the last `cache_size` sets are kept. `forget()` drops
    everything when an adapter is added or removed.
    """

    def __init__(self, cache_size: int = 4):
        self.cache_size = cache_size
        self._layers: list | None = None  # the model's LoRA layers
        self._parts: dict[str, dict[int, tuple]] = {}  # adapter → layer index → (A, scaled B, rank)
        self._stacks: OrderedDict[tuple[str, ...], tuple[list, dict]] = OrderedDict()

    def forget(self) -> None:
        self._layers = None
        self._parts.clear()
        self._stacks.clear()

    @contextmanager
    def rows(self, model, row_adapters: list[str | None]):
        """Within this context, `model` gives row i adapter `row_adapters[i]` (None: the base model)."""
        import torch

        names = tuple(sorted({n for n in row_adapters if n is not None}))
        layers, layouts = self._stacked(model, names)
        index = torch.tensor([names.index(n) if n is not None else -1 for n in row_adapters])
        # One mask per layout of the rank dimension (which adapter owns each slot): usually one for all layers.
        dtype = layers[0][1].dtype if layers else None
        uniform = len(names) == 1 and None not in row_adapters  # every row on one adapter: no mask needed
        masks = {
            layout: None if uniform else (index.to(owner.device)[:, None] == owner[None, :]).to(dtype)[:, None, :]
            for layout, owner in layouts.items()
        }
        stacked = {id(module): (a, b, masks[layout]) for module, a, b, layout in layers}
        with ExitStack() as stack:
            for module in self._lora_layers(model):
                base = module.get_base_layer()
                # (a bound method, not the module itself: a module assigned to an attribute becomes a submodule)
                forward = _BasePlusDelta(base, *stacked[id(module)]) if id(module) in stacked else base.__call__
                stack.enter_context(_forward_replaced(module, forward))
            yield

    def _stacked(self, model, names: tuple[str, ...]) -> tuple[list, dict]:
        """Per adapted layer (module, A, B, layout), and each layout's owner of every rank slot."""
        if names in self._stacks:
            self._stacks.move_to_end(names)
            return self._stacks[names]
        import torch

        parts = [self._adapter_parts(model, n) for n in names]
        layers, layouts = [], {}
        for i, module in enumerate(self._lora_layers(model) if names else ()):
            present = [(k, p[i]) for k, p in enumerate(parts) if i in p]
            if not present:
                continue
            a = torch.cat([a for _, (a, _, _) in present])
            b = torch.cat([b for _, (_, b, _) in present], dim=1)
            layout = tuple((k, r) for k, (_, _, r) in present)
            if layout not in layouts:
                layouts[layout] = torch.cat([torch.full((r,), k) for k, r in layout]).to(a.device)
            layers.append((module, a, b, layout))
        self._stacks[names] = (layers, layouts)
        while len(self._stacks) > self.cache_size:
            self._stacks.popitem(last=False)
        return layers, layouts

    def _lora_layers(self, model) -> list:
        from peft.tuners.lora.layer import LoraLayer

        if self._layers is None:
            self._layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
        return self._layers

    def _adapter_parts(self, model, name: str) -> dict[int, tuple]:
        if name not in self._parts:
            import torch

            parts = {}
            with torch.no_grad():
                for i, module in enumerate(self._lora_layers(model)):
                    if name in module.lora_A:
                        dtype = module.get_base_layer().weight.dtype
                        a = module.lora_A[name].weight.to(dtype)
                        b = (module.lora_B[name].weight * module.scaling[name]).to(dtype)
                        parts[i] = (a, b, module.r[name])
            self._parts[name] = parts
        return self._parts[name]


@contextmanager
def _forward_replaced(module, forward):
    """`module` runs `forward` instead of its own forward method for the duration."""
    module.forward = forward  # an instance attribute, found before the class's method
    try:
        yield
    finally:
        del module.forward


class _BasePlusDelta:
    """A LoRA layer's forward for one batch: the base layer's output plus each row's own adapter's delta."""

    def __init__(self, base, a, b, mask):
        self.base, self.a, self.b, self.mask = base, a, b, mask

    def __call__(self, x, *args, **kwargs):
        # Two or three ops, in place on the base layer's fresh output: at a decoding step each op
        # costs more in dispatch than in arithmetic, and this runs in every adapted layer.
        output = self.base(x, *args, **kwargs)
        low = x @ self.a.T
        if self.mask is not None:
            low.mul_(self.mask if x.dim() == 3 else self.mask.view(x.shape[0], *[1] * (x.dim() - 2), -1))
        output.view(-1, output.shape[-1]).addmm_(low.view(-1, low.shape[-1]), self.b.T)
        return output
