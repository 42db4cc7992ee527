"""inert_markdown / inert_stream: every image becomes a link, nothing else changes."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.rendering import inert_markdown, inert_stream


@pytest.mark.parametrize(("text", "expected"), [
    ("see ![x](http://t/a.png) now", "see \\![x](http://t/a.png) now"),
    ("![r][t]\n\n[t]: http://t/r.png", "\\![r][t]\n\n[t]: http://t/r.png"),
    ("[![badge](http://t/b.png)](http://link)", "[\\![badge](http://t/b.png)](http://link)"),
    ("already \\![x](y) and \\\\![x](y)", "already \\![x](y) and \\\\\\![x](y)"),
    ("`![code](x)` and ``a ` ![b](c)``", "`![code](x)` and ``a ` ![b](c)``"),
    ("```\n![in a fence](x)\n```\n![after](y)", "```\n![in a fence](x)\n```\n\\![after](y)"),
    ("~~~~\n![x](y)\n~~~\n![still fenced](z)", "~~~~\n![x](y)\n~~~\n![still fenced](z)"),
    ("**bold**, [a link](http://x), `code`, - lists!", "**bold**, [a link](http://x), `code`, - lists!"),
    ("an unclosed `tick ![x](y)", "an unclosed `tick \\![x](y)"),
])
def test_images_become_links_and_the_rest_stays(text, expected):
    assert inert_markdown(text) == expected


@given(st.text(alphabet="![]()\\`ab \n", max_size=40), st.lists(st.integers(0, 40), max_size=6))
def test_a_stream_never_lets_an_image_through_wherever_it_is_cut(text, cuts):
    points = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    chunks = [text[a:b] for a, b in zip(points, points[1:], strict=False)]
    streamed = "".join(inert_stream(chunks))
    # every '![' left in the output is escaped by an odd run of backslashes
    for index in range(len(streamed)):
        if streamed.startswith("![", index):
            run = len(streamed[:index]) - len(streamed[:index].rstrip("\\"))
            assert run % 2 == 1, (text, chunks, streamed)
    assert streamed == "".join(inert_stream([text]))  # the same text however it was cut
