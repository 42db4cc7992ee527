"""Titles derived from a first message, and which model answers count as titles."""

import pytest

from core.titles import derive_title, usable_title


@pytest.mark.parametrize(("message", "title"), [
    ("Remember that my sister is called Rita", "My sister is called Rita"),
    ("hi! can you help me plan a trip to Lisbon in May? I have 3 days.", "Plan a trip to Lisbon in May"),
    ("I am planning a trip to Lisbon in May", "I am planning a trip to Lisbon in May"),
    ("Hey, what should I cook tonight with leftover rice, eggs and spring onions from the fridge?",
     "What should I cook tonight with leftover rice, eggs and…"),
    ("**Hello**\n\n# Budget for the `kitchen` remodel", "Budget for the kitchen remodel"),
    ("مرحبا، أريد أن أتعلم الطبخ اليوم", "مرحبا، أريد أن أتعلم الطبخ اليوم"),
    ("日本語の勉強を始めたいです。おすすめは？", "日本語の勉強を始めたいです"),
    ("https://example.com/" + "a" * 100, "Https://example.com/" + "a" * 39 + "…"),
    ("   \n ", "New conversation"),
    ("hello", "Hello"),
])
def test_derived_titles_say_what_the_chat_is_about(message, title):
    assert derive_title(message) == title
    assert len(derive_title(message)) <= 60


@pytest.mark.parametrize(("answer", "title"), [
    ("Trip to Lisbon", "Trip to Lisbon"),
    ('"Naming a grey cat"', "Naming a grey cat"),
    ("Title: Cooking rice.", "Cooking rice"),
    ("Sure! Here is a title:\nCooking rice", None),
    ("You said: Write a title of 2 to 6 words for a chat that starts with the exchange below", None),
    ("", None),
    (None, None),
])
def test_only_a_short_single_line_counts_as_a_title(answer, title):
    assert usable_title(answer) == title
