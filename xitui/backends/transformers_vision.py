"""Images into a PyTorch vision-language model (a `vision_config` in its config.json) through the model's own
processor, as transformers' AutoModelForImageTextToText reads them: the processor writes each image's cells
into the prompt's tokens and turns the picture into the tensors the model's first step reads.

The prompt says where an image goes with this worker's own marker, made at random when it loads: a client's
text cannot write it. It becomes the text the processor expands (Gemma 3's `<start_of_image>`, another model's
image token) only after the text is checked not to hold that text itself: an image token a client wrote
would take the cells of an image it did not send.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Sequence
from typing import Any

from xitui.backends.base import RequestError
from xitui.core.errors import LaunchError

#: The image formats the server sends on (server/api/images.py): nothing else is opened here.
FORMATS = ["PNG", "JPEG", "GIF", "BMP"]


class Vision:
    """A vision model's processor, one per worker."""

    def __init__(self, path: Any, model_config: Any) -> None:
        from transformers import AutoProcessor

        try:
            self.processor = AutoProcessor.from_pretrained(path, trust_remote_code=False, local_files_only=True)
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            raise LaunchError(f"{path}: its image processor could not be loaded (processor_config.json, "
                              f"preprocessor_config.json): {' '.join(str(exc).split())[:200]}") from None
        processor = self.processor
        self.marker = f"<__xitui_media_{secrets.token_hex(12)}__>"
        # what the processor expands into an image's cells: Gemma 3's begin-of-image, another's image token
        placeholder = getattr(processor, "boi_token", None) or getattr(processor, "image_token", None)
        if not isinstance(placeholder, str) or not placeholder or getattr(processor, "image_processor", None) is None:
            raise LaunchError(f"{path}: its processor ({type(processor).__name__}) reads no images")
        self.placeholder: str = placeholder
        token = getattr(model_config, "image_token_id", None)
        self.image_token_id = token if token is not None else getattr(model_config, "image_token_index", None)
        # every spelling of the image's own tokens, the processor's and its tokenizer's (Gemma 3's processor
        # calls its begin-of-image its image token; the cell token is the tokenizer's, and the config's id)
        tokenizer = processor.tokenizer
        words = {getattr(holder, name, None) for holder in (processor, tokenizer) for name in (
            "boi_token", "eoi_token", "image_token", "start_image_token", "end_image_token", "video_token")}
        if isinstance(self.image_token_id, int):
            words.add(tokenizer.convert_ids_to_tokens(self.image_token_id))
        self.reserved = sorted(word for word in words if isinstance(word, str) and word)

    def inputs(self, prompt: str, images: Sequence[bytes], add_special: bool) -> dict[str, Any]:
        """The processor's tensors for the prompt with its images in their places (input_ids, pixel_values...);
        a one-line RequestError for text that writes the model's own image tokens, or an image that cannot be
        read."""
        for word in self.reserved:
            if word in prompt:
                raise RequestError(f"the prompt's text holds {word!r}, this model's own image token: send images "
                                   "as image parts, not their tokens")
        if prompt.count(self.marker) != len(images):
            raise RequestError(f"the rendered prompt places {prompt.count(self.marker)} of the {len(images)} "
                               "images: the model's chat template drops images from some messages")
        pictures = [_picture(data, i) for i, data in enumerate(images)]
        try:
            return dict(self.processor(text=prompt.replace(self.marker, self.placeholder), images=pictures,
                                       return_tensors="pt", add_special_tokens=add_special))
        except (ValueError, TypeError, OSError) as exc:
            raise RequestError(f"the images could not be placed in the prompt: {' '.join(str(exc).split())[:200]}") \
                from None

    def image_tokens(self, input_ids: Any) -> int:
        """How many of the prompt's tokens are image cells."""
        if self.image_token_id is None:
            return 0
        return int((input_ids == self.image_token_id).sum())


def _picture(data: bytes, i: int) -> Any:
    """One image, decoded to RGB; a one-line error for one whose pixels are damaged past its header."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise RequestError(f"image {i + 1} could not be read: {' '.join(str(exc).split())[:200]}") from None
