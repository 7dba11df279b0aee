"""What a WAV file's header says, and how much of it can be trusted (pure).

Asterisk writes the RIFF and ``data`` sizes only when MixMonitor closes the file, so a file
whose writer died keeps the placeholder sizes (unfinalized), and a file cut short (copied
halfway, disk full on the PBX) claims more audio than it holds (truncated). Both still hold
good audio up to where they end; only a file whose header cannot be read is corrupt.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PCM = 1
EXTENSIBLE = 0xFFFE
ALAW = 6
MULAW = 7
GSM = 0x31  # Asterisk's wav49

# How many bytes of a file ``inspect`` needs at most to find the data chunk of any sane
# WAV (fmt, fact, LIST... chunks before the audio).
HEAD_BYTES = 64 * 1024

_UNSET = (0, 0xFFFFFFFF)


class WavCorrupt(ValueError):
    """The header is unreadable: no RIFF/WAVE, no usable fmt or data chunk."""


@dataclass(frozen=True)
class WavInfo:
    audio_format: int
    channels: int
    sample_rate: int
    bits_per_sample: int
    block_align: int
    data_offset: int
    declared_data: int  # what the data chunk header says
    available_data: int  # what the file holds after the data chunk header

    @property
    def is_pcm(self) -> bool:
        return self.audio_format in (PCM, EXTENSIBLE) and self.bits_per_sample in (8, 16, 24, 32)

    @property
    def state(self) -> str:
        """``complete``, ``unfinalized`` (sizes never written) or ``truncated``."""
        if self.declared_data in _UNSET and self.available_data > 0:
            return "unfinalized"
        if self.declared_data > self.available_data:
            return "truncated"
        return "complete"

    @property
    def usable_data(self) -> int:
        """Bytes of whole audio frames that are really there."""
        n = self.available_data if self.state != "complete" else self.declared_data
        n = min(n, self.available_data)
        return n - n % self.block_align

    @property
    def duration_s(self) -> float:
        return self.usable_data / (self.block_align * self.sample_rate)

    def problem(self) -> str | None:
        """One line for the call record when the file is not clean, else None."""
        state = self.state
        if state == "unfinalized":
            return (
                "unfinalized WAV: the writer never closed it (sizes in the header unset); "
                f"kept the {self.usable_data} readable bytes ({self.duration_s:.1f} s)"
            )
        if state == "truncated":
            return (
                f"truncated WAV: the header announces {self.declared_data} bytes of audio, "
                f"the file holds {self.available_data}; kept {self.duration_s:.1f} s"
            )
        return None


def inspect(head: bytes, file_size: int) -> WavInfo:
    """Parse the header in ``head`` (the first bytes of a file of ``file_size`` bytes)."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise WavCorrupt("not a WAV file (no RIFF/WAVE header)")
    pos = 12
    fmt: tuple[int, int, int, int, int] | None = None
    while pos + 8 <= len(head):
        chunk_id = head[pos : pos + 4]
        (size,) = struct.unpack_from("<I", head, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            if size < 16 or body + 16 > len(head):
                raise WavCorrupt("the fmt chunk is too short")
            audio_format, channels, rate, _byte_rate, align, bits = struct.unpack_from(
                "<HHIIHH", head, body
            )
            if audio_format == EXTENSIBLE and size >= 40 and body + 26 <= len(head):
                # The real format is the first two bytes of the sub-format GUID.
                (audio_format,) = struct.unpack_from("<H", head, body + 24)
                audio_format = PCM if audio_format == PCM else EXTENSIBLE
            if not channels or not rate or not align:
                raise WavCorrupt(
                    f"the fmt chunk is invalid (channels={channels}, rate={rate}, "
                    f"block_align={align})"
                )
            fmt = (audio_format, channels, rate, bits, align)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavCorrupt("audio data before the fmt chunk")
            audio_format, channels, rate, bits, align = fmt
            return WavInfo(
                audio_format=audio_format,
                channels=channels,
                sample_rate=rate,
                bits_per_sample=bits,
                block_align=align,
                data_offset=body,
                declared_data=size,
                available_data=max(0, file_size - body),
            )
        elif not chunk_id.isascii() or size == 0xFFFFFFFF:
            raise WavCorrupt(f"unreadable chunk {chunk_id!r} at byte {pos}")
        pos = body + size + (size & 1)
    if pos + 8 > file_size and fmt is not None:
        raise WavCorrupt("the file ends before its audio data starts")
    raise WavCorrupt("no audio data chunk found")
