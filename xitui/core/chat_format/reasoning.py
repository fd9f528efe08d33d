"""A thinking model's answer, split as it streams: the text between its reasoning tags (`<think>` and
`</think>` unless its spec names others, Xinference's `reasoning_start_tag`/`reasoning_end_tag`) goes to
`reasoning_content`, the rest to `content`. Text that may be the start of a tag is held back until it is
clear which it is."""

from __future__ import annotations

from dataclasses import dataclass

from xitui.core.chat_format.stop_words import partial_marker

DEFAULT_TAGS = ("<think>", "</think>")


@dataclass
class ThoughtReader:
    """`feed` pieces of an answer; each call returns (content, reasoning) safe to send now."""

    start: str = DEFAULT_TAGS[0]
    end: str = DEFAULT_TAGS[1]
    #: The prompt ended inside the thinking (templates that open it themselves: Qwen 3, DeepSeek R1).
    thinking: bool = False
    _held: str = ""
    _done: bool = False
    #: Just past a tag: the newlines that follow it are the tag's, not the text's.
    _lead: bool = False

    def feed(self, text: str) -> tuple[str, str]:
        buf = self._held + text
        self._held = ""
        content, reasoning = "", ""
        while buf:
            if self._lead:
                buf = buf.lstrip("\n")
                if not buf:
                    break
                self._lead = False
            if self._done:  # one thought per answer: the rest is the answer
                return content + buf, reasoning
            tag = self.end if self.thinking else self.start
            at = buf.find(tag)
            if at < 0:
                keep = partial_marker(buf, tag)
                safe, self._held = buf[:len(buf) - keep], buf[len(buf) - keep:]
                if self.thinking:
                    reasoning += safe
                else:
                    content += safe
                return content, reasoning
            if self.thinking:
                reasoning += buf[:at]
                self.thinking, self._done = False, True
            else:
                content += buf[:at]
                self.thinking = True
            buf = buf[at + len(tag):]
            self._lead = True
        return content, reasoning

    def finish(self) -> tuple[str, str]:
        """What was held back: a thought cut short stays reasoning."""
        rest, self._held = self._held, ""
        return ("", rest) if self.thinking else (rest, "")

