"""MPEG-TS demuxer (ISO/IEC 13818-1), sans-I/O: TS bytes in, the hub's media units out.

Only what a live contribution feed carries: the PAT, the first program's PMT, and PES streams of
H.264 (Annex B), H.265 (Annex B), AAC (ADTS) and Opus (ETSI TS 102 366-style "Opus in MPEG-TS":
private stream type 0x06 with an ``Opus`` registration descriptor, each packet behind a control
header). Each access unit becomes the FLV tag body an RTMP publisher would have sent (legacy AVC,
Enhanced RTMP ``hvc1``, AAC, Enhanced RTMP ``Opus``), with a sequence header (decoder
configuration record / AudioSpecificConfig / OpusHead) built from the in-band parameter sets or
the PMT whenever they change, so every output works on an SRT source exactly as on an RTMP one.

Packet loss shows up as a continuity counter gap: the PES being assembled is dropped (counted in
``discontinuities``). Bytes that are not TS at all raise :class:`TsError`.
"""

from __future__ import annotations

import struct

from simulcast.codecs.aac import SAMPLE_RATES
from simulcast.codecs.unit import Kind, MediaUnit

__all__ = ["TsDemuxer", "TsError"]

PACKET_SIZE = 188
_SYNC = 0x47
_PAT_PID = 0
_STREAM_AVC = 0x1B
_STREAM_HEVC = 0x24
_STREAM_AAC = 0x0F
_STREAM_PRIVATE = 0x06
_CODECS = {_STREAM_AVC: "avc", _STREAM_HEVC: "hevc", _STREAM_AAC: "aac"}
_AUDIO = frozenset({"aac", "opus"})
_DESC_REGISTRATION = 0x05
_DESC_EXTENSION = 0x7F
_EXT_OPUS_CHANNELS = 0x80
_OPUS_TAG = b"\x90Opus"  # Enhanced RTMP ExAudioTagHeader, SequenceStart; | 1: CodedFrames
_OPUS_CONTROL_PREFIX = 0x7FE0  # 11 bits of the Opus control header
# OpusHead channel mapping family 1 (Vorbis order) for 3-8 channels: streams, coupled, mapping.
_OPUS_SURROUND = {
    3: (2, 1, b"\x00\x02\x01"),
    4: (2, 2, b"\x00\x01\x02\x03"),
    5: (3, 2, b"\x00\x04\x01\x02\x03"),
    6: (4, 2, b"\x00\x04\x01\x02\x03\x05"),
    7: (4, 3, b"\x00\x04\x01\x02\x03\x05\x06"),
    8: (5, 3, b"\x00\x06\x01\x02\x03\x04\x05\x07"),
}
_WRAP = 1 << 33
_MAX_PES = 8 * 1024 * 1024
_AAC_TAG = 0xAF  # FLV SoundFormat 10 (AAC); the other bits are fixed for AAC
_HEVC_FOURCC = b"hvc1"
_HOLD_MAX_UNITS = 300  # ~3 s of 30 fps video with its audio: a stream that never configures
_PAYLOAD_SIZE = PACKET_SIZE - 4
_RUN_MAX = 128  # continuation packets appended at once (at most)
# A run of continuation packets (a PES spans dozens) is checked and appended a run at a time,
# not a packet at a time: its packets' fourth header bytes as they are in sequence (the flags of
# the first, the continuity counter going up by one each), per first byte ...
_COUNTER_RUNS = [bytes((b & 0xF0) | ((b + i) & 0x0F) for i in range(_RUN_MAX)) for b in range(256)]
# ... and the payloads of n packets of 4-byte headers, in one call.
_PAYLOADS = [struct.Struct(f"4x{_PAYLOAD_SIZE}s" * n) for n in range(_RUN_MAX + 1)]


class TsError(ValueError):
    """Input that is not a transport stream (lost sync, impossible PES)."""


class _Pes:
    __slots__ = ("cc", "channels", "codec", "data", "expected")

    def __init__(self, codec: str, channels: int = 0) -> None:
        self.codec = codec
        self.channels = channels  # Opus: from the PMT's extension descriptor
        self.cc = -1
        self.data: bytearray | None = None
        self.expected = 0  # PES length from its header (0: unbounded, ends at the next start)


class TsDemuxer:
    """Feed transport stream bytes; get :class:`MediaUnit` lists back."""

    def __init__(self) -> None:
        self._pending = b""
        self._pmt_pid: int | None = None
        self._pmt_body = b""  # the last PMT parsed (it comes ~10 times a second, unchanged)
        self._streams: dict[int, _Pes] = {}
        self._epoch: int | None = None  # the first DTS seen (90 kHz), time zero of the units
        self._last: dict[int, int] = {}  # last unwrapped timestamp per PID
        self._video_config: tuple[bytes, ...] | None = None
        self._audio_config: bytes | None = None
        self._out: list[MediaUnit] = []
        self._held: list[MediaUnit] | None = []  # media until every stream's config is known
        self.discontinuities = 0
        """PES packets dropped because TS packets were missing (continuity counter gaps)."""

    def feed(self, data: bytes) -> list[MediaUnit]:
        """Demux ``data`` (any split); returns the units completed by it."""
        buf = self._pending + data if self._pending else data
        end = len(buf) - len(buf) % PACKET_SIZE
        syncs = buf[0:end:PACKET_SIZE]
        in_sync = (len(syncs) - len(syncs.lstrip(b"\x47"))) * PACKET_SIZE  # up to a bad one
        streams = self._streams
        pos = 0
        while pos < in_sync:
            # The bulk of a stream: the next packets of a PES being assembled, payload only, in
            # sequence. Appended a run at a time without the general path's checks and copies.
            b1, b3 = buf[pos + 1], buf[pos + 3]
            pid = ((b1 & 0x1F) << 8) | buf[pos + 2]
            pes = streams.get(pid)
            if (
                pes is not None
                and pes.data is not None
                and not b1 & 0xC0
                and b3 & 0x30 == 0x10
                and b3 & 0x0F == (pes.cc + 1) & 0x0F
            ):
                pos = self._continuation(buf, pos, in_sync, pid, pes)
            else:
                self._packet(buf, pos)
                pos += PACKET_SIZE
        if in_sync < end:
            raise TsError(f"lost TS sync (byte {buf[in_sync]:#04x} where 0x47 belongs)")
        self._pending = buf[end:]
        out, self._out = self._out, []
        return out

    def flush(self) -> list[MediaUnit]:
        """The end of the stream: complete the PES packets still open (no next start comes)."""
        for pid, pes in self._streams.items():
            if pes.data is not None and not pes.expected:  # a sized one would be complete
                data, pes.data = pes.data, None
                self._pes_done(pid, pes, data)
        if self._held:
            self._out += self._held
        self._held = None
        out, self._out = self._out, []
        return out

    # -- transport packets ---------------------------------------------------------------------

    def _continuation(self, buf: bytes, pos: int, end: int, pid: int, pes: _Pes) -> int:
        """Append the run of continuation packets of ``pes`` at ``pos`` (the first one is);
        returns where the run ends."""
        data = pes.data
        assert data is not None
        n = min(_RUN_MAX, (end - pos) // PACKET_SIZE)
        if n > 1:
            # The run: the same second and third header bytes (PID, no start, no error) ...
            last = pos + n * PACKET_SIZE
            column = buf[pos + 1 : last : PACKET_SIZE]
            n -= len(column.lstrip(column[:1]))
            column = buf[pos + 2 : last : PACKET_SIZE]
            n = min(n, len(column) - len(column.lstrip(column[:1])))
            # ... then the fourth in sequence: the run ends at the first byte that differs.
            column = buf[pos + 3 : pos + n * PACKET_SIZE : PACKET_SIZE]
            expected = _COUNTER_RUNS[column[0]][:n]
            differ = int.from_bytes(column, "big") ^ int.from_bytes(expected, "big")
            n -= (differ.bit_length() + 7) // 8
        if pes.expected:  # a sized PES: not past its end
            n = min(n, -(-(6 + pes.expected - len(data)) // _PAYLOAD_SIZE))
        data += b"".join(_PAYLOADS[n].unpack_from(buf, pos))
        pos += n * PACKET_SIZE
        pes.cc = buf[pos - PACKET_SIZE + 3] & 0x0F
        if pes.expected and len(data) >= 6 + pes.expected:
            pes.data = None
            del data[6 + pes.expected :]
            self._pes_done(pid, pes, data)
        elif len(data) > _MAX_PES:
            raise TsError("PES packet over 8 MiB")
        return pos

    def _packet(self, buf: bytes, pos: int) -> None:
        b1, b2, b3 = buf[pos + 1], buf[pos + 2], buf[pos + 3]
        if b1 & 0x80:
            return  # transport_error_indicator: the sender says this one is damaged
        pid = ((b1 & 0x1F) << 8) | b2
        start = bool(b1 & 0x40)
        afc = (b3 >> 4) & 0x3
        if not afc & 0x1:
            return  # adaptation field only
        payload = pos + 4
        if afc & 0x2:
            payload += 1 + buf[pos + 4]
        end = pos + PACKET_SIZE
        if payload > end:
            raise TsError("adaptation field longer than the packet")
        if pid == _PAT_PID:
            if start:
                self._pat(buf[payload:end])
        elif pid == self._pmt_pid:
            if start:
                self._pmt(buf[payload:end])
        else:
            pes = self._streams.get(pid)
            if pes is not None:
                self._pes_packet(pid, pes, b3 & 0x0F, start, buf[payload:end])

    def _section(self, chunk: bytes) -> bytes:
        if not chunk:
            raise TsError("empty PSI section")
        start = 1 + chunk[0]  # pointer_field
        if start + 3 > len(chunk):
            raise TsError("PSI section header truncated")
        length = ((chunk[start + 1] & 0x0F) << 8) | chunk[start + 2]
        section = chunk[start : start + 3 + length]
        if len(section) < 3 + length or length < 9:
            raise TsError("PSI section does not fit one packet")
        return section[8 : 3 + length - 4]  # after the common header, before the CRC

    def _pat(self, chunk: bytes) -> None:
        body = self._section(chunk)
        for i in range(0, len(body) - 3, 4):
            program, pid = struct.unpack_from(">HH", body, i)
            if program != 0:
                self._pmt_pid = pid & 0x1FFF
                return

    def _pmt(self, chunk: bytes) -> None:
        body = self._section(chunk)
        if body == self._pmt_body:
            return
        if len(body) < 4:
            raise TsError("PMT truncated")
        pos = 4 + (((body[2] & 0x0F) << 8) | body[3])
        streams: dict[int, _Pes] = {}
        while pos + 5 <= len(body):
            stream_type = body[pos]
            pid = ((body[pos + 1] & 0x1F) << 8) | body[pos + 2]
            end = pos + 5 + (((body[pos + 3] & 0x0F) << 8) | body[pos + 4])
            codec = _CODECS.get(stream_type)
            channels = 0
            if stream_type == _STREAM_PRIVATE:
                channels = _opus_channels(body[pos + 5 : end])
                codec = "opus" if channels else None
            pos = end
            if codec is None:
                continue
            audio = codec in _AUDIO
            if not any((p.codec in _AUDIO) == audio for p in streams.values()):
                old = self._streams.get(pid)
                same = old is not None and (old.codec, old.channels) == (codec, channels)
                streams[pid] = old if old is not None and same else _Pes(codec, channels)
        # In place: :meth:`feed` holds the dict while it goes through the packets.
        self._streams.clear()
        self._streams.update(streams)
        self._pmt_body = body

    # -- PES -----------------------------------------------------------------------------------

    def _pes_packet(self, pid: int, pes: _Pes, cc: int, start: bool, chunk: bytes) -> None:
        if pes.cc >= 0 and cc != (pes.cc + 1) & 0x0F:
            if cc == pes.cc:
                return  # a duplicate packet (allowed once by the standard)
            if pes.data is not None:
                self.discontinuities += 1
            pes.data = None  # a TS packet of it is missing: it cannot be decoded
        pes.cc = cc
        if start:
            if pes.data is not None:
                data, pes.data = pes.data, None
                self._pes_done(pid, pes, data)
            if len(chunk) < 6 or chunk[:3] != b"\x00\x00\x01":
                raise TsError("PES packet without a start code")
            pes.data = bytearray(chunk)
            pes.expected = struct.unpack_from(">H", chunk, 4)[0]
        elif pes.data is not None:
            pes.data += chunk
            if len(pes.data) > _MAX_PES:
                raise TsError("PES packet over 8 MiB")
        else:
            return
        if pes.expected and len(pes.data) >= 6 + pes.expected:
            data, pes.data = pes.data, None
            del data[6 + pes.expected :]
            self._pes_done(pid, pes, data)

    def _pes_done(self, pid: int, pes: _Pes, data: bytearray) -> None:
        """A whole PES packet (``data`` is handed over: it is not copied)."""
        if len(data) < 9:
            raise TsError("PES header truncated")
        flags, header_len = data[7], data[8]
        start = 9 + header_len  # of the payload
        if not flags & 0x80 or header_len < 5 or len(data) < start:
            return  # no PTS: nothing to time it by
        pts = self._unwrap(pid, _timestamp(data, 9))
        dts = self._unwrap(pid, _timestamp(data, 14)) if flags & 0x40 and header_len >= 10 else pts
        if self._epoch is None:
            self._epoch = dts
        if pes.codec == "aac":
            self._adts(data, start, pts)
        elif pes.codec == "opus":
            self._opus(data, start, pts, pes.channels)
        else:
            self._video(pes.codec, data, start, dts, pts)

    def _unwrap(self, pid: int, ts: int) -> int:
        last = self._last.get(pid)
        if last is not None:
            ts += (last - ts + (_WRAP >> 1)) // _WRAP * _WRAP  # nearest to the last one
        self._last[pid] = ts
        return ts

    def _ms(self, ts: int) -> int:
        assert self._epoch is not None
        return max(0, (ts - self._epoch) // 90)

    def _media(self, unit: MediaUnit) -> None:
        # Outputs set up their tracks from the sequence headers they have at the first
        # keyframe, so media waits until every stream of the program has announced its
        # configuration (as an RTMP publisher sends both headers first).
        if self._held is None:
            self._out.append(unit)
            return
        self._held.append(unit)
        configured = {
            "avc": self._video_config is not None,
            "hevc": self._video_config is not None,
            "aac": self._audio_config is not None,
            "opus": self._audio_config is not None,
        }
        if all(configured[p.codec] for p in self._streams.values()) or (
            len(self._held) >= _HOLD_MAX_UNITS
        ):
            self._out += self._held
            self._held = None

    # -- elementary streams --------------------------------------------------------------------

    def _video(self, codec: str, data: bytearray, start: int, dts: int, pts: int) -> None:
        """The access unit from ``start`` in ``data``, as one FLV video body."""
        hevc = codec == "hevc"
        params: dict[int, bytes] = {}
        frame: list[bytearray] = []
        keyframe = False
        for nal in _split_annexb(data, start):
            nal_type = (nal[0] >> 1) & 0x3F if hevc else nal[0] & 0x1F
            if hevc:
                if nal_type in (32, 33, 34):
                    params.setdefault(nal_type, bytes(nal))
                keyframe |= 16 <= nal_type <= 21
                if nal_type == 35:
                    continue  # access unit delimiter: FLV frames are whole access units
            else:
                if nal_type in (7, 8):
                    params.setdefault(nal_type, bytes(nal))
                keyframe |= nal_type == 5
                if nal_type == 9:
                    continue
            frame.append(nal)
        timestamp = self._ms(dts)
        config = tuple(params[t] for t in sorted(params))
        if len(config) == (3 if hevc else 2) and config != self._video_config:
            self._video_config = config
            header = _hevc_sequence_start(config) if hevc else _avc_sequence_header(config)
            self._out.append(MediaUnit(Kind.VIDEO, timestamp, header, False, True))
        if not frame or self._video_config is None:
            return  # nothing decodable without parameter sets
        cts = ((pts - dts) // 90).to_bytes(3, "big", signed=True)
        frame_type = 0x10 if keyframe else 0x20
        parts: list[bytes | bytearray]
        if hevc:
            parts = [bytes([0x80 | frame_type | 1]) + _HEVC_FOURCC + cts]
        else:
            parts = [bytes([frame_type | 7, 1]) + cts]
        for nal in frame:  # length-prefixed, copied once into the body
            parts += (len(nal).to_bytes(4, "big"), nal)
        self._media(MediaUnit(Kind.VIDEO, timestamp, b"".join(parts), keyframe, False))

    def _adts(self, payload: bytearray, pos: int, pts: int) -> None:
        """The ADTS frames from ``pos`` in ``payload``, one FLV audio body each."""
        index = 0
        while pos + 7 <= len(payload):
            h = payload[pos : pos + 7]
            header_len = 7 if h[1] & 0x01 else 9
            length = ((h[3] & 0x03) << 11) | (h[4] << 3) | (h[5] >> 5)
            rate_index = (h[2] >> 2) & 0x0F
            if (
                h[0] != 0xFF
                or h[1] & 0xF0 != 0xF0
                or length < header_len
                or pos + length > len(payload)
                or rate_index >= 13
            ):
                # Damage the continuity counter could not see (a loss of 16 packets): the rest
                # of this PES is unusable, the stream goes on.
                self.discontinuities += 1
                return
            object_type = (h[2] >> 6) + 1
            channels = ((h[2] & 0x01) << 2) | (h[3] >> 6)
            asc = ((object_type << 11) | (rate_index << 7) | (channels << 3)).to_bytes(2, "big")
            timestamp = self._ms(pts + index * 1024 * 90000 // SAMPLE_RATES[rate_index])
            if asc != self._audio_config:
                self._audio_config = asc
                header = bytes([_AAC_TAG, 0]) + asc
                self._out.append(MediaUnit(Kind.AUDIO, timestamp, header, False, True))
            raw = payload[pos + header_len : pos + length]
            self._media(MediaUnit(Kind.AUDIO, timestamp, bytes([_AAC_TAG, 1]) + raw))
            pos += length
            index += 1

    def _opus(self, payload: bytearray, pos: int, pts: int, channels: int) -> None:
        """The Opus packets (behind their control headers) from ``pos`` in ``payload``."""
        head = _opus_head(channels)
        if head != self._audio_config:
            self._audio_config = head
            self._out.append(MediaUnit(Kind.AUDIO, self._ms(pts), _OPUS_TAG + head, False, True))
        elapsed = 0  # 90 kHz ticks since the PES's PTS
        while pos + 2 <= len(payload):
            header = struct.unpack_from(">H", payload, pos)[0]
            if header & 0xFFE0 != _OPUS_CONTROL_PREFIX:
                self.discontinuities += 1  # damage the continuity counter did not show
                return
            pos += 2
            size = 0
            while pos < len(payload):
                size += payload[pos]
                pos += 1
                if payload[pos - 1] != 0xFF:
                    break
            pos += 2 * (bool(header & 0x10) + bool(header & 0x08))  # start / end trim
            if header & 0x04 and pos < len(payload):
                pos += 1 + payload[pos]  # control extension
            packet = payload[pos : pos + size]
            if len(packet) != size or not size:
                self.discontinuities += 1
                return
            pos += size
            timestamp = self._ms(pts + elapsed)
            self._media(MediaUnit(Kind.AUDIO, timestamp, b"\x91Opus" + packet))
            elapsed += _opus_duration(packet) * 90 // 48


def _opus_channels(descriptors: bytes) -> int:
    """The channel count of an Opus stream from its ES descriptors (0: not Opus, or a channel
    configuration other than plain 1-8 channels)."""
    opus, channels, pos = False, 0, 0
    while pos + 2 <= len(descriptors):
        tag, length = descriptors[pos], descriptors[pos + 1]
        content = descriptors[pos + 2 : pos + 2 + length]
        if tag == _DESC_REGISTRATION and content[:4] == b"Opus":
            opus = True
        elif tag == _DESC_EXTENSION and len(content) >= 2 and content[0] == _EXT_OPUS_CHANNELS:
            channels = content[1] if 1 <= content[1] <= 8 else 0
        pos += 2 + length
    return channels if opus else 0


def _opus_head(channels: int) -> bytes:
    """The OpusHead (RFC 7845) the TS leaves implicit: 48 kHz, no pre-skip, Vorbis channel
    order beyond stereo."""
    head = b"OpusHead" + struct.pack("<BBHIh", 1, channels, 0, 48000, 0)
    if channels <= 2:
        return head + b"\x00"
    streams, coupled, mapping = _OPUS_SURROUND[channels]
    return head + bytes([1, streams, coupled]) + mapping


def _opus_duration(packet: bytes | bytearray) -> int:
    """Samples (at 48 kHz) in an Opus packet, from its TOC byte (RFC 6716, section 3.1)."""
    config, code = packet[0] >> 3, packet[0] & 0x03
    if config < 12:
        frame = (480, 960, 1920, 2880)[config & 3]  # SILK: 10, 20, 40, 60 ms
    elif config < 16:
        frame = (480, 960)[config & 1]  # hybrid: 10, 20 ms
    else:
        frame = (120, 240, 480, 960)[config & 3]  # CELT: 2.5, 5, 10, 20 ms
    if code == 0:
        return frame
    if code in (1, 2):
        return 2 * frame
    return frame * (packet[1] & 0x3F) if len(packet) > 1 else frame


def _timestamp(data: bytes | bytearray, pos: int) -> int:
    if len(data) < pos + 5:
        raise TsError("PES timestamp truncated")
    b = data[pos : pos + 5]
    return ((b[0] >> 1) & 0x07) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


def _split_annexb(data: bytearray, begin: int = 0) -> list[bytearray]:
    """The NAL units of the Annex B byte stream (3- or 4-byte start codes) from ``begin``."""
    out: list[bytearray] = []
    start = data.find(b"\x00\x00\x01", begin)
    while start >= 0:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt < 0 else nxt
        if nxt >= 0:  # trailing zeros belong to the next start code (or are padding)
            while end > begin and not data[end - 1]:
                end -= 1
        if end > begin:
            out.append(data[begin:end])
        start = nxt
    return out


def _avc_sequence_header(config: tuple[bytes, ...]) -> bytes:
    """A legacy FLV AVC sequence header: the AVCDecoderConfigurationRecord from SPS and PPS."""
    sps, pps = config
    if len(sps) < 4:
        raise TsError("H.264 SPS too short")
    record = (
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1])
        + len(sps).to_bytes(2, "big")
        + sps
        + b"\x01"
        + len(pps).to_bytes(2, "big")
        + pps
    )
    return b"\x17\x00\x00\x00\x00" + record


def _hevc_sequence_start(config: tuple[bytes, ...]) -> bytes:
    """An Enhanced RTMP ``hvc1`` SequenceStart: an HEVCDecoderConfigurationRecord.

    The profile/tier/level bytes are copied from the SPS's profile_tier_level; chroma format
    and bit depths are declared as 4:2:0 8-bit (decoders read the real ones from the in-band
    SPS, which every keyframe carries).
    """
    vps, sps, pps = config
    rbsp = sps[:2] + sps[2:].replace(b"\x00\x00\x03", b"\x00\x00")
    if len(rbsp) < 15:
        raise TsError("H.265 SPS too short")
    sub_layers = ((rbsp[2] >> 1) & 0x07) + 1
    nested = rbsp[2] & 0x01
    record = bytearray([1])
    record += rbsp[3:15]  # profile space/tier/idc, compatibility, constraints, level
    record += bytes([0xF0, 0x00, 0xFC, 0xFD, 0xF8, 0xF8, 0x00, 0x00])
    record.append((sub_layers << 3) | (nested << 2) | 0x03)
    record.append(3)
    for nal_type, nal in ((32, vps), (33, sps), (34, pps)):
        record += bytes([0x80 | nal_type]) + (1).to_bytes(2, "big")
        record += len(nal).to_bytes(2, "big") + nal
    return bytes([0x80 | 0x10 | 0]) + _HEVC_FOURCC + bytes(record)
