"""The residual actor as an exported program: what evaluating a checkpoint runs.

A training script saves its deterministic residual, `agent.residual_mean` (raw states float32
[N, STATE_DIM], base actions float32 [N, ACTION_DIM] -> residual mean [N, ACTION_DIM], observation
normalization and any input features included), traced by torch.export, in every checkpoint it writes.
Evaluation runs that program and never the script, so a copied script with another network, activation
or input features is evaluated exactly as it trained. A script that steers GR00T's flow (ppo_noise_groot.py)
saves its noise policy's mean the same way, as a program of the states alone (flow starts [N, horizon, ACTION_DIM]).

The program is the `torch.export.save` archive, kept as a uint8 tensor so that the checkpoint still loads
with `torch.load(weights_only=True)`. It is read here, not with `torch.export.load`, which in torch 2.13
runs code from the file: it unpickles tensors and "opaque" constants (`torch.load(weights_only=False)`,
`pickle.loads`, and a weights-only load that falls back to a full one for the example inputs), evaluates
shape expressions with sympy (`eval`) and the guards with `exec`, imports the modules its tree specs name,
and calls any attribute of `torch` a node names. `ActorProgram` reads the graph's JSON and the raw tensor
bytes, and calls ATen operators one after another: a file can make it compute, never run code.
"""

from __future__ import annotations

import copy
import io
import json
import re
import sys
import zipfile
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
from torch._export.serde.schema import Layout, MemoryFormat, ScalarType

PROGRAM_MAX_BYTES = 64 << 20
"""Largest program read (archive and the files in it): the scripts' actors take well under 1 MB."""
SCHEMA_MAJOR = 8
"""The torch.export serialization schema this reader understands (torch 2.13 writes 8.x)."""
ATEN_OPERATOR = re.compile(r"torch\.ops\.aten\.(\w+)\.(\w+)")
# The schema's enumerations (torch._export.serde.serialize has these maps too, but importing it takes seconds).
DTYPES = {ScalarType.BYTE: torch.uint8, ScalarType.CHAR: torch.int8, ScalarType.SHORT: torch.int16,
          ScalarType.INT: torch.int32, ScalarType.LONG: torch.int64, ScalarType.HALF: torch.float16,
          ScalarType.FLOAT: torch.float32, ScalarType.DOUBLE: torch.float64, ScalarType.BOOL: torch.bool,
          ScalarType.BFLOAT16: torch.bfloat16}
LAYOUTS = {Layout.Strided: torch.strided}
MEMORY_FORMATS = {MemoryFormat.ContiguousFormat: torch.contiguous_format, MemoryFormat.ChannelsLast: torch.channels_last,
                  MemoryFormat.ChannelsLast3d: torch.channels_last_3d, MemoryFormat.PreserveFormat: torch.preserve_format}


class _Function(nn.Module):
    """A function of tensors as a module, for torch.export: the tensors it reads (the agent's actor
    weights and normalization statistics) become the program's constants, and only those."""

    def __init__(self, function: Callable[..., torch.Tensor]):
        super().__init__()
        self.function = function

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.function(*inputs)


def export_actor(residual_mean: Callable[..., torch.Tensor], *input_dims: int) -> torch.Tensor:
    """The program of `residual_mean`, a method of the agent, as a uint8 tensor for a checkpoint; it takes
    float32 [N, d] tensors of the `input_dims` (the residual: states and base actions, `state_dim, action_dim`;
    a noise policy: states alone).

    It is traced from a copy of the agent on the CPU, so the training agent, its device, its mode and
    the random number generators are untouched. Before it is returned, the program is read back and run
    as evaluation will run it: a script whose actor it cannot reproduce exactly fails at its first save,
    not at evaluation."""
    agent = copy.deepcopy(residual_mean.__self__).cpu().eval()
    actor = _Function(getattr(agent, residual_mean.__name__))
    batch = torch.export.Dim("batch")
    program = torch.export.export(actor, tuple(torch.zeros(2, dim) for dim in input_dims),
                                  dynamic_shapes={"inputs": tuple({0: batch} for _ in input_dims)})
    archive = io.BytesIO()
    torch.export.save(program, archive)
    data = torch.frombuffer(bytearray(archive.getvalue()), dtype=torch.uint8)
    exported = ActorProgram(data)
    for n in (1, 3):  # batch sizes other than the traced one; no random draw, so a seeded run stays what it was
        inputs = [torch.linspace(-3.0, 3.0, n * dim).reshape(n, dim) for dim in input_dims]
        with torch.no_grad():
            expected = actor(*inputs).numpy()
        if not np.array_equal(exported(*(tensor.numpy() for tensor in inputs)), expected, equal_nan=True):
            raise ValueError(f"the exported {residual_mean.__qualname__} computes other outputs than the method "
                             f"itself (for a batch of {n}): keep it a deterministic function of its tensors")
    return data


class _Value(NamedTuple):
    """A tensor or number the program was given or computed, by name."""

    name: str


class _Values(list):
    """A list argument that holds `_Value`s (tensors, sizes), looked up when the node runs."""


class ActorProgram:
    """An exported residual actor, read without running code from its file (see the module docstring).

    `program(states, base_actions)` returns the residual mean as a float32 array (a program of other inputs,
    e.g. a noise policy's `program(states)`, takes those); ValueError with the reason when the bytes are not
    such a program, or use what this reader does not run."""

    def __init__(self, data: torch.Tensor):
        if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8 or data.dim() != 1:
            raise ValueError("the actor program is not a byte tensor")
        if data.numel() > PROGRAM_MAX_BYTES:
            raise ValueError(f"the actor program takes {data.numel()} bytes, more than {PROGRAM_MAX_BYTES}")
        try:
            files = _archive_files(data.numpy().tobytes())
            program = json.loads(files["models/model.json"])
            if program["schema_version"]["major"] != SCHEMA_MAJOR:
                raise ValueError(f"its torch.export schema is {program['schema_version']['major']}.x, "
                                 f"this reader's is {SCHEMA_MAJOR}.x")
            if files.get("byteorder", sys.byteorder.encode()) != sys.byteorder.encode():
                raise ValueError("its tensors are in another byte order than this machine's")
            tensors = _tensors(files, "weights") | _tensors(files, "constants")
            graph = program["graph_module"]
            self.inputs, self.values = _inputs(graph["signature"]["input_specs"], tensors)
            self.output = _output(graph["signature"]["output_specs"])
            self.nodes = [_node(node) for node in graph["graph"]["nodes"]]
        except ValueError as error:
            raise ValueError(f"the actor program is refused: {error}") from None
        except (KeyError, TypeError, IndexError, AttributeError, RuntimeError, OverflowError, zipfile.BadZipFile) as error:
            raise ValueError(f"the actor program is not a torch.export archive of an actor ({type(error).__name__}: "
                             f"{error})") from None

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        if len(arrays) != len(self.inputs):
            raise ValueError(f"the program takes {len(self.inputs)} tensors, not {len(arrays)}")
        values = dict(self.values)
        for name, array in zip(self.inputs, arrays):
            values[name] = torch.tensor(np.asarray(array), dtype=torch.float32)  # a copy: the caller's arrays stay theirs
        with torch.no_grad():
            for operator, args, kwargs, outputs in self.nodes:
                result = operator(*[_resolve(arg, values) for arg in args],
                                  **{name: _resolve(arg, values) for name, arg in kwargs.items()})
                _store(outputs, result, values)
        return values[self.output].numpy()


def _archive_files(archive: bytes) -> dict[str, bytes]:
    """The files of a torch.export.save archive by their path below its top folder, sizes checked
    before anything is read."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        entries = zipped.infolist()
        if sum(entry.file_size for entry in entries) > PROGRAM_MAX_BYTES:
            raise ValueError(f"its files hold more than {PROGRAM_MAX_BYTES} bytes")
        return {entry.filename.split("/", 1)[-1]: zipped.read(entry) for entry in entries}


def _tensors(files: dict[str, bytes], kind: str) -> dict[str, torch.Tensor]:
    """The weights or constants of the archive, from their raw bytes (a pickled one is refused)."""
    config = json.loads(files.get(f"data/{kind}/model_{kind}_config.json", b'{"config": {}}'))["config"]
    tensors = {}
    for name, payload in config.items():
        if payload["use_pickle"] or payload["tensor_meta"] is None:
            raise ValueError(f"its {kind[:-1]} {name!r} is a pickled object, which evaluation does not unpickle")
        meta = payload["tensor_meta"]
        dtype = DTYPES[meta["dtype"]]
        raw = files[f"data/{kind}/{payload['path_name']}"]
        storage = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        sizes, strides = [size["as_int"] for size in meta["sizes"]], [stride["as_int"] for stride in meta["strides"]]
        tensors[name] = storage.as_strided(sizes, strides, meta["storage_offset"]["as_int"])  # bounds-checked
    return tensors


def _inputs(specs: list[dict], tensors: dict[str, torch.Tensor]) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The names of the user inputs, and the values of the lifted weights and constants."""
    inputs, values = [], {}
    for spec in specs:
        (kind, value), = spec.items()
        if kind == "user_input" and "as_tensor" in value["arg"]:
            inputs.append(value["arg"]["as_tensor"]["name"])
        elif kind in ("parameter", "buffer", "tensor_constant"):
            values[value["arg"]["name"]] = tensors[value.get("parameter_name") or value.get("buffer_name")
                                                   or value["tensor_constant_name"]]
        else:
            raise ValueError(f"it takes a {kind} input; an actor takes tensors (states, base actions), nothing else")
    if not inputs:
        raise ValueError("it takes no tensor input; an actor takes states (and base actions)")
    return inputs, values


def _output(specs: list[dict]) -> str:
    if len(specs) != 1 or "as_tensor" not in specs[0].get("user_output", {}).get("arg", {}):
        raise ValueError(f"it returns {[kind for spec in specs for kind in spec]}; an actor returns one tensor "
                         "and changes none of its inputs or buffers")
    return specs[0]["user_output"]["arg"]["as_tensor"]["name"]


def _operator(target: str) -> torch._ops.OpOverload:
    """An ATen operator by its serialized name; nothing else is called, and no operator that opens a file."""
    match = ATEN_OPERATOR.fullmatch(target)
    operator = None
    if match:
        try:
            operator = getattr(getattr(torch.ops.aten, match[1]), match[2])
        except (AttributeError, RuntimeError):
            pass
    if not isinstance(operator, torch._ops.OpOverload) or any(a.name == "filename" for a in operator._schema.arguments):
        raise ValueError(f"it calls {target}, which evaluation does not run (only ATen tensor operators)")
    return operator


def _node(node: dict) -> tuple:
    args, kwargs = [], {}
    for named in node["inputs"]:
        if named.get("kind") == 2:  # ArgumentKind.KEYWORD
            kwargs[named["name"]] = _argument(named["arg"])
        else:
            args.append(_argument(named["arg"]))
    outputs = [_argument(output) for output in node["outputs"]]  # none for an assertion, several for a tuple
    return _operator(node["target"]), args, kwargs, outputs[0] if len(outputs) == 1 else outputs or None


def _argument(argument: dict):
    """An argument (or output) of a node, with the program's values as `_Value` names."""
    (kind, value), = argument.items()
    if kind == "as_tensor":
        return _Value(value["name"])
    if kind == "as_tensors":
        return _Values(_Value(tensor["name"]) for tensor in value)
    if kind in ("as_sym_int", "as_sym_float", "as_sym_bool", "as_optional_tensor"):
        return _union(value)
    if kind in ("as_sym_ints", "as_sym_floats", "as_sym_bools", "as_optional_tensors"):
        return _Values(_union(item) for item in value)
    if kind in ("as_none", "as_int", "as_ints", "as_bool", "as_bools", "as_string", "as_strings"):
        return None if kind == "as_none" else value
    if kind == "as_float":
        return float(value)  # infinities and NaN are written as strings
    if kind == "as_floats":
        return [float(item) for item in value]
    if kind == "as_scalar_type":
        return DTYPES[value]
    if kind == "as_layout":
        return LAYOUTS[value]
    if kind == "as_memory_format":
        return MEMORY_FORMATS[value]
    if kind == "as_device" and value["type"] == "cpu":
        return torch.device("cpu")
    raise ValueError(f"it passes an argument {kind}={value!r}, which evaluation does not run")


def _union(value: dict):
    """A symbolic number or optional tensor: a value by name, a constant, or None."""
    (kind, item), = value.items()
    if kind in ("as_name", "as_tensor"):
        return _Value(item if kind == "as_name" else item["name"])
    if kind in ("as_int", "as_float", "as_bool", "as_none"):
        return None if kind == "as_none" else item
    raise ValueError(f"it passes an argument {kind}={item!r}, which evaluation does not run")


def _resolve(argument, values: dict):
    if type(argument) is _Value:
        return values[argument.name]
    if type(argument) is _Values:
        return [values[item.name] if type(item) is _Value else item for item in argument]
    return argument


def _store(outputs, result, values: dict) -> None:
    if isinstance(outputs, _Value):
        values[outputs.name] = result
    elif isinstance(outputs, list):
        for output, item in zip(outputs, result):
            _store(output, item, values)
