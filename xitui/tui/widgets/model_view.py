"""What the chat pane shows in place of a conversation for a model that is asked, not talked to (embedding,
rerank): a view that asks the chosen model through the client."""

from __future__ import annotations

from typing import Any


class ModelView:
    """Mixed into a container widget: `client` asks, the pane sets the chosen model's `uid` and `description`
    (its listing entry, so its handle needs no request)."""

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client
        self.uid: str | None = None
        self.description: dict[str, Any] = {}

    def handle(self, uid: str) -> Any:
        """The handle of `uid` (the model chosen when the view was asked)."""
        return self.client.handle_for(uid, self.description)
