"""Request bodies of the API's routes (generation, chat, embeddings, rerank, registration), as pydantic models;
reading them is the edge's (edge/request_body.py); a launch's body is the runtime's (runtime/launch_request.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from xitui import wire
from xitui.core.errors import XituiError
from xitui.server.api.structured import UNSERVED, ResponseFormat, constraint, refuse_unserved
from xitui.server.edge.request_body import WHOLE, Body


class RegisterBody(Body):
    """POST /v1/model_registrations/{type}: a spec as JSON text, and whether to keep it on disk."""

    model: str | dict[str, Any]
    persist: bool = False
    worker_ip: str | None = None


#: Token counts and ids are C ints in the engines; JSON numbers past 64 bits do not parse at all.
INT32_MAX = 2**31 - 1


#: Stop words a request may give, and their longest length (OpenAI allows 4; llama.cpp's server any): each
#: is looked for after every token, so thousands of them slowed every stream of the model.
MAX_STOP_WORDS = 16
MAX_STOP_LENGTH = 256
#: A tool's description, in characters (Claude Code's longest, its Workflow tool's, is 18.8k).
MAX_DESCRIPTION = 65_536
#: Messages in one chat request (a conversation that long would not fit any context anyway).
MAX_MESSAGES = 10_000
#: Choices one request may ask for (`n`): each is a generation of its own.
MAX_CHOICES = 16


def _document_unserved(schema: dict[str, Any]) -> None:
    """The OpenAI fields refused with a 400 (structured.UNSERVED), in the documented body."""
    for key, (_, why) in UNSERVED.items():
        schema.setdefault("properties", {}).setdefault(key, {"description": f"refused when set: {why}"})


class StreamOptions(BaseModel):
    """A stream's options: whether the usage comes, and how."""

    model_config = ConfigDict(extra="ignore")
    include_usage: Annotated[bool, Field(strict=True)] | None = None


class GenerationBody(Body):
    """Numbers and switches are strict: `true` is not a temperature, "3" is not a token count; each is bounded
    by what the engines read."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), json_schema_extra=_document_unserved)

    model: Annotated[str, Field(max_length=200)]
    #: At least 1, as OpenAI's API demands (a negative or zero count is a 400, not a silent default).
    max_tokens: Annotated[int, Field(ge=1, le=INT32_MAX, strict=True), WHOLE] | None = None
    #: OpenAI's newer name for max_tokens (max_tokens wins when both are given)
    max_completion_tokens: Annotated[int, Field(ge=1, le=INT32_MAX, strict=True), WHOLE] | None = None
    #: 0 is greedy.
    temperature: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False, strict=True)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)] | None = None
    top_k: Annotated[int, Field(ge=-1, le=INT32_MAX, strict=True), WHOLE] | None = None
    stop: (Annotated[str, Field(max_length=MAX_STOP_LENGTH)]
           | Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_LENGTH)]],
                       Field(max_length=MAX_STOP_WORDS)]
           | None) = None
    stop_token_ids: Annotated[list[Annotated[int, Field(ge=0, le=INT32_MAX, strict=True), WHOLE]],
                              Field(max_length=64)] | None = None
    #: Within what a JSON number carries exactly (2**53); the engines use 32 bits of it.
    seed: Annotated[int, Field(ge=-(2**53), le=2**53, strict=True), WHOLE] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2, allow_inf_nan=False, strict=True)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2, allow_inf_nan=False, strict=True)] | None = None
    #: 1 = none; above 1 discourages repeats (the engines divide by it)
    repeat_penalty: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False, strict=True)] | None = None
    ignore_eos: Annotated[bool, Field(strict=True)] | None = None
    stream: Annotated[bool, Field(strict=True)] = False
    #: {"include_usage": true}: OpenAI's way, a last chunk of no choice carries the usage; false: none;
    #: without it, Xinference's way: the answer's last chunk carries it
    stream_options: StreamOptions | None = None
    #: Choices to generate for the prompt, at once (on the batch engine's slots); with a seed, choice i
    #: uses seed + i
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES, strict=True), WHOLE] = 1
    #: The answer's form, enforced while it is written: {"type": "json_object"} or {"type": "json_schema",
    #: "json_schema": {"name", "schema", "strict"}}
    response_format: ResponseFormat | None = None
    #: llama.cpp's extension: a GBNF grammar the answer must follow (llama.cpp engine)
    grammar: Annotated[str, Field(max_length=64 * 1024)] | None = None

    def logprob_count(self) -> int | None:
        """Alternatives to give with each token's log probability; None: no log probabilities."""
        return None


class CompletionBody(GenerationBody):
    """POST /v1/completions: a prompt to continue."""

    #: One prompt (OpenAI's list form is read when it holds exactly one).
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    #: The log probability of each generated token, with this many likeliest alternatives (0 to 5)
    logprobs: Annotated[int, Field(ge=0, le=5, strict=True), WHOLE] | None = None

    def logprob_count(self) -> int | None:
        return self.logprobs


class ImageURL(BaseModel):
    """An image part's image: a data: URL (base64)."""

    model_config = ConfigDict(extra="ignore")
    url: Annotated[str, Field(strict=True, max_length=28 * 2**20)]
    detail: Annotated[str, Field(max_length=16)] | None = None


class InputAudio(BaseModel):
    """An audio part's clip: the file as base64, and its format (OpenAI's: wav or mp3)."""

    model_config = ConfigDict(extra="ignore")
    data: Annotated[str, Field(strict=True, max_length=28 * 2**20)]
    format: Annotated[str, Field(strict=True, max_length=16)]


class ContentPart(BaseModel):
    """One of OpenAI's content parts: text, an image (`image_url`, for vision models) or a sound clip
    (`input_audio`, for models whose projector hears)."""

    model_config = ConfigDict(extra="ignore")
    type: Annotated[str, Field(max_length=64)]
    text: Annotated[str, Field(strict=True)] | None = None
    image_url: ImageURL | None = None
    input_audio: InputAudio | None = None


class FunctionCall(BaseModel):
    """A call an assistant message made: the function's name and its arguments as JSON text."""

    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(max_length=64)]
    arguments: Annotated[str, Field(max_length=1024 * 1024)] = "{}"


class ToolCall(BaseModel):
    """One of an assistant message's `tool_calls`."""

    model_config = ConfigDict(extra="ignore")
    id: Annotated[str, Field(max_length=256)] = ""
    type: Literal["function"] = "function"
    function: FunctionCall


ROLES = ("system", "user", "assistant", "tool")
#: Roles read as another: OpenAI's `developer` is its newer name for `system` (the Agents SDK and LangChain
#: send it).
SAME_AS = {"developer": "system"}


class ChatMessage(Body):
    """One message of a chat request (OpenAI's shape; text parts only)."""

    #: "tool" answers an assistant's tool call (with its tool_call_id)
    role: Annotated[str, Field(json_schema_extra={"enum": ["system", "developer", "user", "assistant", "tool"]})]
    #: Text, or OpenAI's content parts (the text parts are read); may be null on an assistant's tool call
    content: str | Annotated[list[ContentPart], Field(max_length=1000)] | None = None
    #: An assistant's calls (the conversation's earlier turns)
    tool_calls: Annotated[list[ToolCall], Field(max_length=128)] | None = None
    #: A tool message's answer to this call
    tool_call_id: Annotated[str, Field(max_length=256)] | None = None

    def forwarded(self, images: list[str] | None = None, marker: str = "", reads: frozenset[str] = frozenset()
                  ) -> wire.ChatMessage:
        """What the worker gets: the role, the text and the calls, nothing a client added beside them. Image and
        audio parts, of the kinds the model `reads` ("images", "audio"), become `marker` in the text, their files
        appended to `images` in order (server/api/images.py and audio.py check them)."""
        content = self.content
        if content is None:
            if not (self.role == "assistant" and self.tool_calls):
                raise XituiError("content: required (only an assistant's tool call may leave it out)")
            content = ""
        if isinstance(content, list):
            texts = []
            for i, part in enumerate(content):
                if part.type in ("image_url", "input_audio"):
                    images = _media_room(images, reads, part.type, i)
                    from xitui.server.api.images import checked_image

                    if part.type == "image_url":
                        if part.image_url is None:
                            raise XituiError(f"content[{i}].image_url: required for an image part")
                        images.append(checked_image(part.image_url.url, f"content[{i}].image_url"))
                    else:
                        from xitui.server.api.audio import checked_audio

                        if part.input_audio is None:
                            raise XituiError(f"content[{i}].input_audio: required for an audio part")
                        images.append(checked_audio(part.input_audio.data, part.input_audio.format,
                                                    f"content[{i}].input_audio"))
                    texts.append(marker)
                    continue
                if part.type != "text":
                    raise XituiError(f"content[{i}]: {part.type!r} parts are not read by this server (text, "
                                     "images for vision models, input_audio for models that hear)")
                if part.text is None:
                    raise XituiError(f"content[{i}].text: required for a text part")
                texts.append(part.text)
            content = "".join(texts)
        role = SAME_AS.get(self.role, self.role)
        if role not in ROLES:
            raise XituiError(f"role: {self.role!r} is not system (or developer), user, assistant or tool")
        message: wire.ChatMessage = {"role": cast(wire.Role, role), "content": content}
        if self.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.function.name, "arguments": c.function.arguments}} for c in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


def _media_room(images: list[str] | None, reads: frozenset[str], kind: str, i: int) -> list[str]:
    """The request's list of images and clips, when the model reads this part's kind and there is room."""
    from xitui.server.api.images import MAX_IMAGES

    wanted = "images" if kind == "image_url" else "audio"
    if images is None or wanted not in reads:
        what = " and ".join(["text", *sorted(reads)])
        if kind == "image_url":
            raise XituiError(f"content[{i}]: 'image_url' parts are read by vision models (a GGUF spec with "
                             f"multimodal_projectors, a PyTorch model with a vision_config); this model reads {what}")
        raise XituiError(f"content[{i}]: 'input_audio' parts are read by models whose projector hears (a GGUF "
                         f"spec with multimodal_projectors, as Qwen2-Audio's or Ultravox's); this model reads {what}")
    if len(images) >= MAX_IMAGES:
        kinds = {frozenset({"images"}): "images", frozenset({"audio"}): "clips"}.get(reads, "images and clips")
        raise XituiError(f"content[{i}]: a request may send {MAX_IMAGES} {kinds} at most (a conversation sends its "
                         f"earlier turns' {kinds} again)")
    return images


def _conversation(schema: dict[str, Any]) -> None:
    """What every chat format reads: a system message may open the conversation, and only open it."""
    message = schema["items"]
    schema["prefixItems"] = [message]
    schema["items"] = {"allOf": [message, {"properties": {"role": {"enum": ["user", "assistant", "tool"]}}}]}


class Function(BaseModel):
    """A function a model may call: its name, what it does, the JSON schema of its arguments."""

    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)] | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    """One of a chat request's `tools`."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    function: Function


class FunctionName(BaseModel):
    """The function a named `tool_choice` asks for."""

    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(max_length=64)]


class NamedToolChoice(BaseModel):
    """`tool_choice` naming the function the answer must call."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    function: FunctionName


class ChatBody(GenerationBody):
    """POST /v1/chat/completions: a conversation to answer."""

    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_MESSAGES,
                                                 json_schema_extra=_conversation)]
    #: Functions the model may call (a model with the `tools` ability)
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    #: "auto" (the model decides), "none", "required" (some call, held to its schema while it is written),
    #: or {"type": "function", "function": {"name": ...}} (that call)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    #: With a forced call: one or more calls (true) or exactly one
    parallel_tool_calls: Annotated[bool, Field(strict=True)] | None = None
    #: The log probability of each generated token in `choices[].logprobs.content`
    logprobs: Annotated[bool, Field(strict=True)] | None = None
    #: With logprobs: this many likeliest alternatives at each position (0 to 20)
    top_logprobs: Annotated[int, Field(ge=0, le=20, strict=True), WHOLE] | None = None

    def logprob_count(self) -> int | None:
        if self.top_logprobs and not self.logprobs:
            raise XituiError("top_logprobs: needs logprobs: true")
        return (self.top_logprobs or 0) if self.logprobs else None


#: Texts one embedding request may send, as OpenAI's API.
MAX_TEXTS = 2048


def _texts(value: object) -> object:
    """What `input` must be, said in words a client can act on (pydantic's union errors name neither)."""
    if isinstance(value, list):
        if not value:
            raise ValueError("give at least one text")
        if len(value) > MAX_TEXTS:
            raise ValueError(f"at most {MAX_TEXTS} texts, got {len(value)}")
        if not all(isinstance(text, str) for text in value):
            if all(isinstance(item, int | list) and not isinstance(item, bool) for item in value):
                raise ValueError("texts only: token ids are not taken (they would be another tokenizer's: LangChain's "
                                 "OpenAIEmbeddings sends tiktoken's unless given check_embedding_ctx_length=False)")
            raise ValueError("texts only (token ids are not taken)")
    elif not isinstance(value, str):
        raise ValueError("a text or a list of texts")
    return value


class EmbeddingBody(Body):
    """POST /v1/embeddings: texts to turn into vectors."""

    model: str
    #: At most 2048 texts per request, as OpenAI's API
    input: Annotated[str | Annotated[list[str], Field(min_length=1, max_length=MAX_TEXTS)], BeforeValidator(_texts)]
    #: "float" (lists of numbers) or "base64" (little-endian float32, what OpenAI's client asks for)
    encoding_format: Literal["float", "base64"] = "float"
    #: Cut inputs longer than the model's max_tokens (the response says so); false refuses them.
    truncate: bool = True
    #: Fewer dimensions than the model gives: its first `dimensions`, made unit length again (Matryoshka
    #: truncation, as OpenAI's text-embedding-3 models take it); more than it gives is a 400.
    dimensions: Annotated[int, Field(ge=1, le=1_000_000, strict=True), WHOLE] | None = None


class RerankBody(Body):
    """POST /v1/rerank (Xinference's route and body; Cohere's and Jina's fields): documents to order by their
    relevance to a query."""

    model: str
    query: Annotated[str, Field(min_length=1)]
    #: At most 1024 documents per request (Cohere's limit is 1000)
    documents: Annotated[list[str], Field(min_length=1, max_length=1024)]
    #: Return only the best n (default: all)
    top_n: Annotated[int, Field(ge=1, le=1_000_000, strict=True), WHOLE] | None = None
    #: Give each result its document's text
    return_documents: bool | None = None
    #: Give the input tokens in `meta.tokens` (Xinference's field)
    return_len: bool | None = None


_PARAM_KEYS = ("max_tokens", "temperature", "top_p", "top_k", "stop", "stop_token_ids", "seed",
               "presence_penalty", "frequency_penalty", "repeat_penalty", "ignore_eos")


#: Tokens generated when a request names no max_tokens (OpenAI's completions default of 16 cuts answers
#: short; running on to the end of the context keeps a base model busy for minutes).
DEFAULT_MAX_TOKENS = 256


def choice_params(body: GenerationBody) -> list[wire.Params]:
    """The worker's parameters for each of the `n` choices a request asks for (seeds apart)."""
    params = generation_params(body)
    if body.n == 1:
        return [params]
    seed = params.get("seed")
    return [_seeded(params, seed + i if seed is not None else None) for i in range(body.n)]


def _seeded(params: wire.Params, seed: int | None) -> wire.Params:
    choice = params.copy()
    if seed is not None:
        choice["seed"] = seed
    return choice


def generation_params(body: GenerationBody) -> wire.Params:
    """What the worker gets of a request; raises XituiError (400) for what it would not serve."""
    refuse_unserved(body.model_extra)
    params = cast(wire.Params, {k: getattr(body, k) for k in _PARAM_KEYS if getattr(body, k) is not None})
    params.setdefault("max_tokens", body.max_completion_tokens or DEFAULT_MAX_TOKENS)
    form = constraint(body.response_format, body.grammar)
    if form is not None:
        params["constraint"] = form
    count = body.logprob_count()
    if count is not None:
        params["logprobs"] = count
    return params


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A route's documented body, for routes that read it themselves; nested models are written inline
    (a `$defs` reference would point nowhere inside the OpenAPI document)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}
