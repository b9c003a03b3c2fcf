"""The burned-in caption of the Grad-CAM Secondary Capture fits the image at any source size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from skinscreen.dicomnet.results import ResultFacts, caption_layout, caption_lines, caption_pixels

FACTS = ResultFacts(
    model_version="mnv2-twosite-neutral-more-s0-6dbfb9b5",
    probability=0.8123,
    threshold=0.3187,
    flagged=True,
    operating_point="site ward7",
    sop_instance_uid="1.2.3",
)


@pytest.mark.parametrize(("width", "height"), [(224, 224), (4000, 3000), (4000, 224)])
def test_every_caption_line_lies_inside_the_image_at_small_and_large_sizes(width: int, height: int) -> None:
    lines = caption_lines(FACTS)
    layout = caption_layout(width, height, lines)
    canvas = Image.new("RGB", (width, height + layout.band))
    draw = ImageDraw.Draw(canvas)
    for xy, text in layout.lines:
        left, top, right, bottom = draw.textbbox(xy, text, font=layout.font)
        assert left >= 0 and right <= width, f"{text!r} runs from x={left} to {right} in {width} px"
        assert top >= height and bottom <= height + layout.band, f"{text!r} leaves the caption band"
    # Wrapped, not shortened: every fact is still there, in order.
    assert "".join(t for _, t in layout.lines).replace(" ", "") == "".join(lines).replace(" ", "")


def test_the_caption_text_grows_with_the_image_so_a_4000_pixel_photograph_stays_readable() -> None:
    small = caption_layout(224, 224, caption_lines(FACTS))
    large = caption_layout(4000, 3000, caption_lines(FACTS))
    assert large.font.size >= 10 * small.font.size  # type: ignore[union-attr]
    assert len(large.lines) == len(caption_lines(FACTS))  # one line per fact: no wrapping needed


def test_the_rendered_caption_is_white_on_black_below_the_untouched_image() -> None:
    overlay = np.full((224, 224, 3), 128, np.uint8)
    pixels = caption_pixels(overlay, caption_lines(FACTS))
    assert (pixels[:224] == 128).all()
    band = pixels[224:]
    assert band.shape[0] == caption_layout(224, 224, caption_lines(FACTS)).band
    assert band.max() > 200  # white letters
    assert (band[:, -1] == 0).all() and (band[-1] == 0).all()  # nothing touches the band's edges
