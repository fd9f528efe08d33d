"""`Client`: Xinference's RESTful client calls over httpx, against xitui's server or Xinference's."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from xitui.client.handles import (
    ChatModelHandle,
    EmbeddingModelHandle,
    GenerateModelHandle,
    ModelHandle,
    RerankModelHandle,
)
from xitui.client.transport import ACTOR_PREFIX, ClientError, Transport

if TYPE_CHECKING:  # annotations only: the CLI does not import these to start
    import httpx

    from xitui import wire

__all__ = ["Client", "ClientError", "xinference_spec"]


class Client:
    """Talk to a server at `base_url`. With `autostart`, a local endpoint that does not answer gets a
    background xitui server started for it (the CLI does this; plain Python use does not)."""

    def __init__(self, base_url: str = "http://127.0.0.1:9997", api_key: str | None = None, *,
                 autostart: bool = False, timeout: httpx.Timeout | float | None = None):
        self.transport = Transport(base_url, api_key, autostart=autostart, timeout=timeout)
        self._kind: str | None = None

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    @property
    def api_key(self) -> str | None:
        return self.transport.api_key

    # --- which server -----------------------------------------------------------------------------

    def server_kind(self) -> str:
        """"xitui" or "xinference", from what the server says of itself (`/v1/cluster/version`), never from
        its port; read once per client."""
        if self._kind is None:
            try:
                version = self.transport.get("/v1/cluster/version")
            except ClientError:
                version = {}
            self._kind = "xitui" if isinstance(version, dict) and version.get("server") == "xitui" else "xinference"
        return self._kind

    @property
    def is_xinference(self) -> bool:
        return self.server_kind() == "xinference"

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- registrations --------------------------------------------------------------------------

    def register_model(self, model_type: str, model: str, persist: bool = False, worker_ip: str | None = None) -> None:
        """Register a spec (JSON text). Xinference 4 takes only the version 2 form: a documented version 1 or
        flat spec is checked here with xitui's rules and sent normalised (see `xinference_spec`)."""
        if self.is_xinference:
            model = xinference_spec(model_type, model)
        self.transport.post_json(f"/v1/model_registrations/{model_type}",
                                 {"model": model, "persist": persist, "worker_ip": worker_ip})

    def unregister_model(self, model_type: str, model_name: str) -> None:
        self.transport.delete(f"/v1/model_registrations/{model_type}/{model_name}")

    def list_model_registrations(self, model_type: str, detailed: bool = False) -> list[dict[str, Any]]:
        return self.transport.get(f"/v1/model_registrations/{model_type}", detailed=str(detailed).lower())

    def get_model_registration(self, model_type: str, model_name: str) -> dict[str, Any]:
        return self.transport.get(f"/v1/model_registrations/{model_type}/{model_name}")

    # --- running models -------------------------------------------------------------------------

    def launch_model(
        self,
        model_name: str,
        model_type: str = "LLM",
        model_engine: str | None = None,
        model_uid: str | None = None,
        model_size_in_billions: int | str | float | None = None,
        model_format: str | None = None,
        quantization: str | None = None,
        replica: int = 1,
        n_gpu: int | str | None = "auto",
        wait_ready: bool = True,
        **kwargs: Any,
    ) -> str:
        """Launch a registered model; returns its uid (the model name unless `model_uid` is given).

        Xinference needs `model_engine`: when it is not given, the server is asked which engine fits."""
        if model_engine is None and self.is_xinference:
            model_engine = self.engine_for(model_name, model_type, model_format, quantization)
            if model_engine is None:
                raise ClientError(f"{model_name}: the server names no engine that can run it "
                                  f"(format {model_format or 'any'}); pass model_engine")
        if model_uid is None and self.is_xinference:
            model_uid = model_name  # Xinference would pick a random suffix; xitui's default is the name
        body = {
            "model_uid": model_uid, "model_name": model_name, "model_type": model_type,
            "model_engine": model_engine, "model_format": model_format,
            "model_size_in_billions": model_size_in_billions, "quantization": quantization,
            "replica": replica, "n_gpu": n_gpu, **kwargs,
        }
        return self.transport.post_json("/v1/models", body, wait_ready=str(wait_ready).lower())["model_uid"]

    def estimate_launch(self, model_name: str, model_type: str = "LLM", **launch: Any) -> dict[str, Any]:
        """The memory a launch would need and whether it fits now (xitui's server only): {"estimate",
        "fits", "free_ram", "free_gpu", "largest_context", "line"}; "estimate" is None when the files are
        not on the server's machine yet."""
        if self.is_xinference:
            raise ClientError(f"the server at {self.base_url} is Xinference, which does not estimate launches")
        body = {"model_name": model_name, "model_type": model_type,
                **{k: v for k, v in launch.items() if v is not None}}
        return self.transport.post_json("/v1/estimate", body)

    def launch_status(self, model_uid: str) -> dict[str, Any]:
        """Where a launch stands, the same on both servers: {"state": launching|ready|error, "progress",
        "stage", "error"}. xitui says so in `/progress`; Xinference in its instance list (`status`
        CREATING / READY / ERROR per replica), with progress and stage from `/progress`."""
        progress = self.get_launch_model_progress(model_uid)
        if "state" in progress:
            return progress
        instances = self.transport.get("/v1/models/instances", model_uid=model_uid)
        status = str((instances[0] if instances else {}).get("status") or "CREATING").upper()
        replicas = (instances[0] if instances else {}).get("replica_statuses") or []
        errors = [r.get("error_message") for r in replicas if r.get("error_message")]
        state = {"READY": "ready", "ERROR": "error"}.get(status, "error" if errors else "launching")
        return {"state": state, "progress": 1.0 if state == "ready" else progress.get("progress", 0.0),
                "stage": progress.get("stage") or status.lower(),
                "error": "; ".join(ACTOR_PREFIX.sub("", e) for e in errors) or None}

    def engine_for(self, model_name: str, model_type: str, model_format: str | None,
                   quantization: str | None) -> str | None:
        """The engine an Xinference server would run this registration on (`/v1/engines/{name}`): the first
        that lists a matching format and quantization. None when it names none."""
        engines = self.transport.get(f"/v1/engines/{model_name}", model_type=model_type)
        if engines is None:
            raise ClientError(f"{model_type} model {model_name!r} is not registered on the server", 404)
        for engine, specs in engines.items() if isinstance(engines, dict) else []:
            for spec in specs if isinstance(specs, list) else []:
                if model_format and spec.get("model_format") not in (None, model_format):
                    continue
                quants = spec.get("quantizations") or []
                if quantization and quants and quantization not in quants:
                    continue
                return engine
        return None

    def list_models(self) -> dict[str, wire.ModelDescription]:
        """Running models by uid, as Xinference's client lists them."""
        return self.models_and_loadable()[0]

    def loads_on_request(self) -> list[str]:
        """Registered models that are not running and that a request naming them launches (a xitui server
        with server.autoload; none from Xinference)."""
        return list(self.models_and_loadable()[1])

    def models_and_loadable(self) -> tuple[dict[str, wire.ModelDescription], dict[str, wire.ModelDescription]]:
        """Both of the above from one reading of the server, each by name with its listing entry (a loadable
        one's says its model_type, and an LLM's its model_ability)."""
        listing = self._listing()
        running = {uid: item for uid, item in listing.items() if item.get("loaded", True)}
        return running, {uid: item for uid, item in listing.items() if uid not in running}

    def _listing(self) -> dict[str, wire.ModelDescription]:
        data = self.transport.get("/v1/models")
        items = data.get("data", []) if isinstance(data, dict) else data
        return {item["id"]: item for item in items}

    def describe_model(self, model_uid: str) -> wire.ModelDescription:
        """What the server says of a running model (the fields a real Xinference leaves out are missing)."""
        found: wire.ModelDescription = self.transport.get(f"/v1/models/{model_uid}")
        return found

    def get_launch_model_progress(self, model_uid: str) -> dict[str, Any]:
        return self.transport.get(f"/v1/models/{model_uid}/progress")

    def get_model(self, model_uid: str) -> ModelHandle:
        """The handle of a running model, or on xitui's server (server.autoload) of a registered one that the
        handle's first request loads: the server lists it as loading on request."""
        try:
            return self.handle_for(model_uid, self.describe_model(model_uid))
        except ClientError as exc:
            if exc.status_code != 404 or self.is_xinference:
                raise
            entry = self._listing().get(model_uid)
            if entry is None or entry.get("loaded", True):
                raise
            return self.handle_for(model_uid, entry)

    def handle_for(self, model_uid: str, description: wire.ModelDescription) -> ModelHandle:
        """The handle for a model whose description is already known (a listing's entry): no request."""
        if description.get("model_type", "LLM") == "embedding":
            return EmbeddingModelHandle(self.transport, model_uid, description)
        if description.get("model_type") == "rerank":
            return RerankModelHandle(self.transport, model_uid, description)
        if "chat" in description.get("model_ability", []):
            return ChatModelHandle(self.transport, model_uid, description)
        return GenerateModelHandle(self.transport, model_uid, description)

    def model_logs(self, model_uid: str, offset: int = -16384, replica: int = 0) -> dict[str, Any]:
        """xitui's own route: a worker's log from `offset` ({"offset": next, "text": ...}); negative: that many
        bytes before the end."""
        return self.transport.get(f"/v1/models/{model_uid}/logs", offset=offset, replica=replica)

    def terminate_model(self, model_uid: str) -> None:
        self.transport.delete(f"/v1/models/{model_uid}")

    # --- the machine (xitui's own routes; Xinference answers /status and /v1/cluster/info) --------

    def status(self) -> dict[str, Any]:
        return self.transport.get("/status")

    def resources(self) -> dict[str, Any]:
        return self.transport.get("/v1/resources")

    def cluster_info(self) -> list[dict[str, Any]]:
        return self.transport.get("/v1/cluster/info")


def xinference_spec(model_type: str, model: str) -> str:
    """A spec as Xinference 4 takes it: parsed and checked with xitui's rules (so bad input gets xitui's
    one-line errors), then the version 2 form without the fields only xitui knows."""
    from xitui.core.specs.spec import normalise_model_type, parse_llm, parse_spec

    kind = normalise_model_type(model_type)
    # the cluster judges model_family: it knows its own families, and never refuses one xitui does not know
    data = (parse_llm(model, families=False) if kind == "LLM" else parse_spec(kind, model)).registration()
    for key in ("is_builtin", "persisted", "prompt_style"):
        data.pop(key, None)
    return json.dumps(data)
