"""Turn one finished MixMonitor file into the copy the gateway stores (blocking: runs in
the recording service's executor, never on the event loop).

The file is read with pydub (ffmpeg does the encoding). A WAV's header is checked first
(recordings/wav.py): a clean file is converted (or, for ``format = "wav"``, kept byte for
byte); an unfinalized or truncated one is salvaged up to its last whole frame and its
untouched original is kept next to the copy; an unreadable one raises ``Corrupt``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydub import AudioSegment
from pydub.exceptions import CouldntDecodeError

from recordings import wav

# format -> (file extension, Content-Type, pydub/ffmpeg export arguments)
FORMATS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "wav": ("wav", "audio/wav", {"format": "wav"}),
    "opus": (
        "opus",
        "audio/ogg; codecs=opus",
        {"format": "opus", "codec": "libopus", "parameters": ["-application", "voip"]},
    ),
    "mp3": ("mp3", "audio/mpeg", {"format": "mp3", "codec": "libmp3lame"}),
}

CONTENT_TYPES = {ext: ctype for ext, ctype, _ in FORMATS.values()}

# Asterisk's raw MixMonitor formats, for files that are not WAV.
_RAW_FORMATS: dict[str, dict[str, Any]] = {
    ".gsm": {"format": "gsm"},
    ".ulaw": {"format": "mulaw", "parameters": ["-ar", "8000", "-ac", "1"]},
    ".ul": {"format": "mulaw", "parameters": ["-ar", "8000", "-ac", "1"]},
    ".alaw": {"format": "alaw", "parameters": ["-ar", "8000", "-ac", "1"]},
    ".al": {"format": "alaw", "parameters": ["-ar", "8000", "-ac", "1"]},
    ".sln": {"format": "s16le", "parameters": ["-ar", "8000", "-ac", "1"]},
    ".raw": {"format": "s16le", "parameters": ["-ar", "8000", "-ac", "1"]},
    ".sln16": {"format": "s16le", "parameters": ["-ar", "16000", "-ac", "1"]},
}


class Corrupt(Exception):
    """The file holds no readable audio; the message says why."""


class Empty(Exception):
    """The file is well formed but holds no audio at all."""


@dataclass(frozen=True)
class Prepared:
    """The copy to store (a file in the work directory, owned by the caller)."""

    path: Path
    ext: str
    content_type: str
    duration_s: float
    size: int
    sha256: str
    source_size: int
    source_sha256: str
    sample_rate: int
    channels: int
    problem: str | None = None  # salvaged: what was wrong with the file
    original: Path | None = None  # a copy of the damaged original, to keep as well


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _need_space(workdir: Path, nbytes: int) -> None:
    """Refuse up front when the work disk cannot hold the output (ffmpeg would fail with
    an unhelpful message halfway through)."""
    if shutil.disk_usage(workdir).free < nbytes + (1 << 20):
        raise OSError(errno.ENOSPC, "no space left for the recording copy", str(workdir))


def copy_original(source: Path, workdir: Path) -> Path:
    """A copy of ``source`` in the work directory, to keep a damaged file as it came."""
    _need_space(workdir, source.stat().st_size)
    out = workdir / f"{uuid.uuid4().hex}.orig"
    shutil.copyfile(source, out)
    return out


def _decode_wav(data: bytes, source: Path) -> tuple[AudioSegment, wav.WavInfo]:
    try:
        info = wav.inspect(data[: wav.HEAD_BYTES], len(data))
    except wav.WavCorrupt as exc:
        raise Corrupt(f"corrupt WAV: {exc}") from None
    if info.usable_data == 0:
        raise Empty("the file holds no audio (a header only)")
    if info.is_pcm:
        pcm = data[info.data_offset : info.data_offset + info.usable_data]
        seg = AudioSegment(
            data=pcm,
            sample_width=info.bits_per_sample // 8,
            frame_rate=info.sample_rate,
            channels=info.channels,
        )
        return seg, info
    # GSM-in-WAV (wav49), A-law, mu-law: ffmpeg decodes.
    try:
        return AudioSegment.from_file(str(source)), info
    except CouldntDecodeError as exc:
        raise Corrupt(f"undecodable WAV (format 0x{info.audio_format:X}): {exc}") from None


def prepare(source: Path, workdir: Path, fmt: str, bitrate: str) -> Prepared:
    """Read ``source`` and write the copy to store into ``workdir``."""
    ext, content_type, export_args = FORMATS[fmt]
    data = source.read_bytes()
    source_sha256 = hashlib.sha256(data).hexdigest()
    problem: str | None = None
    original: Path | None = None
    out = workdir / f"{uuid.uuid4().hex}.{ext}"
    _need_space(workdir, len(data))
    try:
        if data[:4] == b"RIFF" or source.suffix.lower() in (".wav", ".wav16"):
            seg, info = _decode_wav(data, source)
            problem = info.problem()
            if problem is not None:
                original = copy_original(source, workdir)
            elif fmt == "wav" and info.is_pcm:
                # The original is what we store: not one byte re-encoded.
                shutil.copyfile(source, out)
                return _prepared(out, ext, content_type, seg, data, source_sha256, None, None)
        else:
            raw = _RAW_FORMATS.get(source.suffix.lower(), {})
            try:
                seg = AudioSegment.from_file(str(source), **raw)
            except CouldntDecodeError as exc:
                raise Corrupt(f"undecodable {source.suffix or 'audio'} file: {exc}") from None
            if len(seg.raw_data) == 0:
                raise Empty("the file holds no audio")
        args = dict(export_args)
        if fmt != "wav":
            args["bitrate"] = bitrate
        seg.export(str(out), **args).close()
        return _prepared(out, ext, content_type, seg, data, source_sha256, problem, original)
    except BaseException:
        out.unlink(missing_ok=True)
        if original is not None:
            original.unlink(missing_ok=True)
        raise


def _prepared(
    out: Path,
    ext: str,
    content_type: str,
    seg: AudioSegment,
    data: bytes,
    source_sha256: str,
    problem: str | None,
    original: Path | None,
) -> Prepared:
    return Prepared(
        path=out,
        ext=ext,
        content_type=content_type,
        duration_s=round(seg.frame_count() / seg.frame_rate, 3),
        size=os.path.getsize(out),
        sha256=_sha256(out),
        source_size=len(data),
        source_sha256=source_sha256,
        sample_rate=seg.frame_rate,
        channels=seg.channels,
        problem=problem,
        original=original,
    )
