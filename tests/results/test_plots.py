import math
import struct
import zlib

from harness.results.plots import Bar, Curve, curves_png, is_png, throughput_png


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking every chunk's CRC."""
    assert is_png(data)
    offset, chunks = 8, []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind = data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        assert zlib.crc32(kind + body) == crc
        chunks.append(kind)
        offset += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    assert b"tEXt" not in chunks or b"Software" not in data
    return struct.unpack(">II", data[16:24])


def test_curves_render_headless_as_png_with_nan_gaps() -> None:
    curves = [Curve("seed 0", [1, 2, 3, 4], [20.0, math.nan, 5.0, None], [None, 9.0, None, 6.0]),
              Curve("seed 1", [1, 2], [21.0, 18.0])]
    assert png_size(curves_png("m / s", curves)) == (700, 400)


def test_a_curve_with_nothing_finite_still_renders() -> None:
    data = curves_png("m / s", [Curve("seed 0", [1, 2], [math.nan, None], [None, None])])
    assert png_size(data) == (700, 400)
    assert curves_png("empty", []) != data  # a different title, still a picture


def test_throughput_chart_renders_groups_without_an_ok_seed() -> None:
    bars = [Bar("m / s", 1000.0, 50.0, (950.0, 1050.0)), Bar("m / t", math.nan, math.nan),
            Bar("n / s", 800.0, math.nan, (800.0,))]
    width, height = png_size(throughput_png("throughput", bars))
    assert width == 700 and height >= 400
    assert is_png(throughput_png("nothing", []))


def test_charts_are_byte_identical_when_drawn_again() -> None:
    curves = [Curve("seed 0", [1, 2, 3], [20.0, 10.0, 5.0], [None, None, 6.0])]
    assert curves_png("m / s", curves) == curves_png("m / s", curves)
    bars = [Bar("m / s", 1000.0, 50.0, (950.0, 1050.0))]
    assert throughput_png("t", bars) == throughput_png("t", bars)
