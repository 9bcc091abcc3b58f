"""yolohand.core.sizes: the one H,W parser (CLI --size and the app's size box)."""

import pytest

from yolohand.core.sizes import MAX_SIDE, parse_size
from yolohand.errors import YolohandError


def test_parse_size_forms():
    assert parse_size("2048,2048") == (2048, 2048)
    assert parse_size("1024x512") == (1024, 512)
    assert parse_size(None) is None and parse_size((3, 4)) == (3, 4)


@pytest.mark.parametrize("bad", ["0,0", "5,0", "-1,4", f"{MAX_SIDE + 1},4", "a,b", "2048", "1,2,3"])
def test_parse_size_refuses(bad):
    with pytest.raises(YolohandError, match=r"^image size "):
        parse_size(bad, "image size")
