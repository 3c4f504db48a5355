"""Slack reaction shortcodes as Unicode emoji, so a 👍 from Slack is a 👍 on Matrix.

Only the common ones: an unknown or custom emoji (`party-parrot`) stays `:party-parrot:`,
which every network can show and the archive keeps as Slack named it.
"""

from __future__ import annotations

SHORTCODES = {
    "+1": "👍", "thumbsup": "👍", "-1": "👎", "thumbsdown": "👎", "ok_hand": "👌", "clap": "👏",
    "pray": "🙏", "muscle": "💪", "wave": "👋", "raised_hands": "🙌", "point_up": "☝️", "eyes": "👀",
    "heart": "❤️", "broken_heart": "💔", "fire": "🔥", "100": "💯", "tada": "🎉", "rocket": "🚀",
    "star": "⭐", "sparkles": "✨", "white_check_mark": "✅", "heavy_check_mark": "✔️", "x": "❌",
    "warning": "⚠️", "question": "❓", "exclamation": "❗", "smile": "😄", "smiley": "😃",
    "grinning": "😀", "laughing": "😆", "joy": "😂", "rofl": "🤣", "slightly_smiling_face": "🙂",
    "wink": "😉", "blush": "😊", "heart_eyes": "😍", "thinking_face": "🤔", "neutral_face": "😐",
    "confused": "😕", "cry": "😢", "sob": "😭", "scream": "😱", "rage": "😡", "sweat_smile": "😅",
    "upside_down_face": "🙃", "sunglasses": "😎", "facepalm": "🤦", "shrug": "🤷", "moneybag": "💰",
    "chart_with_upwards_trend": "📈", "chart_with_downwards_trend": "📉", "memo": "📝", "coffee": "☕",
}  # fmt: skip
# Slack's skin-tone-2 … skin-tone-6 are the Fitzpatrick modifiers 1-2 … 6.
SKIN_TONES = {f"skin-tone-{n}": chr(0x1F3FB + n - 2) for n in range(2, 7)}


def emoji(shortcode: str) -> str:
    """`thumbsup` → 👍, `thumbsup::skin-tone-3` → 👍🏼, `party-parrot` → `:party-parrot:`."""
    name, _, tone = shortcode.strip(":").partition("::")
    base = SHORTCODES.get(name)
    if base is None or (tone and tone not in SKIN_TONES):
        return f":{shortcode.strip(':')}:"
    return base + SKIN_TONES.get(tone, "")
