import math
import struct
import zlib

from harness.results.heldout_report import overlay_band
from harness.results.plots import (Bar, Curve, TokenCurve, bpc_png, curves_png, is_png, overlay_png,
                                  throughput_png)


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


def test_bpc_curves_render_against_tokens() -> None:
    curves = [TokenCurve("seed 0", [1000, 2000, 3000], [4.0, None, 3.0], [3.9, 3.5, math.nan]),
              TokenCurve("seed 1", [800], [None], [2.5])]  # a count model: one validation
    data = bpc_png("m / s", curves)
    assert png_size(data) == (700, 400) and data == bpc_png("m / s", curves)
    assert png_size(bpc_png("m / s", [TokenCurve("seed 0", [1], [None], [None])])) == (700, 400)


def test_overlays_render_lines_bands_points_and_nothing() -> None:
    bands = [overlay_band("lstm", [[(0, 4.0), (2, 2.0)], [(0, 4.5), (2, 2.5)]]),
             overlay_band("ngram", [[(0.5, 2.1)], [(0.7, 2.1)]])]
    data = overlay_png("valid bpc", bands, xlabel="training seconds", target=3.0)
    assert png_size(data) == (700, 450)
    assert data == overlay_png("valid bpc", bands, xlabel="training seconds", target=3.0)
    assert data != overlay_png("valid bpc", bands, xlabel="training seconds")
    assert png_size(overlay_png("none", [], xlabel="tokens")) == (700, 450)


def test_overlay_band_interpolates_seeds_within_the_range_all_cover() -> None:
    band = overlay_band("g", [[(0, 4.0), (2, 2.0), (4, 1.0)], [(1, 4.0), (3, 2.0), (5, 0.0)]])
    assert band.x == (1, 2, 3, 4) and band.x_span is None
    assert band.mean == (3.5, 2.5, 1.75, 1.0)
    assert band.low == (3.0, 2.0, 1.5, 1.0) and band.high == (4.0, 3.0, 2.0, 1.0)
    same = overlay_band("g", [[(10, 3.0), (20, 2.0)], [(10, 4.0), (20, 3.0)]])
    assert same.x == (10, 20) and same.mean == (3.5, 2.5)  # shared points: no interpolation


def test_overlay_band_of_one_point_seeds_and_of_seeds_that_do_not_overlap() -> None:
    point = overlay_band("ngram", [[(0.5, 2.0)], [(0.7, 2.2)]])
    assert point.x == (0.6,) and math.isclose(point.mean[0], 2.1)
    assert point.low == (2.0,) and point.high == (2.2,) and point.x_span == (0.5, 0.7)
    assert overlay_band("g", [[(0, 3.0), (1, 2.0)], [(2, 3.0), (3, 2.0)]]) is None
    assert overlay_band("g", []) is None
