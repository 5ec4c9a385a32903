"""Several LoRA adapters on one base model: SageMaker's adapter inference components.

An endpoint that hosts several model lines runs one base model (the base inference
component) and one LoRA adapter per line (an adapter inference component on it). SageMaker
tells the container about adapters through its LoRA API: ``POST /adapters`` with
``{"name", "src"}`` loads one, ``DELETE /adapters/{name}`` unloads it, and an invocation of an
adapter component carries the ``X-Amzn-SageMaker-Adapter-Identifier`` header
(docs/serving.md, "Several model lines on one endpoint").

``AdapterSet`` keeps the adapters of one base model. Each is loaded unmerged into one peft
model under its own slot name (``<name>_<n>``), so rows of different adapters share a decode
step: peft's mixed-batch LoRA (``adapter_names=[...]``, one per row, ``__base__`` for the
bare base) applies each row's own adapter. Registering a name again swaps the adapter in:
new requests get the new weights, rows already running finish on the old ones, which are
unloaded once no row uses them.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.component_names import COMPONENT_NAME_RULE, is_component_name
from tuneloop.models.catalog import resolve_model
from tuneloop.models.loading import is_adapter_dir, read_model_metadata

ADAPTER_HEADER = "X-Amzn-SageMaker-Adapter-Identifier"


class AdapterError(ValueError):
    """An adapter cannot be registered (bad name, source or base); HTTP 400."""


class UnknownAdapterError(LookupError):
    """No adapter of that name is registered; HTTP 404."""


class AdaptersUnsupportedError(RuntimeError):
    """This server serves one merged model, not a base with adapters; HTTP 409."""


@dataclass(frozen=True)
class Adapter:
    name: str
    """The adapter's (and its inference component's) name."""
    model_version: str
    """From the adapter's ``tuneloop_model.json``, else its folder name."""
    slot: str
    """peft's name for these weights; a re-registered name gets a new slot."""
    source: str
    extracted: Path | None = None
    """The temporary folder a ``.tar.gz`` source was unpacked to (removed on unload)."""


def check_adapter_name(name: Any) -> str:
    # An adapter's name is its inference component's.
    if not is_component_name(name):
        raise AdapterError(f"adapter name {name!r} must be {COMPONENT_NAME_RULE}")
    return str(name)


class AdapterSet:
    """The adapters loaded into one base model. Not thread-safe on its own: the
    ``Generator``'s lock serializes it with decode steps."""

    def __init__(self, base_model: Any, base_dir: Path) -> None:
        self.base_model = base_model
        self.model: Any = base_model
        """The base, or the peft model wrapping it while an adapter is loaded."""
        self.base_dir = Path(base_dir).resolve()
        self._by_name: dict[str, Adapter] = {}
        self._by_slot: dict[str, Adapter] = {}
        self._retired: list[Adapter] = []
        self._loaded = 0

    @property
    def mixed(self) -> bool:
        """True once the model is a peft model: every forward then names each row's adapter."""
        return self.model is not self.base_model

    def names(self) -> dict[str, Adapter]:
        return dict(self._by_name)

    def get(self, name: str) -> Adapter:
        adapter = self._by_name.get(name)
        if adapter is None:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise UnknownAdapterError(f"no adapter named {name!r} (registered: {known})")
        return adapter

    def version_of_slot(self, slot: str) -> str:
        """The model version of loaded weights (retired ones too, while rows still use them)."""
        return self._by_slot[slot].model_version

    def register(self, name: str, source: str) -> Adapter:
        """Load the adapter at ``source`` (a folder or a ``.tar.gz`` of one) as ``name``;
        an existing ``name`` is replaced for new requests."""
        check_adapter_name(name)
        folder, extracted = _adapter_folder(source)
        try:
            self._check_base(folder, name)
            meta = read_model_metadata(folder)
            self._loaded += 1
            slot = f"{name.replace('-', '_')}_{self._loaded}"
            self._load(folder, slot)
        except Exception:
            if extracted is not None:
                shutil.rmtree(extracted, ignore_errors=True)
            raise
        adapter = Adapter(
            name=name,
            model_version=str(meta.get("model_version") or folder.name),
            slot=slot,
            source=source,
            extracted=extracted,
        )
        previous = self._by_name.get(name)
        self._by_name[name] = self._by_slot[slot] = adapter
        if previous is not None:
            self._retired.append(previous)
        return adapter

    def unregister(self, name: str) -> Adapter:
        """New requests for ``name`` fail from now on; its weights go once no row uses them."""
        adapter = self.get(name)
        del self._by_name[name]
        self._retired.append(adapter)
        return adapter

    def release(self, slots_in_use: set[str]) -> None:
        """Unload retired adapters that no running row uses (called between decode steps)."""
        keep: list[Adapter] = []
        for adapter in self._retired:
            if adapter.slot in slots_in_use:
                keep.append(adapter)
            else:
                self._unload(adapter.slot)
        self._retired = keep

    def _check_base(self, folder: Path, name: str) -> None:
        if not is_adapter_dir(folder):
            raise AdapterError(
                f"adapter {name!r}: {folder} is not a TuneLoop adapter folder "
                "(no tuneloop_model.json with adapter: true)"
            )
        base_ref = read_model_metadata(folder).get("base_model")
        if not isinstance(base_ref, str) or not base_ref:
            raise AdapterError(f"adapter {name!r}: tuneloop_model.json names no base_model")
        try:
            base = resolve_model(base_ref).resolve()
        except Exception as exc:  # an unknown catalog name or a missing folder
            raise AdapterError(f"adapter {name!r}: base {base_ref!r} not found: {exc}") from exc
        if base != self.base_dir:
            raise AdapterError(
                f"adapter {name!r} was trained on {base_ref!r}; this endpoint's base "
                f"component serves {self.base_dir.name!r}"
            )

    def _load(self, folder: Path, slot: str) -> None:
        from peft import PeftModel

        try:
            if not self.mixed:
                self.model = PeftModel.from_pretrained(self.model, folder, adapter_name=slot)
            else:
                self.model.load_adapter(folder, adapter_name=slot)
        except Exception as exc:
            raise AdapterError(f"adapter weights in {folder} do not load: {exc}") from exc
        self.model.eval()

    def _unload(self, slot: str) -> None:
        adapter = self._by_slot.pop(slot)
        if adapter.extracted is not None:
            shutil.rmtree(adapter.extracted, ignore_errors=True)
        if len(self.model.peft_config) > 1:
            self.model.delete_adapter(slot)
            return
        # peft cannot run with no adapter left: take the LoRA layers out again.
        self.base_model = self.model = self.model.unload()


def _adapter_folder(source: str) -> tuple[Path, Path | None]:
    """The adapter's folder, and the temporary folder it was unpacked to (if any)."""
    path = Path(source)
    if path.is_dir():
        return path, None
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        target = Path(tempfile.mkdtemp(prefix="adapter-"))
        with tarfile.open(path) as archive:
            archive.extractall(target, filter="data")
        return target, target
    raise AdapterError(f"adapter source {source!r} is neither a folder nor a .tar.gz file")
